"""The ``miaudit`` command line: parses options, builds a config, runs, prints a summary.

Only this module prints. Progress goes to stderr: a live bar on a terminal, one plain line per
finished unit elsewhere (CI logs).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from miaudit.errors import ConfigError, MiauditError
from miaudit.metrics import MIN_INTERVAL_VALUES
from miaudit.studies.records import SummaryRow
from miaudit.studies.schema import ATTACK_ORDER

if TYPE_CHECKING:
    from miaudit.studies.run import RunResult

app = typer.Typer(
    name="miaudit",
    help="Measure how much a trained model leaks about its training data (membership inference).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Find, verify and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
studies_app = typer.Typer(help="List, show and export the shipped study configs.", no_args_is_help=True)
app.add_typer(studies_app, name="studies")

console = Console()
err_console = Console(stderr=True)


class ProgressPrinter:
    """Feeds stage progress to a rich bar on a terminal, or plain lines otherwise."""

    def __init__(self, *, live: bool | None = None) -> None:
        self.live = err_console.is_terminal if live is None else live
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._last: dict[str, int] = {}

    def __enter__(self) -> ProgressPrinter:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<16}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._progress is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(stage, total=total or None)
            self._progress.update(self._tasks[stage], completed=done, total=total or None)
            return
        if self._last.get(stage) == done and done:
            return
        self._last[stage] = done
        elapsed = time.perf_counter() - self._t0
        count = f" {done}/{total}" if total else ""
        if done or not total:
            print(f"[{elapsed:7.1f}s] {stage}{count}", file=sys.stderr, flush=True)


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    from miaudit.studies.store import write_json

    write_json(path, record)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def attack_table(result: dict[str, Any]) -> Table:
    """The results table of one attack run (a record of :func:`miaudit.studies.run.attack_record`)."""
    cfg, m, tgt = result["config"], result["metrics"], result["target"]
    params = {k: v for k, v in result.get("attack", {}).items() if k not in ("name", "seed") and v is not None}
    title = f"{cfg['attack']} attack on a {cfg['dataset']} {cfg['arch']} target, seed {cfg['seed']}"
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [(f"attack: {k.replace('_', ' ')}", v) for k, v in params.items()]
    rows += [
        ("target train accuracy", tgt["train_accuracy"]),
        ("target test accuracy", tgt["test_accuracy"]),
        ("attack accuracy", m["accuracy"]),
        ("attack precision", m["precision"]),
        ("attack recall", m["recall"]),
        ("balanced accuracy", m["balanced_accuracy"]),
        ("AUC", m["auc"]),
    ]
    rows += [(f"TPR at FPR {k}", v) for k, v in m["tpr_at_fpr"].items()]
    rows += [
        ("members / non-members", f"{m['n_members']} / {m['n_nonmembers']}"),
        ("queries to the target", result["queries"]),
    ]
    rows += [(f"time: {k}", f"{v:.1f} s") for k, v in result["timings"].items()]
    for name, value in rows:
        t.add_row(name, _fmt(value))
    return t


def _interval_text(row: SummaryRow, fmt: str = ".3f", sep: str = " ") -> str:
    """``mean [low, high]`` of a summary row, or the mean alone without an interval (too few seeds)."""
    ci = row.interval
    if not ci.has_ci or ci.low == ci.high:
        return f"{ci.mean:{fmt}}"
    return f"{ci.mean:{fmt}}{sep}[{ci.low:{fmt}}, {ci.high:{fmt}}]"


#: columns of the comparison table: header, summary metric, format
_COMPARE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("AUC", "auc", ".3f"),
    ("TPR @ 1% FPR", "tpr_at_fpr_0.01", ".3f"),
    ("TPR @ 0.1% FPR", "tpr_at_fpr_0.001", ".4f"),
    ("TPR @ 0% FPR", "tpr_at_fpr_0", ".4f"),
    ("accuracy", "accuracy", ".3f"),
    ("precision", "precision", ".3f"),
    ("recall", "recall", ".3f"),
    ("queries", "queries", ".0f"),
    ("attack time (s)", "attack_time_s", ".1f"),
)


def compare_table(summary: list[SummaryRow], *, seeds: list[int]) -> Table:
    """One row per attack of a comparison's summary rows: the mean over seeds above its 95% interval."""
    by_attack: dict[str, dict[str, SummaryRow]] = {}
    for r in summary:
        by_attack.setdefault(r.attack, {})[r.metric] = r
    first = next(iter(by_attack.values()))
    title = (
        f"{len(by_attack)} attacks on the same targets ({first['auc'].target_size} members, "
        f"{first['auc'].arch} network), {len(seeds)} seed{'s' if len(seeds) != 1 else ''}: mean"
        + (" and [95% interval]" if len(seeds) >= MIN_INTERVAL_VALUES else " (too few seeds for an interval)")
    )
    caption = (
        f"target train accuracy {_interval_text(first['target_train_accuracy'])}, "
        f"test accuracy {_interval_text(first['target_test_accuracy'])}; seeds {', '.join(map(str, seeds))}"
    )
    t = Table(title=title, caption=caption, show_header=True, header_style="bold")
    t.add_column("attack")
    for header, _, _ in _COMPARE_COLUMNS:
        t.add_column(header, justify="right")
    for name, rows in by_attack.items():
        t.add_row(name, *(_interval_text(rows[metric], fmt, "\n") for _, metric, fmt in _COMPARE_COLUMNS))
    return t


# Where models train, shared by attack, compare and reproduce (docs/cluster.md)
_SCHEDULER_OPTION = typer.Option(
    None,
    envvar="MIAUDIT_SCHEDULER",
    help="Train on a running Dask cluster: its scheduler's address, e.g. tcp://HOST:8786 (docs/cluster.md).",
)
_WORKERS_OPTION = typer.Option(
    None, help="Train on a local Dask cluster of N worker processes (one thread each, on 127.0.0.1)."
)
_DEVICE_OPTION = typer.Option(
    "cpu", help="Where the batched engine trains: cpu | cuda | mps (a GPU PyTorch can use; same numbers to rounding)."
)


# The options of a setting, declared once: ``attack`` and ``compare`` take all of them (setting fields, the
# training recipe and the run's engine, precision and data folder). Allowed values come from the registries.
def _setting_options() -> dict[str, tuple[Any, Any]]:
    from miaudit.attacks.classifiers import ATTACK_MODELS, FEATURE_SETS
    from miaudit.data.datasets import DATASETS
    from miaudit.training.specs import ARCHITECTURES, DEVICES, ENGINES, PRECISIONS

    def one_of(values: Any) -> str:
        return " | ".join(values)

    return {
        "dataset": (str, typer.Option("fashion-mnist", help=f"Dataset: {one_of(DATASETS)}.")),
        "data_dir": (Path | None, typer.Option(None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files.")),
        "classes": (int | None, typer.Option(None, help="Keep only the first N classes.")),
        "target_size": (int, typer.Option(3000, help="Target members (as many non-members are held out).")),
        "arch": (str, typer.Option("simple", help=f"Target network: {one_of(ARCHITECTURES)}.")),
        "shadow_arch": (
            str | None,
            typer.Option(None, help="Network of the attacker's shadow and reference models (default: the target's)."),
        ),
        "epochs": (int, typer.Option(30, help="Training epochs of target, shadow and reference models.")),
        "batch_size": (int, typer.Option(64, help="Minibatch size of the training recipe.")),
        "lr": (float, typer.Option(1e-3, help="Adam learning rate of the training recipe.")),
        "weight_decay": (float, typer.Option(0.0, help="L2 weight decay of the training recipe (a defence).")),
        "dp_epsilon": (
            float | None,
            typer.Option(None, help="Train with DP-SGD, noise calibrated to spend this epsilon (delta 1/n)."),
        ),
        "max_grad_norm": (float, typer.Option(1.0, help="DP-SGD's per-example clipping bound.")),
        "label_smoothing": (float, typer.Option(0.0, help="Label smoothing of the training recipe (a defence).")),
        "early_stopping_patience": (
            int | None,
            typer.Option(None, help="Early stopping: epochs without a better validation loss (10% held out)."),
        ),
        "output_policy": (
            str,
            typer.Option(
                "full", help="What the target's API lets out: full, top_k:K, rounding:D, temperature:T, label_only."
            ),
        ),
        "transport": (
            str,
            typer.Option("local", help="local, or http: serve the target on 127.0.0.1, attack it there."),
        ),
        "shadows": (int, typer.Option(6, help="Shadow models (shokri, and the threshold attacks' calibration).")),
        "shadow_train_size": (int, typer.Option(3000, help="Training records per shadow model.")),
        "shadow_test_size": (int, typer.Option(2000, help="Held-out records per shadow model.")),
        "attack_model": (
            str,
            typer.Option("linear-svm", help=f"Attack classifier of shokri: {one_of(ATTACK_MODELS)}."),
        ),
        "per_class": (
            bool | None,
            typer.Option(
                None,
                "--per-class/--no-per-class",
                help="Per-class attack models (shokri) or thresholds (threshold attacks); default: each attack's own.",
            ),
        ),
        "features": (
            str,
            typer.Option("rich", help=f"Features of shokri's attack classifier: {one_of(FEATURE_SETS)}."),
        ),
        "refs": (int | None, typer.Option(None, "--refs", help="Reference models of lira, lira-offline, rmia (16).")),
        "ref_train_size": (
            int | None,
            typer.Option(None, help="Records per reference model (default: --target-size)."),
        ),
        "engine": (str, typer.Option("auto", help=f"Training engine: {one_of(ENGINES)}.")),
        "precision": (str, typer.Option("auto", help=f"Training precision: {one_of(PRECISIONS)}.")),
        "device": (
            str,
            typer.Option("cpu", help=f"Where the batched engine trains: {one_of(DEVICES)} (same numbers to rounding)."),
        ),
        "scheduler": (str | None, _SCHEDULER_OPTION),
        "workers": (int | None, _WORKERS_OPTION),
        "cache_dir": (
            Path | None,
            typer.Option(None, envvar="MIAUDIT_CACHE_DIR", help="Cache of trained models (default: the user cache)."),
        ),
    }


_SETTING_OPTIONS = _setting_options()
_RENAMED = {"shadows": "n_shadows", "refs": "n_refs"}
_RECIPE = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "dp_epsilon",
    "max_grad_norm",
    "label_smoothing",
    "early_stopping_patience",
)
_RUN = ("data_dir", "engine", "precision", "device", "scheduler", "workers", "cache_dir")


def with_setting_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command every option of :data:`_SETTING_OPTIONS`; it receives them as ``options: dict``."""
    sig = inspect.signature(func, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "options"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=typ)
        for name, (typ, opt) in _SETTING_OPTIONS.items()
    ]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        options = {name: kwargs.pop(name) for name in _SETTING_OPTIONS}
        func(options=options, **kwargs)

    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__
    return command


def _setting_and_run(options: dict[str, Any], **fields: Any) -> tuple[Any, Any, Path]:
    """The Setting, the RunSpec and the cache folder of a command's options (ConfigError when invalid)."""
    from miaudit.studies.run import default_cache_dir
    from miaudit.studies.schema import Setting, parse_config

    raw = {_RENAMED.get(k, k): v for k, v in options.items() if k not in _RECIPE and k not in _RUN}
    raw["train"] = {k: options[k] for k in _RECIPE}
    setting = parse_config(Setting, {**raw, **fields})
    run_fields = {k: (str(options[k]) if k == "data_dir" and options[k] is not None else options[k]) for k in _RUN}
    cache_dir = run_fields.pop("cache_dir") or default_cache_dir()
    return setting, run_fields, Path(cache_dir)


def _parse_attack_params(pairs: list[str]) -> dict[str, Any]:
    """``["n_refs=32", "fix_variance=true"]`` as a dict, each value read as a TOML value (else a string)."""
    import tomllib

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--attack-param takes KEY=VALUE (e.g. n_refs=32); got {pair!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = text.strip()
    return out


@app.command()
@with_setting_options
def attack(
    options: dict[str, Any],
    attack_name: str = typer.Option("shokri", "--attack", help=f"Attack: {' | '.join(ATTACK_ORDER)}, or a plugin's."),
    attack_param: list[str] = typer.Option(
        [], "--attack-param", help="Any other parameter of the attack, KEY=VALUE (repeatable), e.g. fix_variance=true."
    ),
    seed: int = typer.Option(0, help="Seed of the run: the same as seed SEED of a study with this setting."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full result record here."),
    out: Path | None = typer.Option(None, "--out", help="Also write a run directory here (for `miaudit report`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Run one membership inference attack on a target trained for the seed, and print the results."""
    from miaudit.studies.cache import Cache
    from miaudit.studies.experiment import Experiment
    from miaudit.studies.run import attack_record, attack_study, run_studies
    from miaudit.studies.schema import RunSpec, parse_config

    _setup_logging(verbose)
    t0 = time.perf_counter()
    try:
        setting, run_fields, cache_dir = _setting_and_run(
            options, attack=attack_name, attack_params=_parse_attack_params(attack_param)
        )
        run = parse_config(RunSpec, {"seeds": 1, "first_seed": seed, **run_fields})
        cache = Cache(cache_dir)
        with ProgressPrinter() as progress:
            if out is not None:
                result = run_studies([attack_study(setting)], run, out, kind="attack", cache=cache, progress=progress)
                (ev,) = result.evaluations
            else:
                (ev,) = Experiment(run, cache=cache, progress=progress).run([setting], [seed])
        ds = Experiment(run, cache=None).view(setting.dataset, setting.classes)
        dataset = {"name": ds.name, "source": ds.source, "n_records": ds.n_samples, "n_classes": ds.n_classes}
        record = attack_record(ev, run, dataset=dataset, total_s=time.perf_counter() - t0)
    except (MiauditError, ValueError) as exc:
        _fail(exc)
    console.print(attack_table(record))
    if json_path is not None:
        _write_json(json_path, record)
        console.print(f"result written to {json_path}")
    if out is not None:
        console.print(f"run directory written to {out} (`miaudit report {out}` builds its report)")


@app.command()
@with_setting_options
def compare(
    options: dict[str, Any],
    attacks: str = typer.Option(
        "all", "--attacks", help=f"Comma-separated attacks ({', '.join(ATTACK_ORDER)}), or all."
    ),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds: a new split, target and attacks for each."),
    seed: int = typer.Option(0, help="First seed (seeds are SEED, SEED+1, ...)."),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="Run directory (for `miaudit report`)."),
    report: bool = typer.Option(True, help="Write the HTML and Markdown report at the end."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Run several attacks on the same targets over several seeds and print one comparison table."""
    from miaudit.studies.cache import Cache
    from miaudit.studies.run import compare_study, run_studies
    from miaudit.studies.schema import RunSpec, parse_config

    _setup_logging(verbose)
    try:
        setting, run_fields, cache_dir = _setting_and_run(options)
        study = compare_study(setting, attacks)
        run = parse_config(RunSpec, {"seeds": seeds, "first_seed": seed, **run_fields})
        with ProgressPrinter() as progress:
            result = run_studies(
                [study], run, out, kind="compare", cache=Cache(cache_dir), command=_command(), progress=progress
            )
    except (MiauditError, ValueError) as exc:
        _fail(exc)
    # the table is wide: let it be when the output is a file or a log rather than a terminal
    wide = console if console.is_terminal else Console(width=max(console.width, 180))
    wide.print(compare_table(result.summary, seeds=run.seed_list))
    _print_timings(result.manifest)
    console.print(f"results are in {out}")
    if report:
        _write_report(out)


@data_app.command("info")
def data_info(
    data_dir: Path | None = typer.Option(None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files."),
    verify: bool = typer.Option(True, help="Check the sha256 of every file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Where Fashion-MNIST was found, whether it verified, and its size per class."""
    from miaudit.data import fashion_mnist_info

    try:
        info = fashion_mnist_info(data_dir, verify=verify)
    except MiauditError as exc:
        _fail(exc)
    if json_out:
        console.print_json(json.dumps(info.to_dict()))
        return
    verdict = {True: "verified", False: "CHECKSUM MISMATCH", None: "not verified"}[info.checksums_ok]
    console.print(f"Fashion-MNIST found in [bold]{info.directory}[/] ({verdict})", highlight=False)
    files = Table("file", "bytes", "sha256", title="files")
    for f in info.files:
        check = "not checked" if f.sha256_ok is None else ("ok" if f.sha256_ok else "MISMATCH")
        files.add_row(f.name, str(f.size_bytes), check)
    console.print(files)
    console.print(f"{info.n_total} records: {info.n_train} training, {info.n_test} test")
    per_class = Table("class", "name", "records", title="records per class")
    for c in info.records_per_class:
        per_class.add_row(str(c.label), c.name, str(c.count))
    console.print(per_class)


@data_app.command("fetch")
def data_fetch(
    dest: Path | None = typer.Option(None, help="Folder to download into (default: the user cache)."),
    url: list[str] | None = typer.Option(
        None,
        "--base-url",
        "--url",
        help="Base URL of the official files; repeat to try several mirrors in order (default: the official ones).",
    ),
    force: bool = typer.Option(False, help="Download even if valid files are present."),
) -> None:
    """Download the official Fashion-MNIST files into the cache, verifying their checksums."""
    from miaudit.data import fetch_fashion_mnist
    from miaudit.data.fashion_mnist import MIRRORS

    def show(name: str, done: int, total: int | None) -> None:
        if total and done == total:
            err_console.print(f"downloaded {name} ({total} bytes)")

    try:
        path = fetch_fashion_mnist(dest, base_url=url or MIRRORS, force=force, progress=show)
    except MiauditError as exc:
        _fail(exc)
    console.print(f"Fashion-MNIST is in {path}")


@app.command()
def reproduce(
    studies: str | None = typer.Option(
        None, help="Comma-separated study ids (default: 1-6, the seed's), e.g. 1,2,5 or 7 (defences), 8 (the API)."
    ),
    seeds: int = typer.Option(5, help="Seeds; each draws a new split, target and shadows."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/reproduce, or runs/quick)."),
    quick: bool = typer.Option(False, "--quick", help="Every study at a reduced scale (a few minutes)."),
    config_dir: Path | None = typer.Option(None, help="Folder of study*.toml configs (default: the shipped ones)."),
    cache_dir: Path | None = typer.Option(
        None, envvar="MIAUDIT_CACHE_DIR", help="Cache of trained models and attacks (default: the user cache)."
    ),
    data_dir: Path | None = typer.Option(None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files."),
    engine: str = typer.Option("auto", help="Training engine: auto | batched | loop."),
    precision: str = typer.Option("auto", help="Training precision: auto | f32 | bf16."),
    device: str = _DEVICE_OPTION,
    scheduler: str | None = _SCHEDULER_OPTION,
    workers: int | None = _WORKERS_OPTION,
    report: bool = typer.Option(True, help="Write the HTML and Markdown report at the end."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Reproduce the seed study's experiments over several seeds, with intervals and verdicts."""
    from miaudit.studies.cache import Cache
    from miaudit.studies.run import default_cache_dir, run_studies
    from miaudit.studies.schema import RunSpec, load_studies, parse_config

    _setup_logging(verbose)
    out = out or Path("runs") / ("quick" if quick else "reproduce")
    try:
        ids = [s.strip() for s in studies.split(",") if s.strip()] if studies else None
        loaded = load_studies(ids, config_dir=config_dir)
        if ids is None:  # the main job: the studies marked for the default run (the others by --studies)
            loaded = [s for s in loaded if s.in_default_run]
        run = parse_config(
            RunSpec,
            {
                "seeds": seeds,
                "engine": engine,
                "precision": precision,
                "device": device,
                "data_dir": str(data_dir) if data_dir else None,
                "scheduler": scheduler,
                "workers": workers,
            },
        )
        with ProgressPrinter() as progress:
            result = run_studies(
                loaded,
                run,
                out,
                kind="reproduce",
                quick=quick,
                cache=Cache(cache_dir or default_cache_dir()),
                command=_command(),
                progress=progress,
            )
    except MiauditError as exc:
        _fail(exc)
    _print_reproduce_summary(result)
    if report:
        _write_report(out)


def _command() -> str:
    return "miaudit " + " ".join(sys.argv[1:])


def _print_timings(manifest: dict[str, Any]) -> None:
    tm = manifest["timings"]
    threads = tm.get("attack_threads", 1)
    side_by_side = f", summed over {threads} evaluations side by side" if threads > 1 else ""
    console.print(
        f"wall time {tm['total_s']:.0f} s (training {tm['training_s']:.0f} s, "
        f"attack fitting {tm['attack_fit_s']:.0f} s, evaluation {tm['evaluation_s']:.0f} s{side_by_side}); "
        f"trained {tm['models_trained']} models and ran {tm['attacks_run']} attacks; "
        f"reused from the cache: {tm['models_from_cache']} models, {tm['attacks_from_cache']} attacks"
    )


def _print_reproduce_summary(result: RunResult) -> None:
    summary, findings, manifest = result.summary, result.findings, result.manifest
    labels = {"attack": "attack", "attack_model": "attack model", "n_shadows": "shadows", "target_size": "target size",
              "classes": "classes", "arch": "target net", "shadow_arch": "shadow net"}  # fmt: skip
    index = {(r.setting_id, r.metric): r for r in summary}
    names = {e.setting.setting_id: e.setting.label for e in result.evaluations if e.setting.label}
    for sid, info in manifest["studies"].items():
        rows = [r for r in summary if r.study == sid and r.metric == "accuracy"]
        t = Table(title=f"Study {sid}: {info['title']} ({info['paper_ref']})", header_style="bold")
        varying = [c for c in labels if len({getattr(r, c) for r in rows}) > 1] or ["n_shadows"]
        named = any(r.setting_id in names for r in rows)  # arms with a label (a defence, a policy)
        if named:
            t.add_column("setting")
        for c in varying:
            t.add_column(labels[c])
        for header in ("accuracy [95% CI]", "paper", "AUC [95% CI]", "TPR @ 0.1% FPR"):
            t.add_column(header, justify="right")
        for r in rows:
            auc, tpr = index.get((r.setting_id, "auc")), index.get((r.setting_id, "tpr_at_fpr_0.001"))
            t.add_row(
                *([names.get(r.setting_id, "")] if named else []),
                *(str(getattr(r, c)) for c in varying),
                _interval_text(r),
                f"{r.paper:.3f}" if r.paper is not None else "",
                _interval_text(auc) if auc else "",
                _interval_text(tpr, ".4f") if tpr else "",
            )
        console.print(t)
    if findings:
        console.print("[bold]Findings of the seed paper, tested on our data[/]")
        for f in findings:
            console.print(f"  {f['id']}: {f['sentence']}", highlight=False)
    _print_timings(manifest)
    console.print(f"results are in {result.out}")


def _write_report(run_dir: Path, formats: tuple[str, ...] = ("html", "md"), out: Path | None = None) -> None:
    try:
        from miaudit.report import build_report
    except ImportError:  # the report layer is optional in a trimmed install
        err_console.print("report: miaudit.report is not available; skipped")
        return
    try:
        paths = build_report(run_dir, formats=formats, out=out)
    except MiauditError as exc:
        _fail(exc)
    for fmt, path in paths.items():
        console.print(f"{fmt} report written to {path}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory of `miaudit reproduce` (or an attack/compare JSON)."),
    format: Literal["html", "md", "both"] = typer.Option("both", "--format", help="Output format."),
    out: Path | None = typer.Option(None, help="Output folder (default: the run directory)."),
) -> None:
    """Build the HTML and/or Markdown report of a stored run (no retraining)."""
    formats = ("html", "md") if format == "both" else (format,)
    _write_report(run_dir, formats, out)


# --- miaudit --version, the studies sub-app, one-line errors for missing extras -----------------------------


def version_text() -> str:
    """Three lines: miaudit's version and folder, torch's version, and which compiled kernels are in use."""
    import torch

    import miaudit
    from miaudit.training.native import native_status

    return (
        f"miaudit {miaudit.__version__} ({Path(miaudit.__file__).parent})\n"
        f"torch {torch.__version__}\n"
        f"native kernels: {native_status()}"
    )


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the versions of miaudit and torch and the state of the compiled kernels, then exit.",
    ),
) -> None:
    """Measure how much a trained model leaks about its training data (membership inference)."""


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Print a miaudit error that escaped a command (e.g. a missing optional extra) as one line; exit code 2.

    A ``ModuleNotFoundError`` of a module that one of miaudit's extras installs becomes the same line as
    :func:`miaudit._extras.require_extra` gives; any other exception propagates with its traceback.
    """
    from miaudit._extras import extra_for_module, missing_extra_message

    try:
        yield
    except MiauditError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except ModuleNotFoundError as exc:
        extra = extra_for_module(exc.name)
        if extra is None:
            raise
        message = missing_extra_message(str(exc.name).partition(".")[0], extra)
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


def _study_files(config_dir: Path | None) -> tuple[Path, dict[str, tuple[Path, Any]]]:
    """The folder of the studies (default: the shipped ones) and ``{id: (file, StudyConfig)}`` of its files."""
    from miaudit.studies.schema import default_config_dir, load_study

    directory = config_dir if config_dir is not None else default_config_dir()
    if not directory.is_dir():
        raise ConfigError(f"config folder {directory} does not exist; pass --config-dir a folder of study*.toml files")
    found = {}
    for path in sorted(directory.glob("study*.toml")):
        study = load_study(path)
        found[study.id] = (path, study)
    if not found:
        raise ConfigError(f"no study*.toml files in {directory}; `miaudit studies export DIR` writes the shipped ones")
    return directory, dict(sorted(found.items(), key=lambda item: (len(item[0]), item[0])))


_STUDIES_DIR_OPTION = typer.Option(
    None, "--config-dir", help="Folder of study*.toml configs (default: the shipped ones)."
)


@studies_app.command("list")
def studies_list(config_dir: Path | None = _STUDIES_DIR_OPTION) -> None:
    """One line per study: id, title, where the paper reports it, and its number of settings (full and --quick)."""
    try:
        directory, found = _study_files(config_dir)
        rows = [
            (
                sid,
                s.title,
                s.paper_ref,
                str(len(s.settings())),
                str(len(s.settings(quick=True))),
                "yes" if s.in_default_run else "no (--studies)",
            )
            for sid, (_, s) in found.items()
        ]
    except MiauditError as exc:
        _fail(exc)
    table = Table("id", "title", "paper", "settings", "--quick", "default run", header_style="bold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(f"{len(rows)} studies in {directory}", soft_wrap=True, markup=False, highlight=False)
    wide = console if console.is_terminal else Console(width=max(console.width, 170))
    wide.print(table)


def _find_study(study_id: str, config_dir: Path | None) -> tuple[Path, Any]:
    """The file and the StudyConfig of the study ``study_id`` (ConfigError naming the ids there are)."""
    _, found = _study_files(config_dir)
    if study_id not in found:
        raise ConfigError(f"unknown study id {study_id!r}; available: {', '.join(found)} (`miaudit studies list`)")
    return found[study_id]


@studies_app.command("show")
def studies_show(
    study_id: str = typer.Argument(..., metavar="ID", help="A study id, as `miaudit studies list` shows it."),
    config_dir: Path | None = _STUDIES_DIR_OPTION,
) -> None:
    """Print a study's TOML file and how many settings its grid expands to."""
    try:
        path, study = _find_study(study_id, config_dir)
        n_full, n_quick = len(study.settings()), len(study.settings(quick=True))
    except MiauditError as exc:
        _fail(exc)
    typer.echo(f"# {path}")
    typer.echo(path.read_text(encoding="utf-8").rstrip("\n"))
    typer.echo(f"# study {study.id} expands to {n_full} settings ({n_quick} with --quick); each runs once per seed")


def _export_studies(dest: Path, *, force: bool = False) -> list[Path]:
    """Copy the shipped ``study*.toml`` files and their README into ``dest``; the files written.

    Raises ConfigError if ``dest`` is a file, or already holds one of those files and ``force`` is False.
    """
    from miaudit._io import atomic_write_bytes
    from miaudit.studies.schema import default_config_dir

    source = default_config_dir()
    files = sorted(source.glob("study*.toml")) + [p for p in (source / "README.md",) if p.is_file()]
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest} is a file, not a folder; choose a folder to export the studies into")
    existing = [p.name for p in files if (dest / p.name).exists()]
    if existing and not force:
        raise ConfigError(
            f"{dest} already holds {', '.join(existing)}; pass --force to overwrite them, or choose another folder"
        )
    return [atomic_write_bytes(dest / p.name, p.read_bytes()) for p in files]


@studies_app.command("export")
def studies_export(
    dest: Path = typer.Argument(..., metavar="DIR", help="Folder to write the study files into (created if missing)."),
    force: bool = typer.Option(False, "--force", help="Overwrite study files already in DIR."),
) -> None:
    """Copy the shipped study files (and their README) into DIR, a starting point for your own studies."""
    try:
        written = _export_studies(dest, force=force)
    except MiauditError as exc:
        _fail(exc)
    console.print(f"wrote {len(written)} files to {dest}", highlight=False, markup=False)
    console.print(f"run them with: miaudit reproduce --config-dir {dest}", highlight=False, markup=False)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Dask's own INFO lines (workers joining and leaving) would reach the handler above; keep them for -v
    if not verbose:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def _register_audit() -> None:
    from miaudit.cli_audit import audit_command

    app.command("audit")(audit_command)


_register_audit()


def _register_serve() -> None:
    from miaudit.cli_serve import serve_command

    app.command("serve")(serve_command)


_register_serve()


def _register_tune() -> None:
    from miaudit.cli_tune import tune_command

    app.command("tune")(tune_command)


_register_tune()


def main() -> None:
    """Entry point of the console script (and of ``python -m miaudit``)."""
    with one_line_errors():
        app()


if __name__ == "__main__":
    main()

"""The ``miaudit`` command line: parses options, builds a config, runs, prints a summary.

Only this module prints. Progress goes to stderr: a live bar on a terminal, one plain line per
finished unit elsewhere (CI logs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from miaudit.errors import MiauditError

app = typer.Typer(
    name="miaudit",
    help="Measure how much a trained model leaks about its training data (membership inference).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Find, verify and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

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
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def attack_table(result: dict[str, Any]) -> Table:
    """The results table of one attack run."""
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


def _interval_text(ci: dict[str, Any], fmt: str = ".3f", sep: str = " ") -> str:
    """``mean [low, high]``, or the mean alone without an interval (one seed, or no spread)."""
    mean, low, high = ci["mean"], ci.get("low"), ci.get("high")
    if low is None or high is None or low == high:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}}{sep}[{low:{fmt}}, {high:{fmt}}]"


#: columns of the comparison table: header, how to read the value from an attack's record, format
_COMPARE_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str], ...] = (
    ("AUC", lambda a: a["auc"], ".3f"),
    ("TPR @ 1% FPR", lambda a: a["tpr_at_fpr"]["0.01"], ".3f"),
    ("TPR @ 0.1% FPR", lambda a: a["tpr_at_fpr"]["0.001"], ".4f"),
    ("TPR @ 0% FPR", lambda a: a["tpr_at_fpr"]["0"], ".4f"),
    ("accuracy", lambda a: a["accuracy"], ".3f"),
    ("precision", lambda a: a["precision"], ".3f"),
    ("recall", lambda a: a["recall"], ".3f"),
    ("queries", lambda a: a["queries"], ".0f"),
    ("wall time (s)", lambda a: a["wall_time_s"], ".1f"),
)


def compare_table(result: dict[str, Any]) -> Table:
    """The table of ``miaudit compare``: one row per attack, the mean over seeds above its 95% interval."""
    cfg, tgt = result["config"], result["target"]
    seeds = result["seeds"]
    title = (
        f"{len(result['attacks'])} attacks on the {cfg['dataset']} {cfg['arch']} target "
        f"({cfg['target_size']} members), {len(seeds)} seed{'s' if len(seeds) != 1 else ''}: "
        "mean and [95% interval]"
    )
    caption = (
        f"target train accuracy {_interval_text(tgt['train_accuracy'])}, "
        f"test accuracy {_interval_text(tgt['test_accuracy'])}; seeds {', '.join(map(str, seeds))}"
    )
    t = Table(title=title, caption=caption, show_header=True, header_style="bold")
    t.add_column("attack")
    for header, _, _ in _COMPARE_COLUMNS:
        t.add_column(header, justify="right")
    for name, record in result["attacks"].items():
        t.add_row(name, *(_interval_text(get(record), fmt, "\n") for _, get, fmt in _COMPARE_COLUMNS))
    return t


# Options shared by ``attack`` and ``compare``: the target and what the attacker knows.
_DATASET = typer.Option("fashion-mnist", help="Dataset.")
_DATA_DIR = typer.Option(None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files.")
_CLASSES = typer.Option(None, help="Keep only the first N classes.")
_TARGET_SIZE = typer.Option(3000, help="Target members (as many non-members are held out).")
_SHADOW_TRAIN_SIZE = typer.Option(3000, help="Training records per shadow model.")
_SHADOW_TEST_SIZE = typer.Option(2000, help="Held-out records per shadow model.")
_SHADOWS = typer.Option(6, help="Shadow models (shokri, and the threshold attacks' calibration).")
_ARCH = typer.Option("simple", help="Target network.")
_SHADOW_ARCH = typer.Option(None, help="Shadow/reference network (default: the target's).")
_EPOCHS = typer.Option(30, help="Training epochs of target, shadow and reference models.")
_ATTACK_MODEL = typer.Option("linear-svm", help="Attack classifier of shokri.")
_PER_CLASS = typer.Option(
    None,
    "--per-class/--no-per-class",
    help="Per-class attack models (shokri) or thresholds (threshold attacks); default: each attack's own.",
)
_FEATURES = typer.Option("rich", help="Features the shokri attack classifier sees.")
_REFS = typer.Option(
    None, "--refs", help="Reference models of lira, lira-offline and rmia (default 16); others ignore it."
)
_REF_TRAIN_SIZE = typer.Option(None, help="Records per reference model (default: --target-size).")
_ENGINE = typer.Option("auto", help="Training engine.")
_PRECISION = typer.Option("auto", help="Training precision.")
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Log details.")
_ATTACK_NAMES_HELP = "shokri, loss, confidence, entropy, modified-entropy, ml-leaks, lira, lira-offline, rmia"

Arch = Literal["simple", "dense", "dropout"]
AttackModel = Literal["lr", "tree", "linear-svm", "rbf-svm"]
FeatureSet = Literal["raw", "sorted", "log-sorted", "true-label", "rich"]


def _run_options(values: dict[str, Any], config_cls: Any, **renamed: Any) -> dict[str, Any]:
    """The raw config fields among a command's arguments (``values``, its locals), paths as strings."""
    raw = {k: v for k, v in {**values, **renamed}.items() if k in config_cls.model_fields}
    if raw.get("data_dir") is not None:
        raw["data_dir"] = str(raw["data_dir"])
    return raw


@app.command()
def attack(
    attack_name: str = typer.Option("shokri", "--attack", help=f"Attack: {_ATTACK_NAMES_HELP}."),
    dataset: Literal["fashion-mnist", "digits"] = _DATASET,
    data_dir: Path | None = _DATA_DIR,
    classes: int | None = _CLASSES,
    target_size: int = _TARGET_SIZE,
    shadow_train_size: int = _SHADOW_TRAIN_SIZE,
    shadow_test_size: int = _SHADOW_TEST_SIZE,
    shadows: int = _SHADOWS,
    arch: Arch = _ARCH,
    shadow_arch: Arch | None = _SHADOW_ARCH,
    epochs: int = _EPOCHS,
    attack_model: AttackModel = _ATTACK_MODEL,
    per_class: bool | None = _PER_CLASS,
    features: FeatureSet = _FEATURES,
    refs: int | None = _REFS,
    ref_train_size: int | None = _REF_TRAIN_SIZE,
    engine: Literal["auto", "batched", "loop"] = _ENGINE,
    precision: Literal["auto", "f32", "bf16"] = _PRECISION,
    seed: int = typer.Option(0, help="Seed of the whole run."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full result record here."),
    verbose: bool = _VERBOSE,
) -> None:
    """Run one membership inference attack on a freshly trained target and print the results."""
    from miaudit.studies.config import AttackConfig, parse_config
    from miaudit.studies.pipeline import run_attack

    _setup_logging(verbose)
    raw = _run_options(locals(), AttackConfig, attack=attack_name)
    try:
        config = parse_config(AttackConfig, raw)
        with ProgressPrinter() as progress:
            result = run_attack(config, progress=progress)
    except MiauditError as exc:
        _fail(exc)
    console.print(attack_table(result))
    if json_path is not None:
        _write_json(json_path, result)
        console.print(f"result written to {json_path}")


@app.command()
def compare(
    attacks: str = typer.Option("all", "--attacks", help=f"Comma-separated attacks, or all ({_ATTACK_NAMES_HELP})."),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds: a new split, target and attacks for each."),
    dataset: Literal["fashion-mnist", "digits"] = _DATASET,
    data_dir: Path | None = _DATA_DIR,
    classes: int | None = _CLASSES,
    target_size: int = _TARGET_SIZE,
    shadow_train_size: int = _SHADOW_TRAIN_SIZE,
    shadow_test_size: int = _SHADOW_TEST_SIZE,
    shadows: int = _SHADOWS,
    arch: Arch = _ARCH,
    shadow_arch: Arch | None = _SHADOW_ARCH,
    epochs: int = _EPOCHS,
    attack_model: AttackModel = _ATTACK_MODEL,
    per_class: bool | None = _PER_CLASS,
    features: FeatureSet = _FEATURES,
    refs: int | None = _REFS,
    ref_train_size: int | None = _REF_TRAIN_SIZE,
    engine: Literal["auto", "batched", "loop"] = _ENGINE,
    precision: Literal["auto", "f32", "bf16"] = _PRECISION,
    seed: int = typer.Option(0, help="First seed (seeds are SEED, SEED+1, ...)."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the record here (for `miaudit report`): metrics and scores per attack."
    ),
    verbose: bool = _VERBOSE,
) -> None:
    """Run several attacks on the same targets over several seeds and print one comparison table."""
    from miaudit.studies.compare import run_compare
    from miaudit.studies.config import CompareConfig, parse_config

    _setup_logging(verbose)
    raw = _run_options(locals(), CompareConfig)
    try:
        config = parse_config(CompareConfig, raw)
        with ProgressPrinter() as progress:
            result = run_compare(config, progress=progress)
    except MiauditError as exc:
        _fail(exc)
    # the table is wide: let it be when the output is a file or a log rather than a terminal
    out = console if console.is_terminal else Console(width=max(console.width, 180))
    out.print(compare_table(result))
    if json_path is not None:
        _write_json(json_path, result)
        console.print(f"result written to {json_path}")


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
    studies: str | None = typer.Option(None, help="Comma-separated study ids (default: all), e.g. 1,2,5."),
    seeds: int = typer.Option(5, help="Seeds; each draws a new split, target and shadows."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/reproduce, or runs/quick)."),
    quick: bool = typer.Option(False, "--quick", help="Every study at a reduced scale (a few minutes)."),
    config_dir: Path | None = typer.Option(None, help="Folder of study*.toml configs (default: the shipped ones)."),
    cache_dir: Path | None = typer.Option(None, help="Cache of trained models and attacks (default: RUN/cache)."),
    data_dir: Path | None = typer.Option(None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files."),
    engine: Literal["auto", "batched", "loop"] = typer.Option("auto", help="Training engine."),
    precision: Literal["auto", "f32", "bf16"] = typer.Option("auto", help="Training precision."),
    report: bool = typer.Option(True, help="Write the HTML and Markdown report at the end."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Reproduce the seed study's experiments over several seeds, with intervals and verdicts."""
    from miaudit.studies.config import parse_config
    from miaudit.studies.reproduce import reproduce as run_reproduce
    from miaudit.studies.study import ReproduceConfig, load_studies

    _setup_logging(verbose)
    out = out or Path("runs") / ("quick" if quick else "reproduce")
    try:
        ids = [s.strip() for s in studies.split(",") if s.strip()] if studies else None
        config = parse_config(
            ReproduceConfig,
            {"studies": tuple(load_studies(ids, config_dir=config_dir)), "seeds": seeds, "quick": quick},
        )
        with ProgressPrinter() as progress:
            manifest = run_reproduce(
                config,
                out,
                cache_dir=cache_dir,
                data_dir=str(data_dir) if data_dir else None,
                engine=engine,
                precision=precision,
                command="miaudit " + " ".join(sys.argv[1:]),
                progress=progress,
            )
    except MiauditError as exc:
        _fail(exc)
    _print_reproduce_summary(out, manifest)
    if report:
        _write_report(out)


def _print_reproduce_summary(out: Path, manifest: dict[str, Any]) -> None:
    import csv

    with (out / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    findings = json.loads((out / "findings.json").read_text())
    for sid, info in manifest["studies"].items():
        rows = [r for r in summary if r["study"] == sid and r["metric"] == "accuracy"]
        t = Table(title=f"Study {sid}: {info['title']} ({info['paper_ref']})", header_style="bold")
        labels = {"attack_model": "attack model", "n_shadows": "shadows", "target_size": "target size",
                  "classes": "classes", "arch": "target net", "shadow_arch": "shadow net"}  # fmt: skip
        varying = [c for c in labels if len({r[c] for r in rows}) > 1] or ["n_shadows"]
        for c in varying:
            t.add_column(labels[c])
        t.add_column("accuracy [95% CI]", justify="right")
        t.add_column("paper", justify="right")
        t.add_column("AUC [95% CI]", justify="right")
        auc = {r["setting_id"]: r for r in summary if r["study"] == sid and r["metric"] == "auc"}
        for r in rows:
            a = auc.get(r["setting_id"], {})
            paper = f"{float(r['paper']):.3f}" if r["paper"] else ""
            t.add_row(*(r[c] for c in varying), _ci(r), paper, _ci(a) if a else "")
        console.print(t)
    if findings:
        console.print("[bold]Findings of the seed paper, tested on our data[/]")
        for f in findings:
            console.print(f"  {f['id']}: {f['sentence']}", highlight=False)
    tm = manifest["timings"]
    console.print(
        f"wall time {tm['total_s']:.0f} s (training {tm['training_s']:.0f} s, "
        f"attack fitting {tm['attack_fit_s']:.0f} s, evaluation {tm['evaluation_s']:.0f} s); "
        f"trained {tm['models_trained']} models and ran {tm['attacks_run']} attacks; "
        f"reused from the cache: {tm['models_from_cache']} models, {tm['attacks_from_cache']} attacks"
    )
    console.print(f"results are in {out}")


def _ci(r: dict[str, str]) -> str:
    if not r.get("mean"):
        return ""
    if not r.get("low"):
        return f"{float(r['mean']):.3f}"
    return f"{float(r['mean']):.3f} [{float(r['low']):.3f}, {float(r['high']):.3f}]"


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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()

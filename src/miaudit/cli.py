"""The ``miaudit`` command line: parses options, builds a config, runs, prints a summary.

Only this module prints. Progress goes to stderr: a live bar on a terminal, one plain line per
finished unit elsewhere (CI logs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
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
    title = (
        f"{cfg['attack']} attack ({cfg['attack_model']}{', per class' if cfg['per_class'] else ''}, "
        f"{cfg['shadows']} shadows) on {cfg['dataset']} {cfg['arch']} target, seed {cfg['seed']}"
    )
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
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


@app.command()
def attack(
    dataset: Literal["fashion-mnist", "digits"] = typer.Option("fashion-mnist", help="Dataset."),
    data_dir: Path | None = typer.Option(
        None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files."
    ),
    classes: int | None = typer.Option(None, help="Keep only the first N classes."),
    target_size: int = typer.Option(3000, help="Target members (as many non-members are held out)."),
    shadow_train_size: int = typer.Option(3000, help="Training records per shadow model."),
    shadow_test_size: int = typer.Option(2000, help="Held-out records per shadow model."),
    shadows: int = typer.Option(6, help="Number of shadow models."),
    arch: Literal["simple", "dense", "dropout"] = typer.Option("simple", help="Target network."),
    shadow_arch: Literal["simple", "dense", "dropout"] | None = typer.Option(
        None, help="Shadow network (default: the target's)."
    ),
    epochs: int = typer.Option(30, help="Training epochs of target and shadows."),
    attack_model: Literal["lr", "tree", "linear-svm", "rbf-svm"] = typer.Option(
        "linear-svm", help="Attack classifier."
    ),
    per_class: bool = typer.Option(
        False, "--per-class", help="One attack classifier per class (Shokri et al.)."
    ),
    features: Literal["raw", "sorted", "log-sorted", "true-label", "rich"] = typer.Option(
        "rich",
        help="Features the attack classifier sees.",
    ),
    engine: Literal["auto", "batched", "loop"] = typer.Option("auto", help="Training engine."),
    precision: Literal["auto", "f32", "bf16"] = typer.Option("auto", help="Training precision."),
    seed: int = typer.Option(0, help="Seed of the whole run."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full result record here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Run the shadow-model attack on a freshly trained target and print the results."""
    from miaudit.studies.config import AttackConfig, parse_config
    from miaudit.studies.pipeline import run_attack

    _setup_logging(verbose)
    raw = {
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None,
        "classes": classes,
        "target_size": target_size,
        "shadow_train_size": shadow_train_size,
        "shadow_test_size": shadow_test_size,
        "shadows": shadows,
        "arch": arch,
        "shadow_arch": shadow_arch,
        "epochs": epochs,
        "attack_model": attack_model,
        "per_class": per_class,
        "features": features,
        "engine": engine,
        "precision": precision,
        "seed": seed,
    }
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


@data_app.command("info")
def data_info(
    data_dir: Path | None = typer.Option(
        None, envvar="MIAUDIT_DATA_DIR", help="Folder with the dataset files."
    ),
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
        console.print_json(json.dumps(info))
        return
    console.print(f"Fashion-MNIST found in [bold]{info['directory']}[/]")
    files = Table("file", "bytes", "sha256", title="files")
    for name, f in info["files"].items():
        ok = f.get("sha256_ok")
        files.add_row(
            name, str(f.get("size_bytes")), "ok" if ok else ("not checked" if ok is None else "MISMATCH")
        )
    console.print(files)
    per_class = Table("class", "name", "records", title=f"{info['n_records']['total']} records")
    for row in info["per_class"]:
        per_class.add_row(str(row["label"]), row["name"], str(row["count"]))
    console.print(per_class)


@data_app.command("fetch")
def data_fetch(
    dest: Path | None = typer.Option(None, help="Folder to download into (default: the user cache)."),
    url: str | None = typer.Option(None, help="Base URL of the official files."),
    force: bool = typer.Option(False, help="Download even if valid files are present."),
) -> None:
    """Download the official Fashion-MNIST files into the cache, verifying their checksums."""
    from miaudit.data import fetch_fashion_mnist
    from miaudit.data.fashion_mnist import DEFAULT_URL

    def show(name: str, done: int, total: int | None) -> None:
        if total and done == total:
            err_console.print(f"downloaded {name} ({total} bytes)")

    try:
        path = fetch_fashion_mnist(dest, base_url=url or DEFAULT_URL, force=force, progress=show)
    except MiauditError as exc:
        _fail(exc)
    console.print(f"Fashion-MNIST is in {path}")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()

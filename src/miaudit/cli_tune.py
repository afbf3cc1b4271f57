"""``miaudit tune``: time the batched engine's candidate paths on this machine and cache the fastest.

The engine does this by itself at first use of a workload (:mod:`miaudit.training.tuning`); this
command does it ahead of time, again after a change of machine load, or to see why a path was chosen.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from miaudit.errors import ConfigError, MiauditError

__all__ = ["tune_command"]


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--hidden takes layer widths separated by commas, e.g. 256,128; got {text!r}") from None
    if not widths:
        raise ConfigError(f"--hidden needs at least one layer width, e.g. 128; got {text!r}")
    return widths


def tune_command(
    arch: str = typer.Option(
        "simple,dense,dropout", "--arch", help="Architectures to tune (comma-separated): simple, dense, dropout."
    ),
    hidden: str | None = typer.Option(None, "--hidden", help="Hidden layer widths instead of --arch, e.g. 256,128."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout rate of the --hidden network."),
    n_features: int = typer.Option(784, "--n-features", help="Input width (784: Fashion-MNIST)."),
    n_classes: int = typer.Option(10, "--n-classes", help="Classes."),
    batch_size: int = typer.Option(64, "--batch-size", help="Minibatch size of the recipe."),
    precision: str = typer.Option("auto", "--precision", help="auto (f32 and bf16 timed) | f32 | bf16."),
    seconds: float | None = typer.Option(None, "--seconds", help="Measuring time per workload (default 1.5)."),
    cached: bool = typer.Option(False, "--cached", help="Show the cached choices; time only what is not cached."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Time the training paths (precision, Adam step, chunk size, fused path) and cache the fastest."""
    from miaudit.cli import _fail, _setup_logging, console
    from miaudit.training.specs import ARCHITECTURES, ModelSpec, TrainSpec
    from miaudit.training.tuning import DEFAULT_SECONDS, tune, tuning_enabled, tuning_file

    _setup_logging(verbose)
    try:
        if seconds is not None and not seconds > 0:
            raise ConfigError(f"--seconds must be a positive number; got {seconds!r}")
        train = TrainSpec(batch_size=batch_size, precision=precision, engine="batched")
        if hidden is not None:
            models = [ModelSpec(n_features=n_features, n_classes=n_classes, hidden=_widths(hidden), dropout=dropout)]
        else:
            names = [a.strip() for a in arch.split(",") if a.strip()]
            if not names:
                raise ConfigError(f"--arch needs at least one of {', '.join(ARCHITECTURES)}; got {arch!r}")
            models = [ModelSpec.from_arch(a, n_features=n_features, n_classes=n_classes) for a in names]
        out = []
        for model in models:
            choice = tune(model=model, train=train, seconds=seconds or DEFAULT_SECONDS, force=not cached)
            out.append({"model": f"{'-'.join(map(str, model.layer_sizes))} {model.name}", **choice.to_dict()})
    except (MiauditError, ValueError) as exc:
        _fail(exc)
    if json_out:
        typer.echo(json.dumps(out, indent=1))
        return
    for d in out:
        t = Table(title=f"MLP {d['model']}, batch {batch_size}, precision {precision}", title_justify="left")
        t.add_column("path")
        t.add_column("ms per model-step", justify="right")
        for label, ms in d["ms_per_model_step"].items():
            t.add_row(label, f"{ms:.4f}")
        console.print(t)
        console.print(f"chosen ({d['source']}): {d['reason']}", highlight=False)
    note = "" if tuning_enabled() else " (MIAUDIT_TUNING=off: the engine uses the fixed rules until it is unset)"
    console.print(f"choices cached in {tuning_file()}{note}", highlight=False, markup=False)

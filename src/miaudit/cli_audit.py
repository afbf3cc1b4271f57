"""``miaudit audit``: audit your own model on your own data (flags, or a TOML audit file, or both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from miaudit.errors import ConfigError, MiauditError

__all__ = ["audit_command", "audit_table"]


def _csv_ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{what} takes integers separated by commas, e.g. 1,28,28; got {text!r}") from None


def _attack_params(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["lira.n_refs=32"]`` as ``{"lira": {"n_refs": 32}}``."""
    from miaudit.cli import _parse_attack_params

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or "=" not in rest:
            raise ConfigError(f"--attack-param takes ATTACK.KEY=VALUE (e.g. lira.n_refs=32); got {pair!r}")
        out.setdefault(name.strip(), {}).update(_parse_attack_params([rest]))
    return out


def audit_table(record: dict[str, Any]) -> Table:
    """One row per attack: AUC with its interval, TPR at 1% and 0.1% FPR, members flagged, queries, time."""
    t = Table(title="Membership inference audit", title_justify="left")
    for col in ("attack", "AUC [95% CI]", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "flagged @ 0.1%", "queries", "time"):
        t.add_column(col, justify="left" if col == "attack" else "right")
    n = record.get("data", {}).get("n_members", "?")
    for name, a in record.get("attacks", {}).items():
        m, ci = a["metrics"], a["intervals"]
        lo, hi = ci["auc"]
        t.add_row(
            name,
            f"{m['auc']:.3f} [{lo:.3f}, {hi:.3f}]",
            f"{m['tpr_at_fpr']['0.01']:.3f}",
            f"{m['tpr_at_fpr']['0.001']:.4f}",
            f"{a['flagged']['0.001']} of {n}",
            str(a["queries"]),
            f"{a['timings']['fit'] + a['timings']['score']:.1f} s",
        )
    return t


def audit_command(
    model: str | None = typer.Option(None, "--model", help="Model file (.skops .pt2 .safetensors .onnx) or URL."),
    data: str | None = typer.Option(None, "--data", help="Records: .csv .parquet .npz .idx, or a folder of images."),
    members: str | None = typer.Option(None, "--members", help="CSV whose id column lists the members."),
    member_column: str | None = typer.Option(None, "--member-column", help="Boolean column of the data: members."),
    population: str | None = typer.Option(None, "--population", help="The attacker's own records (default: rest)."),
    nonmembers: str | None = typer.Option(None, "--nonmembers", help="Non-member records (default: the rest)."),
    outputs: str | None = typer.Option(None, "--outputs", help="Per-record outputs instead of a model."),
    attack: list[str] = typer.Option([], "--attack", help="An attack to run (repeatable; default: lira rmia loss)."),
    attack_param: list[str] = typer.Option([], "--attack-param", help="ATTACK.KEY=VALUE, e.g. lira.n_refs=32."),
    label_column: str | None = typer.Option(None, "--label-column", help="Label column (default: label)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Record-id column (default: id, else row number)."),
    feature_columns: str | None = typer.Option(None, "--feature-columns", help="Comma-separated feature columns."),
    labels: str | None = typer.Option(None, "--labels", help="Labels file for IDX images."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="What the model takes, e.g. 1,28,28."),
    output_kind: str | None = typer.Option(None, "--output-kind", help="auto | probabilities | logits | loss."),
    factory: str | None = typer.Option(None, "--factory", help="package.module:callable building the module."),
    trust: list[str] = typer.Option([], "--trust", help="A skops type to trust (repeatable)."),
    allow_unsafe_pickle: bool = typer.Option(
        False, "--allow-unsafe-pickle", help="Load a pickle/joblib model: runs any code it holds. Only your own files."
    ),
    shadows: str | None = typer.Option(None, "--shadows", help="auto | family | mlp: the attacker's models."),
    n_shadows: int | None = typer.Option(None, "--n-shadows", help="Shadow models of the shadow attacks."),
    n_refs: int | None = typer.Option(None, "--n-refs", help="Reference models of LiRA and RMIA."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs of the attacker's models."),
    token_file: str | None = typer.Option(None, "--token-file", help="File with the service's bearer token."),
    budget: int | None = typer.Option(None, "--budget", help="Most records sent to the service (cached are free)."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Requests in flight at once."),
    dp_epsilon: float | None = typer.Option(None, "--dp-epsilon", help="The privacy claim to check."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split and the attacks."),
    config: Path | None = typer.Option(None, "--config", help="TOML audit file (docs/audit-config.md)."),
    out: Path = typer.Option(Path("runs/audit"), "--out", help="Audit directory to write."),
    report: bool = typer.Option(True, help="Write the HTML and Markdown report at the end."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Audit your own model on your own data: which of its training records can an attacker pick out?"""
    from miaudit.cli import ProgressPrinter, _command, _fail, _setup_logging, console
    from miaudit.studies.audit import run_audit
    from miaudit.studies.audit_config import load_audit_config

    _setup_logging(verbose)
    try:
        cfg = load_audit_config(
            config,
            model=model,
            data=data,
            members=members,
            member_column=member_column,
            population=population,
            nonmembers=nonmembers,
            outputs=outputs,
            attacks=tuple(attack) or None,
            attack_params=_attack_params(attack_param) or None,
            label_column=label_column,
            id_column=id_column,
            feature_columns=tuple(c.strip() for c in feature_columns.split(",")) if feature_columns else None,
            labels=labels,
            input_shape=_csv_ints(input_shape, "--input-shape"),
            output_kind=output_kind,
            factory=factory,
            trust=tuple(trust) or None,
            allow_unsafe_pickle=True if allow_unsafe_pickle else None,
            shadows=shadows,
            n_shadows=n_shadows,
            n_refs=n_refs,
            epochs=epochs,
            token_file=token_file,
            budget=budget,
            concurrency=concurrency,
            dp_epsilon=dp_epsilon,
            seed=seed,
        )
        with ProgressPrinter() as progress:
            result = run_audit(
                cfg,
                out,
                command=_command(),
                say=lambda s: console.print(s, highlight=False),
                progress=progress,
                report=report,
            )
    except (MiauditError, ValueError) as exc:
        _fail(exc)
    from rich.console import Console

    # the table is wide: let it be when the output is a file or a log rather than a terminal
    (console if console.is_terminal else Console(width=max(console.width, 160))).print(audit_table(result.record))
    console.print(f"[bold]{result.verdict}[/]")
    console.print(
        f"audit written to {out} (audit.json, records.csv, records.parquet{', report.html' if report else ''})"
    )

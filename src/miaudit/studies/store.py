"""The run directory: tidy results, summaries, findings, scores and the manifest (docs/run-format.md).

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.metrics import mean_ci
from miaudit.studies.paper import paper_value

__all__ = [
    "RESULT_COLUMNS",
    "SUMMARY_COLUMNS",
    "atomic_write_text",
    "read_results",
    "result_rows",
    "summarize",
    "write_csv",
    "write_json",
    "write_scores",
]

SETTING_COLUMNS = ("study", "setting_id", "attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")
RESULT_COLUMNS = (*SETTING_COLUMNS[:2], "seed", *SETTING_COLUMNS[2:], "metric", "value")
SUMMARY_COLUMNS = (*SETTING_COLUMNS, "metric", "mean", "low", "high", "std", "n", "paper")
METRICS = ("accuracy", "precision", "recall", "balanced_accuracy", "advantage", "auc")
BOUNDED_METRICS = frozenset(
    {*METRICS, "tpr_at_fpr_0.01", "tpr_at_fpr_0.001", "tpr_at_fpr_0", "target_train_accuracy", "target_test_accuracy"}
) - {"advantage"}


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x)) if math.isfinite(x) else x


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, record: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(record), indent=2) + "\n")


def _clean(o: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def result_rows(
    setting: Any, seed: int, metrics: Mapping[str, Any], target: Mapping[str, float]
) -> list[dict[str, Any]]:
    """The tidy rows of one evaluation: one per metric."""
    base = {
        "study": setting.study,
        "setting_id": setting.setting_id,
        "seed": seed,
        "attack_model": setting.attack_model,
        "n_shadows": setting.n_shadows,
        "target_size": setting.target_size,
        "classes": setting.classes,
        "arch": setting.arch,
        "shadow_arch": setting.attacker_arch,
    }
    values: dict[str, float] = {m: float(metrics[m]) for m in METRICS}
    values.update({f"tpr_at_fpr_{k}": float(v) for k, v in metrics["tpr_at_fpr"].items()})
    values["n_members"] = float(metrics["n_members"])
    values["n_nonmembers"] = float(metrics["n_nonmembers"])
    values.update({f"target_{k}": float(v) for k, v in target.items() if k != "generalization_gap"})
    values["generalization_gap"] = float(target["generalization_gap"])
    return [{**base, "metric": m, "value": v} for m, v in values.items()]


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate tidy rows over seeds: mean and 95% interval per setting and metric, the paper's value beside."""
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    first: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for r in rows:
        key = (*(r[c] for c in SETTING_COLUMNS), r["metric"])
        groups[key].append(float(r["value"]))
        first.setdefault(key, r)
    out = []
    for key, values in groups.items():
        r = first[key]
        ci = dict(mean_ci(values))
        if r["metric"] in BOUNDED_METRICS:  # a t-interval can leave [0, 1]; the metric cannot
            ci["low"], ci["high"] = _clip01(ci["low"]), _clip01(ci["high"])
        paper = paper_value(
            str(r["study"]),
            metric=str(r["metric"]),
            attack_model=str(r["attack_model"]),
            n_shadows=int(r["n_shadows"]),
            target_size=int(r["target_size"]),
            classes=int(r["classes"]),
            arch=str(r["arch"]),
        )
        out.append(
            {
                **{c: r[c] for c in SETTING_COLUMNS},
                "metric": r["metric"],
                "mean": ci["mean"],
                "low": ci["low"],
                "high": ci["high"],
                "std": ci["std"],
                "n": ci["n"],
                "paper": paper,
            }
        )
    return out


def write_scores(directory: Path, scores: Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]]) -> None:
    """One ``<setting_id>.npz`` per setting with arrays ``member_seed<S>`` and ``nonmember_seed<S>``."""
    directory.mkdir(parents=True, exist_ok=True)
    for setting_id, per_seed in scores.items():
        arrays = {}
        for seed, (member, nonmember) in sorted(per_seed.items()):
            arrays[f"member_seed{seed}"] = np.asarray(member, dtype=np.float64)
            arrays[f"nonmember_seed{seed}"] = np.asarray(nonmember, dtype=np.float64)
        path = directory / f"{setting_id}.npz"
        tmp = directory / f".{setting_id}.{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(path)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read a results.csv back (numbers as numbers)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"] = int(r["seed"])
        r["value"] = float(r["value"])
        for c in ("n_shadows", "target_size", "classes"):
            r[c] = int(r[c])
    return rows

"""The run directory: tidy results, summaries, findings, scores and the manifest (docs/run-format.md).

Every command that runs settings (``attack --out``, ``compare``, ``reproduce``) writes this one format,
and ``miaudit report`` reads it. Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import atomic_path, atomic_write_text
from miaudit.metrics import mean_ci, metric_bounds
from miaudit.studies.experiment import Evaluation
from miaudit.studies.paper import paper_value
from miaudit.studies.records import SETTING_COLUMNS as DESCRIBING_COLUMNS
from miaudit.studies.records import ResultRow, SummaryRow

__all__ = [
    "RESULT_COLUMNS",
    "RUN_FORMAT",
    "SETTING_COLUMNS",
    "SUMMARY_COLUMNS",
    "result_rows",
    "summarize",
    "write_csv",
    "write_json",
    "write_scores",
]

#: version of the run directory's format
RUN_FORMAT = 2
SETTING_COLUMNS = ("study", "setting_id", *DESCRIBING_COLUMNS)
RESULT_COLUMNS = (*SETTING_COLUMNS[:2], "seed", *SETTING_COLUMNS[2:], "metric", "value")
SUMMARY_COLUMNS = (*SETTING_COLUMNS, "metric", "mean", "low", "high", "std", "n", "paper")
METRICS = ("accuracy", "precision", "recall", "balanced_accuracy", "advantage", "auc")


def write_json(path: Path, record: Any) -> None:
    """``record`` as indented JSON, NaN and infinities as null."""
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


def write_csv(path: Path, rows: Iterable[ResultRow | SummaryRow | Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Rows (records or mappings) as CSV with ``columns``; None and non-finite numbers as empty cells."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = dataclasses.asdict(r) if isinstance(r, ResultRow | SummaryRow) else dict(r)
        w.writerow({k: _cell(d.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def result_rows(ev: Evaluation, *, n_classes: int) -> list[ResultRow]:
    """The tidy rows of one evaluation: one per metric.

    ``n_classes`` is the number of classes of the setting's data view (a setting's ``classes`` may be
    None, meaning all).
    """
    st = ev.setting
    m = ev.metrics
    values: dict[str, float] = {k: float(m[k]) for k in METRICS}
    values.update({f"tpr_at_fpr_{k}": float(v) for k, v in m["tpr_at_fpr"].items()})
    values["n_members"] = float(m["n_members"])
    values["n_nonmembers"] = float(m["n_nonmembers"])
    values["target_train_accuracy"] = ev.target.train_accuracy
    values["target_test_accuracy"] = ev.target.test_accuracy
    values["generalization_gap"] = ev.target.generalization_gap
    if ev.target.served_test_accuracy is not None:  # the utility of the answers the target's API gives
        values["served_test_accuracy"] = ev.target.served_test_accuracy
    if ev.target.epsilon_spent is not None:  # the accountant's epsilon of a DP-SGD target
        values["target_epsilon"] = ev.target.epsilon_spent
    values["queries"] = float(ev.queries)
    values["attack_time_s"] = ev.attack_time_s
    return [
        ResultRow(
            study=st.study,
            setting_id=st.setting_id,
            seed=ev.seed,
            attack=st.attack,
            attack_model=st.attack_model,
            n_shadows=st.n_shadows,
            target_size=st.target_size,
            classes=n_classes,
            arch=st.arch,
            shadow_arch=st.attacker_arch,
            metric=k,
            value=v,
        )
        for k, v in values.items()
    ]


def _bounds(metric: str) -> tuple[float, float] | None:
    """The range of a result row's metric (the target's accuracies are accuracies; counts and times are >= 0)."""
    if metric in ("queries", "attack_time_s", "n_members", "n_nonmembers", "target_epsilon"):
        return (0.0, math.inf)
    accuracies = ("target_train_accuracy", "target_test_accuracy", "served_test_accuracy")
    return metric_bounds("accuracy" if metric in accuracies else metric)


def summarize(rows: Iterable[ResultRow]) -> list[SummaryRow]:
    """Aggregate tidy rows over seeds: mean and 95% interval per setting and metric, the paper's value beside.

    Intervals follow :func:`~miaudit.metrics.mean_ci`: none below its minimum number of seeds, and never
    outside the metric's range.
    """
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    first: dict[tuple[Any, ...], ResultRow] = {}
    for r in rows:
        key = (*(getattr(r, c) for c in SETTING_COLUMNS), r.metric)
        groups[key].append(float(r.value))
        first.setdefault(key, r)
    out = []
    for key, values in groups.items():
        r = first[key]
        ci = mean_ci(values, bounds=_bounds(r.metric))
        paper = None
        if r.attack == "shokri" and r.n_shadows is not None and r.target_size is not None and r.classes is not None:
            paper = paper_value(
                r.study,
                metric=r.metric,
                attack_model=r.attack_model,
                n_shadows=r.n_shadows,
                target_size=r.target_size,
                classes=r.classes,
                arch=r.arch,
            )
        out.append(
            SummaryRow(
                **{c: getattr(r, c) for c in SETTING_COLUMNS},
                metric=r.metric,
                mean=float(ci["mean"]),
                low=float(ci["low"]),
                high=float(ci["high"]),
                std=float(ci["std"]),
                n=int(ci["n"]),
                paper=paper,
            )
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
        with atomic_path(directory / f"{setting_id}.npz") as tmp, tmp.open("wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

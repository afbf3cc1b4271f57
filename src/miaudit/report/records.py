"""The records a report is built from, and the error raised when they are missing or malformed.

Plain frozen dataclasses of numbers and text, filled by :mod:`.load` (run directories) and
:mod:`.load_records` (``compare --json`` and ``attack --json``); see ``docs/run-format.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit.errors import DataError

__all__ = [
    "RERUN",
    "SETTING_COLUMNS",
    "VERDICTS",
    "AttackRecord",
    "CompareData",
    "Finding",
    "Interval",
    "ReportError",
    "ResultRow",
    "ScoreSet",
    "SummaryRow",
    "first",
    "index_summary",
]

#: Columns that describe a setting, in the order reports mention them.
SETTING_COLUMNS = ("attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")
VERDICTS = ("supported", "not supported", "contradicted", "inconclusive")
RERUN = "rerun the same `miaudit reproduce` command: it resumes from its cache and rewrites the file"


class ReportError(DataError):
    """Stored results are missing, partial or malformed, so no report can be built from them."""


# --------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Interval:
    """A metric across seeds: mean, 95% interval (NaN when ``n`` is 1), sample std and count."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    std: float = math.nan
    n: int = 1

    @property
    def has_ci(self) -> bool:
        """Whether ``low`` and ``high`` are both finite."""
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class ResultRow:
    """One row of ``results.csv``: one seed, setting and metric."""

    study: str
    setting_id: str
    seed: int
    attack_model: str
    n_shadows: int | None
    target_size: int | None
    classes: int | None
    arch: str
    shadow_arch: str
    metric: str
    value: float


@dataclass(frozen=True)
class SummaryRow:
    """One row of ``summary.csv``: one setting and metric aggregated over seeds, with the paper's value."""

    study: str
    setting_id: str
    attack_model: str
    n_shadows: int | None
    target_size: int | None
    classes: int | None
    arch: str
    shadow_arch: str
    metric: str
    mean: float
    low: float
    high: float
    std: float
    n: int
    paper: float | None

    @property
    def interval(self) -> Interval:
        """The aggregate as an :class:`Interval`."""
        return Interval(self.mean, self.low, self.high, self.std, self.n)

    def setting(self) -> dict[str, Any]:
        """The setting's descriptive columns, ``{"attack_model": ..., "n_shadows": ..., ...}``."""
        return {name: getattr(self, name) for name in SETTING_COLUMNS}


@dataclass(frozen=True)
class Finding:
    """One of the seed paper's findings with the verdict our data gives it."""

    id: str
    study: str
    claim: str
    verdict: str
    paper_ref: str = ""
    metric: str = ""
    comparison: str = ""
    difference: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    n: int = 0
    sentence: str = ""
    auc: Interval | None = None  # the same comparison on AUC, when the run recorded it
    auc_verdict: str = ""


@dataclass(frozen=True)
class ScoreSet:
    """Membership scores of one attack, per seed: ``{seed_label: (member, nonmember)}``.

    Each array is an ndarray of shape (n_members,) or (n_nonmembers,), float64, finite.
    """

    label: str
    by_seed: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]


@dataclass(frozen=True)
class CompareData:
    """The record of ``miaudit compare --json``: metrics per attack across seeds, and their scores."""

    path: Path
    config: dict[str, Any]
    seeds: list[Any]
    metrics: dict[str, dict[str, Interval]]  # attack -> "auc", "accuracy", "tpr_at_fpr_0.001", ...
    scores: dict[str, ScoreSet]
    target: dict[str, Interval] = field(default_factory=dict)  # "train_accuracy", "test_accuracy", ...


@dataclass(frozen=True)
class AttackRecord:
    """The record of ``miaudit attack --json``: one attack on one target, one seed."""

    path: Path
    config: dict[str, Any]
    target: dict[str, Any]
    metrics: dict[str, Any]
    timings: dict[str, Any]
    versions: dict[str, Any]
    scores: ScoreSet
    extra: dict[str, Any] = field(default_factory=dict)


def index_summary(rows: Iterable[SummaryRow]) -> dict[tuple[str, str], SummaryRow]:
    """``{(setting_id, metric): row}``; the first row wins when a pair repeats."""
    out: dict[tuple[str, str], SummaryRow] = {}
    for r in rows:
        out.setdefault((r.setting_id, r.metric), r)
    return out


def first(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first key present in ``mapping``."""
    for k in keys:
        if k in mapping and mapping[k] is not None:
            return mapping[k]
    return default

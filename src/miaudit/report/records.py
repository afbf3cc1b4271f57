"""The records a report is built from, and the error raised when they are missing or malformed.

Plain frozen dataclasses of numbers and text, filled by :mod:`.load` from a run directory (the
format of ``docs/run-format.md``, written by ``miaudit reproduce``, ``miaudit compare --out`` and
``miaudit attack --out``). Only the manifest's free-form parts (configuration, versions, hardware,
timings) stay JSON mappings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit.errors import DataError
from miaudit.studies.records import SETTING_COLUMNS, Interval, ResultRow, SettingValue, SummaryRow

__all__ = [
    "KINDS",
    "RERUN",
    "SETTING_COLUMNS",
    "STATUSES",
    "VERDICTS",
    "Finding",
    "Interval",
    "Manifest",
    "ReportError",
    "ResultRow",
    "ScoreSet",
    "SettingValue",
    "StudyInfo",
    "SummaryRow",
    "index_summary",
]

#: Verdicts a finding may carry; "not supported" is the older name of an undecided verdict (format 1).
VERDICTS = ("supported", "contradicted", "negligible", "inconclusive", "not supported")
#: The commands that write a run directory.
KINDS = ("reproduce", "compare", "attack")
STATUSES = ("running", "complete", "interrupted")
RERUN = "rerun the command that wrote the run directory: it resumes from its cache and rewrites the file"


class ReportError(DataError):
    """Stored results are missing, partial or malformed, so no report can be built from them."""


# --------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class StudyInfo:
    """What the manifest says of one study: its id, title, the paper's reference and a description."""

    id: str
    title: str
    paper_ref: str = ""
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what ran, how, where and when.

    ``config``, ``versions``, ``hardware`` and ``timings`` are the manifest's free-form parts, kept
    as the JSON objects they are (shown in the appendix, never interpreted beyond a dataset name).
    """

    format: int
    kind: str
    status: str
    seeds: tuple[int, ...]
    studies: tuple[StudyInfo, ...]
    command: str = ""
    created: str = ""
    finished: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    hardware: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, Any] = field(default_factory=dict)

    def study(self, study_id: str) -> StudyInfo | None:
        """The manifest's record of a study, or None when it has none."""
        return next((s for s in self.studies if s.id == study_id), None)


# --------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Finding:
    """One of the seed paper's findings with the verdict our data gives it.

    ``margin`` is the smallest effect that matters (NaN when the run recorded none);
    ``seeds_needed`` the number of seeds a decisive verdict would need (None when not recorded).
    """

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
    margin: float = math.nan
    seeds_needed: int | None = None
    sentence: str = ""
    auc: Interval | None = None  # the same comparison on AUC, when the run recorded it
    auc_verdict: str = ""


@dataclass(frozen=True)
class ScoreSet:
    """Membership scores of one setting, per seed: ``{seed_label: (member, nonmember)}``.

    Each array is an ndarray of shape (n_members,) or (n_nonmembers,), float64, finite.
    """

    label: str
    by_seed: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]


def index_summary(rows: Iterable[SummaryRow]) -> dict[tuple[str, str], SummaryRow]:
    """``{(setting_id, metric): row}``; the first row wins when a pair repeats."""
    out: dict[tuple[str, str], SummaryRow] = {}
    for r in rows:
        out.setdefault((r.setting_id, r.metric), r)
    return out

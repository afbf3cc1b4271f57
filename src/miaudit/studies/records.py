"""The typed records of a run's results, shared by the writer (:mod:`.store`) and the report's reader.

Plain frozen dataclasses of numbers and text: one row of ``results.csv`` (:class:`ResultRow`: one seed,
setting and metric) and one of ``summary.csv`` (:class:`SummaryRow`: the same aggregated over seeds).
Nothing else crosses from the experiment layer to the report: the report reads these from the files.
This module imports nothing of the package, so the report can use it without models or attacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SETTING_COLUMNS", "Interval", "ResultRow", "SettingValue", "SummaryRow"]

#: Columns that describe a setting, in the order reports mention them.
SETTING_COLUMNS = ("attack", "attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")

#: The value of one setting column: text (``attack``, ``arch``...), a whole number, or None when empty.
SettingValue = str | int | None


@dataclass(frozen=True)
class Interval:
    """A metric across seeds: mean, 95% interval (NaN when there is none), sample std and count."""

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
    attack: str
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
    attack: str
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

    def setting(self) -> dict[str, SettingValue]:
        """The setting's descriptive columns, ``{"attack": ..., "attack_model": ..., ...}``."""
        return {name: getattr(self, name) for name in SETTING_COLUMNS}

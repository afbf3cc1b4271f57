"""Intervals across seeds: no interval from fewer than 3 values, clipping to a metric's range, seeds needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from miaudit.metrics import METRIC_BOUNDS, MIN_INTERVAL_VALUES, mean_ci, metric_bounds, seeds_needed


def test_fewer_than_three_values_claim_no_interval() -> None:
    assert MIN_INTERVAL_VALUES == 3
    # two seeds of a TPR at 1% FPR: t(0.975, 1) = 12.706 would give 0.0325 +- 12.706 * 0.0175 = [-0.19, +0.255]
    two = mean_ci([0.015, 0.05])
    assert two["n"] == 2 and two["mean"] == pytest.approx(0.0325)
    assert math.isnan(two["low"]) and math.isnan(two["high"])
    assert two["std"] == pytest.approx(0.0247487, abs=1e-7)  # |0.05 - 0.015| / sqrt(2): a spread, not an interval
    one = mean_ci([0.7])
    assert math.isnan(one["low"]) and math.isnan(one["std"])
    three = mean_ci([0.015, 0.05, 0.03])
    assert math.isfinite(three["low"]) and three["low"] < three["mean"] < three["high"]


def test_three_values_by_hand() -> None:
    # 0.6 0.7 0.8: mean 0.7, sd 0.1, t(0.975, 2) = 4.3026527, half-width 4.3026527 * 0.1 / sqrt(3) = 0.2484138
    r = mean_ci([0.6, 0.7, 0.8])
    assert (r["low"], r["high"]) == pytest.approx((0.4515862, 0.9484138), abs=1e-6)
    low, high = stats.t.interval(0.95, 2, loc=0.7, scale=stats.sem([0.6, 0.7, 0.8]))
    assert (r["low"], r["high"]) == pytest.approx((low, high))


def test_bounded_intervals_are_clipped_to_the_metric_range() -> None:
    # recall over three seeds 0.9, 0.99, 1.0: mean 0.963333, sd 0.0550757, half-width 4.3026527 * 0.0550757 / sqrt(3)
    # = 0.1368156 -> unclipped [0.826518, 1.100149]
    raw = mean_ci([0.9, 0.99, 1.0])
    assert raw["high"] == pytest.approx(1.100149, abs=1e-6)
    clipped = mean_ci([0.9, 0.99, 1.0], bounds=metric_bounds("recall"))
    assert clipped["high"] == 1.0 and clipped["low"] == pytest.approx(0.826518, abs=1e-6)
    assert clipped["mean"] == raw["mean"] and clipped["std"] == raw["std"]
    low_end = mean_ci([0.0, 0.01, 0.05], bounds=(0.0, 1.0))  # unclipped low 0.02 - 4.3027 * 0.0264575 / sqrt(3) < 0
    assert low_end["low"] == 0.0 and low_end["high"] == pytest.approx(0.02 + 0.0657233, abs=1e-6)
    adv = mean_ci([-0.99, -0.95, -0.9], bounds=metric_bounds("advantage"))
    assert adv["low"] == -1.0 and adv["high"] < -0.8
    inside = mean_ci([0.6, 0.7, 0.8], bounds=(0.0, 1.0))  # already inside: unchanged
    assert (inside["low"], inside["high"]) == (mean_ci([0.6, 0.7, 0.8])["low"], mean_ci([0.6, 0.7, 0.8])["high"])
    two = mean_ci([0.2, 0.3], bounds=(0.0, 1.0))  # still no interval from two values
    assert math.isnan(two["low"]) and math.isnan(two["high"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=10), st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_a_bounded_interval_never_leaves_the_range(values: list[float], level: float) -> None:
    r = mean_ci(values, level=level, bounds=(0.0, 1.0))
    assert 0.0 <= r["low"] <= r["mean"] + 1e-12 and r["mean"] - 1e-12 <= r["high"] <= 1.0
    raw = mean_ci(values, level=level)
    assert r["low"] == max(0.0, raw["low"]) and r["high"] == min(1.0, raw["high"])


def test_which_metrics_are_bounded() -> None:
    for name in ("accuracy", "precision", "recall", "balanced_accuracy", "auc", "tpr_at_fpr"):
        assert METRIC_BOUNDS[name] == (0.0, 1.0) == metric_bounds(name)
    assert metric_bounds("tpr_at_fpr_0.001") == metric_bounds("tpr_at_fpr[0.01]") == (0.0, 1.0)
    assert metric_bounds("advantage") == (-1.0, 1.0)
    assert metric_bounds("n_members") is None and metric_bounds("generalization_gap") is None


def test_bounds_errors() -> None:
    with pytest.raises(ValueError, match=r"values must lie within bounds \(0.0, 1.0\); got values from 0.5 to 1.2"):
        mean_ci([0.5, 1.2, 0.7], bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"bounds must satisfy low < high.*got \(1.0, 0.0\)"):
        mean_ci([0.5, 0.6, 0.7], bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"bounds must satisfy low < high.*got \(0.0, nan\)"):
        mean_ci([0.5, 0.6, 0.7], bounds=(0.0, math.nan))
    with pytest.raises(TypeError, match=r"bounds must be a pair \(low, high\).*got 1.0"):
        mean_ci([0.5, 0.6, 0.7], bounds=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"bounds\[0\] must be a real number; got 'a'"):
        mean_ci([0.5, 0.6, 0.7], bounds=("a", 1.0))  # type: ignore[arg-type]


def test_seeds_needed_by_hand() -> None:
    # std 0.01, gap 0.012: n = 5: t(4) = 2.776445 -> 0.0124166 (not below); n = 6: t(5) = 2.570582 -> 0.0104944
    assert seeds_needed(0.01, 0.012) == 6
    # std 0.02, gap 0.005: the normal approximation gives (1.959964 * 4)^2 = 61.46; t adds a few:
    # n = 64: t(63) = 1.998341 * 0.02 / 8 = 0.0049959 (below); n = 63: t(62) = 1.998972 * 0.02 / sqrt(63) = 0.0050369
    assert seeds_needed(0.02, 0.005) == 64
    assert seeds_needed(0.02, 0.005, level=0.5) < 64
    # no spread: the fewest seeds that give an interval at all
    assert seeds_needed(0.0, 1e-9) == MIN_INTERVAL_VALUES
    # nothing to close, no spread estimate, or an astronomical number: no answer
    assert seeds_needed(0.01, 0.0) is None and seeds_needed(0.01, -0.1) is None
    assert seeds_needed(math.nan, 0.01) is None
    assert seeds_needed(1.0, 1e-9) is None


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-4, 0.1), st.floats(1e-4, 0.1))
def test_seeds_needed_is_the_smallest_that_clears_the_gap(std: float, gap: float) -> None:
    n = seeds_needed(std, gap)
    assert n is not None and n >= MIN_INTERVAL_VALUES

    def half(k: int) -> float:
        return float(stats.t.ppf(0.975, k - 1)) * std / np.sqrt(k)

    assert half(n) < gap
    assert n == MIN_INTERVAL_VALUES or half(n - 1) >= gap


def test_seeds_needed_errors() -> None:
    with pytest.raises(ValueError, match=r"std must be a standard deviation, at least 0; got -0.1"):
        seeds_needed(-0.1, 0.01)
    with pytest.raises(ValueError, match=r"level must be a confidence level.*got 1"):
        seeds_needed(0.1, 0.01, level=1)
    with pytest.raises(TypeError, match=r"gap must be a real number; got 'x'"):
        seeds_needed(0.1, "x")  # type: ignore[arg-type]

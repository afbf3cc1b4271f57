"""Metric details that mutation testing showed no test pinned: the order statistic behind threshold_for_fpr on
unsorted scores, and the name a bad interval bound is reported under."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.metrics import mean_ci, threshold_for_fpr, tpr_at_fpr

# (seed, fpr): unsorted scores on which a partial sort around the index next to the right one (numpy's
# introselect) leaves a wrong value at the right index, and a few ordinary cases
CASES = [(283, 0.5), (111, 0.25), (688, 0.1), (0, 0.0), (1, 0.013), (2, 0.37), (3, 0.9)]


@pytest.mark.parametrize(("seed", "fpr"), CASES)
def test_threshold_for_fpr_is_just_above_the_right_order_statistic(seed: int, fpr: float) -> None:
    s = np.random.default_rng(seed).random(1001)
    k = int(np.floor(fpr * s.size + 1e-9))  # non-members the rule may flag
    expected = float(np.nextafter(np.sort(s)[s.size - 1 - k], np.inf))
    t = threshold_for_fpr(s, fpr)
    assert t == expected
    assert np.count_nonzero(s >= t) == k
    # with members above every non-member, the recall at this threshold is tpr_at_fpr's
    members = np.full(5, 2.0)
    y = np.r_[np.ones(5, bool), np.zeros(s.size, bool)]
    assert tpr_at_fpr(y, np.r_[members, s], fpr) == 1.0


def test_a_bad_upper_bound_is_named_as_such() -> None:
    with pytest.raises(TypeError, match=r"bounds\[1\] must be a real number; got 'x'"):
        mean_ci([0.1, 0.2, 0.3], bounds=(0.0, "x"))
    with pytest.raises(TypeError, match=r"bounds\[0\] must be a real number; got None"):
        mean_ci([0.1, 0.2, 0.3], bounds=(None, 1.0))

"""Tests of miaudit.metrics: hand-computed cases, agreement with scikit-learn, properties, errors."""

from __future__ import annotations

import ast
import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from miaudit import metrics
from miaudit.metrics import (
    accuracy,
    advantage,
    auc,
    balanced_accuracy,
    best_threshold,
    bootstrap_ci,
    confusion,
    fpr_key,
    mean_ci,
    membership_metrics,
    paired_difference_ci,
    precision,
    recall,
    roc_curve,
    threshold_for_fpr,
    tpr_at_fpr,
)

# The hand case used throughout: 4 members, 4 non-members, one tie across classes at 0.5.
#   members     0.9  0.8  0.5  0.3
#   non-members 0.7  0.5  0.2  0.1
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
S = np.array([0.9, 0.8, 0.5, 0.3, 0.7, 0.5, 0.2, 0.1])
NONMEMBER_S = S[~Y]


def random_case(seed: int, n: int = 200, shift: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    s = rng.normal(size=n) + shift * y
    return y, s


# ---------------------------------------------------------------------------------------- ROC, AUC
def test_roc_curve_hand_case() -> None:
    # threshold  flagged members  flagged non-members   (fpr, tpr)
    #   inf            0                 0              (0,    0)
    #   0.9            1                 0              (0,    0.25)
    #   0.8            2                 0              (0,    0.5)
    #   0.7            2                 1              (0.25, 0.5)
    #   0.5            3                 2              (0.5,  0.75)   the tie enters at once
    #   0.3            4                 2              (0.5,  1)
    #   0.2            4                 3              (0.75, 1)
    #   0.1            4                 4              (1,    1)
    fpr, tpr, thr = roc_curve(Y, S)
    assert fpr.tolist() == [0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1]
    assert tpr.tolist() == [0, 0.25, 0.5, 0.5, 0.75, 1, 1, 1]
    assert thr.tolist() == [math.inf, 0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn_with_ties(seed: int) -> None:
    y, s = random_case(seed)
    s = np.round(s, 1)  # many ties
    ours = roc_curve(y.astype(int), s)
    theirs = skm.roc_curve(y, s, drop_intermediate=False)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_auc_hand_case() -> None:
    # Pairs (member, non-member) won, of 16:
    #   0.9 beats all 4; 0.8 beats all 4; 0.5 beats 0.2, 0.1 and ties 0.5 -> 2.5; 0.3 beats 0.2, 0.1 -> 2
    # (4 + 4 + 2.5 + 2) / 16 = 12.5 / 16 = 0.78125; also the trapezoid area of the curve above.
    assert auc(Y, S) == 0.78125
    fpr, tpr, _ = roc_curve(Y, S)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.78125)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_matches_sklearn_and_negation(seed: int) -> None:
    y, s = random_case(seed)
    s[::7] = s[1::7][: s[::7].size]  # a few ties
    assert auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert auc(y, -s) == pytest.approx(1.0 - skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [10, 11, 12, 13, 14])
@pytest.mark.parametrize("decimals", [0, 1, 2])
def test_auc_matches_sklearn_and_mann_whitney_with_heavy_ties(seed: int, decimals: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[:2] = (True, False)  # both classes present
    s = np.round(rng.normal(size=n) + rng.uniform(0, 2) * y, decimals)  # decimals=0: a handful of values
    assert len(np.unique(s)) < n  # there are ties
    expected = skm.roc_auc_score(y, s)
    assert auc(y, s) == pytest.approx(expected, abs=1e-12)
    u = stats.mannwhitneyu(s[y], s[~y], alternative="two-sided").statistic
    assert auc(y, s) == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)


def test_auc_extremes_and_constant_scores() -> None:
    assert auc([1, 1, 0, 0], [2, 3, 0, 1]) == 1.0
    assert auc([1, 1, 0, 0], [0, 1, 2, 3]) == 0.0
    assert auc([1, 1, 0, 0], [5, 5, 5, 5]) == 0.5  # every pair tied: one half each


auc_cases = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda ys: 0 < sum(ys) < len(ys)),
        st.lists(st.integers(min_value=-30, max_value=30), min_size=n, max_size=n),
    )
)
INCREASING = [
    lambda x: 2.0 * x + 5.0,
    lambda x: x**3,
    lambda x: np.exp(x / 10.0),
    lambda x: np.log(x + 31.0),
    lambda x: 1.0 / (1.0 + np.exp(-x / 10.0)),
]


@settings(max_examples=50, deadline=None)
@given(case=auc_cases, transform=st.sampled_from(INCREASING))
def test_auc_in_unit_interval_and_invariant_to_increasing_transforms(case, transform) -> None:
    ys, xs = case
    y = np.array(ys)
    s = np.array(xs, dtype=float)  # integer-valued scores: plenty of ties, no rounding collapses
    value = auc(y, s)
    assert 0.0 <= value <= 1.0
    assert auc(y, transform(s)) == pytest.approx(value, abs=1e-12)
    # and it is the pairwise definition: P(member > non-member) + P(tie) / 2
    diff = s[y][:, None] - s[~y][None, :]
    assert value == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)), abs=1e-12)


# ------------------------------------------------------------------------------------ TPR at FPR
def test_tpr_at_fpr_hand_case() -> None:
    # From the curve in test_roc_curve_hand_case: the last point with fpr <= level.
    #   level 0    -> (0, 0.5)      level 0.25 -> (0.25, 0.5)   level 0.3 -> (0.25, 0.5)
    #   level 0.5  -> (0.5, 1)      level 1    -> (1, 1)
    assert tpr_at_fpr(Y, S, 0.0) == 0.5
    assert tpr_at_fpr(Y, S, 0.25) == 0.5
    assert tpr_at_fpr(Y, S, 0.3) == 0.5
    assert tpr_at_fpr(Y, S, 0.5) == 1.0
    assert tpr_at_fpr(Y, S, 1) == 1.0
    assert tpr_at_fpr(Y, S, [0.01, 0.001, 0.0, 0.5]) == {"0.01": 0.5, "0.001": 0.5, "0": 0.5, "0.5": 1.0}
    assert tpr_at_fpr(Y, S, np.array([0.5])) == {"0.5": 1.0}


def test_tpr_at_zero_fpr_separating_and_reversed() -> None:
    y = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    s = np.r_[np.linspace(1, 2, 50), np.linspace(-2, -1, 50)]
    assert tpr_at_fpr(y, s, 0.0) == 1.0
    assert tpr_at_fpr(y, -s, 0.0) == 0.0
    assert tpr_at_fpr(y, -s, 0.99) == 0.0  # 49 of 50 false positives before any member
    assert tpr_at_fpr(y, -s, 1.0) == 1.0


def test_tpr_at_zero_fpr_with_a_tie_at_the_top() -> None:
    # A non-member tied with the best member: the tie enters together, so no member at FPR 0.
    assert tpr_at_fpr([1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1], 0.0) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_tpr_at_fpr_matches_the_lira_expression(seed: int) -> None:
    y, s = random_case(seed, n=500)
    fpr, tpr, _ = skm.roc_curve(y, s)
    for level in (0.0, 0.001, 0.01, 0.1, 0.5):
        assert tpr_at_fpr(y, s, level) == tpr[np.where(fpr <= level)[0][-1]]


def test_fpr_key() -> None:
    assert fpr_key(0.01) == "0.01"
    assert fpr_key(0.001) == "0.001"
    assert fpr_key(0.0) == "0"
    assert fpr_key(0) == "0"
    assert fpr_key(-0.0) == "0"
    assert fpr_key(1) == "1"
    assert fpr_key(1e-5) == "1e-05"
    assert fpr_key(np.float32(0.5)) == "0.5"


# ----------------------------------------------------------------------------------- hard decisions
# scores >= 0.5 on the hand case:
#   members     0.9 0.8 0.5 0.3 -> 1 1 1 0   tp = 3, fn = 1
#   non-members 0.7 0.5 0.2 0.1 -> 1 1 0 0   fp = 2, tn = 2
P = S >= 0.5


def test_confusion_hand_case() -> None:
    assert confusion(Y, P) == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}
    assert confusion(Y.astype(int), P.astype(float)) == {"tp": 3, "fp": 2, "tn": 2, "fn": 1}


def test_rates_hand_case() -> None:
    assert accuracy(Y, P) == 5 / 8  # (3 + 2) / 8 = 0.625
    assert precision(Y, P) == 3 / 5  # 3 / (3 + 2) = 0.6
    assert recall(Y, P) == 3 / 4  # 0.75
    assert balanced_accuracy(Y, P) == (0.75 + 0.5) / 2  # tpr 0.75, tnr 2/4 -> 0.625
    assert advantage(Y, P) == 0.75 - 0.5  # tpr - fpr = 0.25


def test_rates_unbalanced_case() -> None:
    # is_member 1 1 0 0 0 0, predictions 1 0 0 0 0 1: tp 1, fn 1, tn 3, fp 1
    y, p = [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]
    assert accuracy(y, p) == 4 / 6
    assert precision(y, p) == 0.5  # 1 / (1 + 1)
    assert recall(y, p) == 0.5
    assert balanced_accuracy(y, p) == 0.625  # (0.5 + 3/4) / 2
    assert advantage(y, p) == 0.25  # 0.5 - 1/4
    assert 2 * balanced_accuracy(y, p) - 1 == advantage(y, p)


def test_precision_without_predicted_members_is_zero() -> None:
    assert precision([1, 0, 1], [0, 0, 0]) == 0.0
    assert precision([1, 0, 1], [0, 0, 0]) == skm.precision_score([1, 0, 1], [0, 0, 0], zero_division=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_hard_metrics_match_sklearn(seed: int) -> None:
    y, s = random_case(seed)
    p = s >= 0.2
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    assert precision(y, p) == pytest.approx(skm.precision_score(y, p))
    assert recall(y, p) == pytest.approx(skm.recall_score(y, p))
    assert balanced_accuracy(y, p) == pytest.approx(skm.balanced_accuracy_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, p).ravel()
    assert confusion(y, p) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


# ------------------------------------------------------------------------------------- thresholds
def test_threshold_for_fpr_hand_case() -> None:
    # Non-members sorted down: 0.7 0.5 0.2 0.1. FPR f allows k = floor(4 f) false positives;
    # the threshold sits just above the (k+1)-th largest.
    assert threshold_for_fpr(NONMEMBER_S, 0.0) == np.nextafter(0.7, 1)  # k = 0
    assert threshold_for_fpr(NONMEMBER_S, 0.25) == np.nextafter(0.5, 1)  # k = 1
    assert threshold_for_fpr(NONMEMBER_S, 0.3) == np.nextafter(0.5, 1)  # k = 1
    assert threshold_for_fpr(NONMEMBER_S, 0.5) == np.nextafter(0.2, 1)  # k = 2
    assert threshold_for_fpr(NONMEMBER_S, 1.0) == -math.inf  # k = 4: everybody
    # and recall at that threshold is tpr_at_fpr: 0.5 (0.9, 0.8) at 0.25; 1.0 at 0.5
    s = S.copy()
    assert recall(Y, s >= threshold_for_fpr(NONMEMBER_S, 0.25)) == 0.5
    assert recall(Y, s >= threshold_for_fpr(NONMEMBER_S, 0.5)) == 1.0


def test_threshold_for_fpr_ties_are_not_flagged() -> None:
    # Two non-members tied at the top: allowing one false positive cannot flag just one of them.
    t = threshold_for_fpr([0.9, 0.9, 0.1, 0.2], 0.25)
    assert t > 0.9
    assert np.count_nonzero(np.array([0.9, 0.9, 0.1, 0.2]) >= t) == 0


def test_threshold_for_fpr_exact_decimal_levels() -> None:
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 false positives are still allowed.
    s = np.arange(100.0)
    t = threshold_for_fpr(s, 0.29)
    assert np.count_nonzero(s >= t) == 29


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_for_fpr_agrees_with_tpr_at_fpr(seed: int) -> None:
    y, s = random_case(seed, n=300)
    s = np.round(s, 1)
    for level in (0.0, 0.01, 0.05, 0.2, 0.5, 1.0):
        t = threshold_for_fpr(s[~y], level)
        p = s >= t
        assert int(np.count_nonzero(p & ~y)) / int(np.count_nonzero(~y)) <= level
        assert recall(y, p) == tpr_at_fpr(y, s, level)


def _brute_force_best(y: np.ndarray, s: np.ndarray, objective: str) -> tuple[float, np.ndarray]:
    """Best objective value over every candidate rule, and the decisions of the highest best threshold."""
    n1, n0 = int(y.sum()), int((~y).sum())
    best, decisions = -math.inf, np.zeros_like(y)
    for c in np.r_[np.inf, np.unique(s)[::-1]]:  # from the highest threshold down
        p = s >= c
        tp, fp = int(np.count_nonzero(p & y)), int(np.count_nonzero(p & ~y))
        value = tp / n1 - fp / n0 if objective == "balanced_accuracy" else (tp + n0 - fp) / (n1 + n0)
        if value > best + 1e-12:
            best, decisions = value, p
    return best, decisions


def test_best_threshold_hand_case() -> None:
    # accuracy of scores >= t on the hand case, (tp + tn) / 8:
    #   inf 4/8, 0.9 5/8, 0.8 6/8, 0.7 5/8, 0.5 5/8, 0.3 6/8, 0.2 5/8, 0.1 4/8
    # best 6/8 at 0.8 and 0.3; ties go to the higher threshold; the threshold returned lies halfway
    # between the lowest flagged score (0.8) and the highest unflagged one (0.7)
    assert best_threshold(Y, S, objective="accuracy") == pytest.approx(0.75)
    t, scores = best_threshold(Y, S, objective="accuracy"), S
    assert accuracy(Y, scores >= t) == 0.75
    # balanced classes: the same cut maximises TPR - FPR
    assert best_threshold(Y, S) == pytest.approx(0.75)


def test_best_threshold_balanced_by_hand() -> None:
    # 3 members, 3 non-members; cutting between 0.7 and 0.5 gives TPR 2/3, FPR 0, as good as cutting
    # between 0.4 and 0.2 (TPR 1, FPR 1/3): the tie goes to the higher threshold
    y = np.array([1, 1, 0, 1, 0, 0], bool)
    s = np.array([0.9, 0.7, 0.5, 0.4, 0.2, 0.1])
    assert best_threshold(y, s) == pytest.approx(0.6)


def test_best_threshold_objectives_differ_when_classes_are_unbalanced() -> None:
    # 2 members of 6. Balanced: flag 0.9..0.7 (TPR 1, FPR 1/4, advantage 3/4). Accuracy: flag 0.9
    # alone (5 of 6 right) beats flagging 0.9..0.7 (5 of 6 too, but lower threshold)
    y, s = np.array([1, 0, 1, 0, 0, 0], bool), np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert best_threshold(y, s) == pytest.approx(0.65)
    assert best_threshold(y, s, objective="accuracy") == pytest.approx(0.85)


@pytest.mark.parametrize("objective", ["balanced_accuracy", "accuracy"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_best_threshold_equals_brute_force_search(seed: int, objective: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 300))
    y = rng.random(n) < rng.uniform(0.15, 0.85)
    y[:2] = (True, False)
    s = np.round(rng.normal(size=n) + rng.uniform(-0.5, 1.5) * y, int(rng.integers(0, 3)))  # ties
    t = best_threshold(y, s, objective=objective)
    best, decisions = _brute_force_best(y, s, objective)
    p = s >= t
    got = (np.mean(p[y]) - np.mean(p[~y])) if objective == "balanced_accuracy" else accuracy(y, p)
    assert got == pytest.approx(best, abs=1e-12)
    np.testing.assert_array_equal(p, decisions)  # the highest of equally good thresholds
    # halfway between the flagged and the unflagged scores, so new scores are split at a gap
    lowest_flagged = s[p].min() if p.any() else math.inf
    highest_unflagged = s[~p].max() if (~p).any() else -math.inf
    assert highest_unflagged < t <= lowest_flagged
    if p.any() and (~p).any():
        assert t == pytest.approx((lowest_flagged + highest_unflagged) / 2)


def test_best_threshold_may_flag_nobody_or_everyone() -> None:
    # 1 member among 4, and it scores lowest: flagging nobody (3/4 correct) is best
    t = best_threshold([1, 0, 0, 0], [0.0, 1.0, 2.0, 3.0], objective="accuracy")
    assert t > 3.0 and math.isfinite(t)
    # 3 members among 4 and the non-member scores highest: flagging everyone (3/4 correct) is best
    assert best_threshold([1, 1, 1, 0], [0.0, 1.0, 2.0, 3.0], objective="accuracy") == -1.0
    # huge scores: "above the highest" still flags nobody (max + 1 would round back to max)
    t = best_threshold([1, 0], [0.0, 1e300], objective="accuracy")
    assert t > 1e300


def test_best_threshold_between_adjacent_floats() -> None:
    # no float lies strictly between the two scores: the threshold is the member's score itself
    member, other = 1.0, float(np.nextafter(1.0, -np.inf))
    t = best_threshold([1, 0], [member, other])
    assert t == member and (np.array([member, other]) >= t).tolist() == [True, False]


def test_fpr_levels_are_declared_once() -> None:
    assert metrics.FPR_LEVELS == (0.01, 0.001, 0.0)
    record = membership_metrics(Y, S, threshold=0.5)
    assert list(record["tpr_at_fpr"]) == [fpr_key(level) for level in metrics.FPR_LEVELS]
    src = Path(metrics.__file__).parent
    declared = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Tuple):
                declared += [
                    f"{path.relative_to(src)}:{t.id}" for t in targets if isinstance(t, ast.Name) and "FPR" in t.id
                ]
    assert declared == ["metrics.py:FPR_LEVELS"]


# ---------------------------------------------------------------------------------------- records
def test_membership_metrics_with_threshold() -> None:
    m = membership_metrics(Y, S, threshold=0.5)
    assert m == {
        "n_members": 4,
        "n_nonmembers": 4,
        "accuracy": 0.625,
        "precision": 0.6,
        "recall": 0.75,
        "balanced_accuracy": 0.625,
        "advantage": 0.25,
        "auc": 0.78125,
        "tpr_at_fpr": {"0.01": 0.5, "0.001": 0.5, "0": 0.5},
    }
    assert json.loads(json.dumps(m)) == m
    assert all(type(v) in (int, float) for k, v in m.items() if k != "tpr_at_fpr")
    assert all(type(v) is float for v in m["tpr_at_fpr"].values())


def test_membership_metrics_with_predictions_and_levels() -> None:
    m = membership_metrics(Y, S, predictions=P.astype(int), fpr_levels=[0.25, 0.5])
    assert m["accuracy"] == 0.625
    assert m["tpr_at_fpr"] == {"0.25": 0.5, "0.5": 1.0}
    assert membership_metrics(Y, S, threshold=0.5, fpr_levels=())["tpr_at_fpr"] == {}


def test_membership_metrics_precision_when_nobody_flagged() -> None:
    m = membership_metrics(Y, S, threshold=math.inf)
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["accuracy"] == 0.5


# -------------------------------------------------------------------------------------- intervals
def test_bootstrap_same_seed_same_result_other_seed_other_result() -> None:
    y, s = random_case(0)
    first = bootstrap_ci(y, s, auc, n_boot=200, seed=1)
    assert bootstrap_ci(y, s, auc, n_boot=200, seed=1) == first
    assert bootstrap_ci(y, s, auc, n_boot=200, seed=2) != first
    point, low, high = first
    assert point == auc(y, s)
    assert low <= point <= high
    assert low < high


def test_bootstrap_is_stratified() -> None:
    # The fraction of members is the same in every replicate: a degenerate interval.
    y, s = random_case(0)
    share = float(np.mean(y))
    assert bootstrap_ci(y, s, lambda yy, _: float(np.mean(yy)), n_boot=50, seed=0) == (share,) * 3


def test_bootstrap_interval_width_is_sensible() -> None:
    # Mean member score, n1 members: bootstrap standard error close to sd / sqrt(n1), so the
    # 95% interval's width is about 2 * 1.96 * sd / sqrt(n1).
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    s = rng.normal(size=800)
    point, low, high = bootstrap_ci(y, s, lambda yy, ss: float(ss[yy].mean()), n_boot=1000, seed=3)
    expected = 2 * 1.96 * s[y].std() / math.sqrt(400)
    assert 0.85 * expected < high - low < 1.15 * expected
    assert low < point < high


def test_bootstrap_small_chunks_match_and_tpr_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    y, s = random_case(0, n=60)
    point, low, high = bootstrap_ci(y, s, lambda yy, ss: tpr_at_fpr(yy, ss, 0.1), n_boot=30, seed=0)
    assert 0.0 <= low <= point <= high <= 1.0
    monkeypatch.setattr(metrics, "_BOOT_CHUNK_ENTRIES", 100)  # several chunks
    chunked = bootstrap_ci(y, s, auc, n_boot=30, seed=0)
    assert chunked[0] == auc(y, s)
    assert chunked[1] <= chunked[0] <= chunked[2]


def test_mean_ci_hand_case() -> None:
    # values 1 2 3 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3,
    # std 1.2909944, standard error std / 2 = 0.6454972, t(0.975, df 3) = 3.1824463,
    # half-width 3.1824463 * 0.6454972 = 2.0542603 -> (0.4457397, 4.5542603)
    r = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert r["n"] == 4
    assert r["mean"] == 2.5
    assert r["std"] == pytest.approx(1.2909944, abs=1e-7)
    assert r["low"] == pytest.approx(0.4457397, abs=1e-6)
    assert r["high"] == pytest.approx(4.5542603, abs=1e-6)
    low, high = stats.t.interval(0.95, 3, loc=2.5, scale=stats.sem([1, 2, 3, 4]))
    assert (r["low"], r["high"]) == pytest.approx((low, high))
    narrower = mean_ci([1.0, 2.0, 3.0, 4.0], level=0.5)
    assert r["low"] < narrower["low"] < narrower["high"] < r["high"]


def test_mean_ci_single_value_gives_nan_interval() -> None:
    r = mean_ci([0.7])
    assert r["mean"] == 0.7
    assert r["n"] == 1
    assert math.isnan(r["low"]) and math.isnan(r["high"]) and math.isnan(r["std"])


def test_paired_difference_ci_hand_case() -> None:
    # a - b = 0.2, 0.05, 0.05: mean 0.1, deviations 0.1, -0.05, -0.05, variance 0.015 / 2 = 0.0075,
    # std 0.0866025, standard error 0.0866025 / sqrt(3) = 0.05, t = 0.1 / 0.05 = 2 on 2 df.
    # With 2 df, P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2 = (1 - 2 / sqrt(6)) / 2 = 0.0917517 -> p = 0.1835034.
    # t(0.975, 2) = 4.3026527, half-width 0.2151326 -> (-0.1151326, 0.3151326).
    r = paired_difference_ci([0.9, 0.8, 0.85], [0.7, 0.75, 0.8])
    assert r["n"] == 3
    assert r["diff"] == pytest.approx(0.1)
    assert r["p_value"] == pytest.approx(0.1835034, abs=1e-6)
    assert r["low"] == pytest.approx(-0.1151326, abs=1e-6)
    assert r["high"] == pytest.approx(0.3151326, abs=1e-6)
    assert r["p_value"] == pytest.approx(stats.ttest_rel([0.9, 0.8, 0.85], [0.7, 0.75, 0.8]).pvalue)


def test_paired_difference_ci_degenerate_cases() -> None:
    one = paired_difference_ci([0.9], [0.7])
    assert one["diff"] == pytest.approx(0.2) and one["n"] == 1
    assert math.isnan(one["low"]) and math.isnan(one["high"]) and math.isnan(one["p_value"])
    same = paired_difference_ci([1.0, 2.0], [1.0, 2.0])
    assert (same["diff"], same["low"], same["high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_difference_ci([2.0, 3.0], [1.0, 2.0])
    assert (shifted["diff"], shifted["low"], shifted["high"], shifted["p_value"]) == (1.0, 1.0, 1.0, 0.0)


def test_metrics_imports_no_torch_models_or_attacks() -> None:
    # The layering rule: arrays in, numbers out. (Checked on the module's own import statements;
    # the package __init__ may import more.)
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = ("torch", "miaudit.attacks", "miaudit.training", "miaudit.targets", "miaudit.studies")
    assert not {m for m in imported if m.startswith(forbidden)}
    assert {m for m in imported if m.startswith("miaudit")} <= {"miaudit.seeding"}


def test_doctests() -> None:
    result = doctest.testmod(metrics)
    assert result.attempted > 0
    assert result.failed == 0


# ----------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (auc, ([1, 0, 1], [0.1, 0.2]), r"is_member and scores must have the same length.*got 3 and 2"),
        (auc, ([1, 0, 1], [0.1, np.nan, np.inf]), r"scores must be finite; got 2 NaN or infinite.*of 3"),
        (auc, ([1, 1, 1], [0.1, 0.2, 0.3]), r"auc needs both members and non-members.*3 member.*0 non"),
        (roc_curve, ([0, 0], [0.1, 0.2]), r"roc_curve needs both members and non-members"),
        (tpr_at_fpr, ([1, 0], [0.1, 0.2], 1.5), r"fpr must be a false-positive rate.*\[0, 1\]; got 1.5"),
        (tpr_at_fpr, ([1, 0], [0.1, 0.2], [0.1, -0.1]), r"fpr\[1\] must be .* within \[0, 1\]"),
        (tpr_at_fpr, ([1, 0], [0.1, 0.2], math.nan), r"fpr must be a false-positive rate"),
        (tpr_at_fpr, ([1, 0], [0.1, 0.2], 0.1), None),
        (auc, ([1, 2, 0], [0.1, 0.2, 0.3]), r"is_member must be bool or 0/1.*got 1 other value"),
        (auc, ([[1, 0]], [[0.1, 0.2]]), r"is_member must be 1-D.*got shape \(1, 2\)"),
        (auc, ([], []), r"is_member must not be empty"),
        (auc, ([1, 0], ["a", "b"]), r"scores must hold bool or real numbers"),
        (confusion, ([1, 0], [1, 0, 1]), r"is_member and predictions must have the same length"),
        (accuracy, ([1, 0], [0.5, 1]), r"predictions must be bool or 0/1"),
        (recall, ([0, 0], [1, 0]), r"recall needs at least one member"),
        (balanced_accuracy, ([1, 1], [1, 0]), r"balanced_accuracy needs both members and non-members"),
        (advantage, ([0, 0], [1, 0]), r"advantage needs both members and non-members"),
        (threshold_for_fpr, ([0.1, np.nan], 0.1), r"nonmember_scores must be finite; got 1 NaN"),
        (threshold_for_fpr, ([0.1, 0.2], 2.0), r"fpr must be a false-positive rate within \[0, 1\]"),
        (best_threshold, ([1, 1], [0.1, 0.2]), r"best_threshold needs both members and non-members"),
        (best_threshold, ([1, 0], [0.1, np.inf]), r"scores must be finite"),
        (fpr_key, (-0.5,), r"level must be a false-positive rate within \[0, 1\]"),
        (mean_ci, ([],), r"values must not be empty"),
        (mean_ci, ([1.0, math.inf],), r"values must be finite; got 1 NaN or infinite"),
        (paired_difference_ci, ([1.0, 2.0], [1.0]), r"a and b must have the same length.*got 2 and 1"),
        (paired_difference_ci, ([1.0, math.nan], [1.0, 2.0]), r"a must be finite"),
    ],
)
def test_value_errors(func, args, match) -> None:
    if match is None:  # the control: valid input does not raise
        func(*args)
        return
    with pytest.raises(ValueError, match=match):
        func(*args)


def test_best_threshold_unknown_objective() -> None:
    with pytest.raises(ValueError, match=r"objective must be one of 'balanced_accuracy', 'accuracy'; got 'f1'"):
        best_threshold(Y, S, objective="f1")


def test_membership_metrics_errors() -> None:
    with pytest.raises(ValueError, match=r"needs hard decisions.*pass threshold=.*or predictions="):
        membership_metrics(Y, S)
    with pytest.raises(ValueError, match=r"threshold or predictions, not both"):
        membership_metrics(Y, S, threshold=0.5, predictions=P)
    with pytest.raises(ValueError, match=r"is_member and predictions must have the same length"):
        membership_metrics(Y, S, predictions=P[:3])
    with pytest.raises(ValueError, match=r"threshold must be a number.*got nan"):
        membership_metrics(Y, S, threshold=math.nan)
    with pytest.raises(ValueError, match=r"fpr_levels\[0\] must be a false-positive rate within \[0, 1\]"):
        membership_metrics(Y, S, threshold=0.5, fpr_levels=[2.0])
    with pytest.raises(ValueError, match=r"membership_metrics needs both members and non-members"):
        membership_metrics([1, 1], [0.1, 0.2], threshold=0.5)


def test_interval_errors() -> None:
    with pytest.raises(ValueError, match=r"n_boot must be a positive integer.*got 0"):
        bootstrap_ci(Y, S, auc, n_boot=0, seed=0)
    with pytest.raises(ValueError, match=r"level must be .* strictly between 0 and 1.*got 1.0"):
        bootstrap_ci(Y, S, auc, level=1.0, seed=0)
    with pytest.raises(ValueError, match=r"bootstrap_ci needs both members and non-members"):
        bootstrap_ci([1, 1], [0.1, 0.2], auc, seed=0)
    with pytest.raises(ValueError, match=r"scores must be finite; got 1 NaN"):
        bootstrap_ci(Y, np.r_[S[:-1], np.nan], auc, seed=0)
    with pytest.raises(ValueError, match=r"seed must be between 0 and 2\*\*63-1, got -1"):
        bootstrap_ci(Y, S, auc, seed=-1)
    with pytest.raises(ValueError, match=r"level must be a confidence level.*got 0"):
        mean_ci([1.0, 2.0], level=0)
    with pytest.raises(ValueError, match=r"level must be a confidence level.*got 1.5"):
        paired_difference_ci([1.0, 2.0], [1.0, 2.0], level=1.5)


def test_type_errors() -> None:
    with pytest.raises(TypeError, match=r"metric must be a callable"):
        bootstrap_ci(Y, S, "auc", seed=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"n_boot must be a positive integer; got 10.5"):
        bootstrap_ci(Y, S, auc, n_boot=10.5, seed=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"seed must be a non-negative integer"):
        bootstrap_ci(Y, S, auc, seed=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"fpr must be a number or a sequence of numbers; got '0.1'"):
        tpr_at_fpr(Y, S, "0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"fpr must be a real number; got True"):
        tpr_at_fpr(Y, S, True)

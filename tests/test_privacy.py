"""Empirical epsilon lower bounds: known answers from mechanisms whose epsilon is known exactly.

Randomized response with parameter eps (answer the true bit with probability e^eps / (1 + e^eps)) is
eps-DP (delta = 0) and its best test meets the bound exactly: FPR = FNR = 1 / (1 + e^eps) and
log((1 - FNR) / FPR) = eps. So the bound must approach eps from below with many trials and exceed it
only when a Clopper-Pearson bound fails (probability at most alpha). The Gaussian mechanism with
sensitivity 1 and noise 1/mu is mu-GDP, whose exact (eps, delta) curve is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from miaudit.errors import ConfigError, DataError
from miaudit.privacy import (
    EpsilonBound,
    clopper_pearson,
    epsilon_lower_bound,
    epsilon_lower_bound_from_scores,
)


def _randomized_response(eps: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    member = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
    truthful = rng.random(n) < np.exp(eps) / (1.0 + np.exp(eps))
    return np.where(truthful, member, ~member).astype(float), member


def _gaussian_trials(mu: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    member = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
    return rng.normal(size=n) + mu * member, member


def _gaussian_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon of mu-GDP at delta (Dong, Roth & Su 2019, Corollary 2.13)."""

    def gap(e: float) -> float:
        return stats.norm.cdf(-e / mu + mu / 2) - np.exp(e) * stats.norm.cdf(-e / mu - mu / 2) - delta

    return float(optimize.brentq(gap, 0.0, 100.0))


# ---------------------------------------------------------------------------- Clopper-Pearson
def test_clopper_pearson_closed_forms_and_coverage_ends() -> None:
    assert clopper_pearson(0, 20, alpha=0.05) == (0.0, pytest.approx(1 - 0.025 ** (1 / 20)))
    assert clopper_pearson(20, 20, alpha=0.05) == (pytest.approx(0.025 ** (1 / 20)), 1.0)
    lo, hi = clopper_pearson(7, 30, alpha=0.1)
    # the defining property: the binomial tails at the ends equal alpha / 2
    assert stats.binom.sf(6, 30, lo) == pytest.approx(0.05)
    assert stats.binom.cdf(7, 30, hi) == pytest.approx(0.05)
    wide, narrow = clopper_pearson(7, 30, alpha=0.01), clopper_pearson(7, 30, alpha=0.2)
    assert wide[0] < narrow[0] < 7 / 30 < narrow[1] < wide[1]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((5, 4), DataError, r"need 0 <= k <= n and n >= 1.*k=5, n=4"),
        ((0, 0), DataError, "n >= 1"),
        ((-1, 4), DataError, "k must be a non-negative integer"),
        ((1.5, 4), DataError, "k must be a non-negative integer"),
    ],
)
def test_clopper_pearson_errors(args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        clopper_pearson(*args, alpha=0.05)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, True, "0.05"])
def test_bad_alpha(alpha: object) -> None:
    with pytest.raises(ConfigError, match="alpha must be a number strictly between 0 and 1"):
        clopper_pearson(1, 4, alpha=alpha)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="alpha must be"):
        epsilon_lower_bound(1, 1, 1, 1, delta=0.0, alpha=alpha)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the bound from counts
def test_bound_matches_formula_by_hand() -> None:
    fpr_hi = stats.beta.ppf(0.975, 5 + 1, 95)  # 5 false positives of 100 non-members
    fnr_hi = stats.beta.ppf(0.975, 10 + 1, 90)  # 10 false negatives of 100 members
    want = max(np.log((1 - 1e-5 - fnr_hi) / fpr_hi), np.log((1 - 1e-5 - fpr_hi) / fnr_hi))
    assert epsilon_lower_bound(tp=90, fp=5, fn=10, tn=95, delta=1e-5) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(1.988, abs=1e-3)
    # the other inequality gives the bound when the test is better at recognising members
    assert epsilon_lower_bound(tp=95, fp=10, fn=5, tn=90, delta=1e-5) == pytest.approx(want, rel=1e-12)


def test_bound_is_zero_without_signal_and_capped_by_trials() -> None:
    assert epsilon_lower_bound(tp=50, fp=50, fn=50, tn=50, delta=0.0) == 0.0
    # the counts are those of one oriented test ("score >= threshold" means member): an inverted test
    # bounds nothing until the caller turns its guesses around
    assert epsilon_lower_bound(tp=0, fp=100, fn=100, tn=0, delta=0.0) == 0.0
    assert epsilon_lower_bound(tp=100, fp=0, fn=0, tn=100, delta=0.0) > 3.0
    # no errors at all on n trials per class: the bound is log((1 - h) / h), h = 1 - (alpha/2)^(1/n)
    for n in (10, 100, 1000):
        h = 1 - 0.025 ** (1 / n)
        assert epsilon_lower_bound(tp=n, fp=0, fn=0, tn=n, delta=0.0) == pytest.approx(np.log((1 - h) / h))


def test_bound_monotone_in_counts_delta_and_alpha() -> None:
    n = 200
    by_tp = [epsilon_lower_bound(tp=t, fp=10, fn=n - t, tn=n - 10, delta=1e-5) for t in range(100, n + 1, 10)]
    assert np.all(np.diff(by_tp) > 0)
    by_fp = [epsilon_lower_bound(tp=180, fp=f, fn=20, tn=n - f, delta=1e-5) for f in range(0, 60, 5)]
    assert np.all(np.diff(by_fp) < 0)
    by_delta = [epsilon_lower_bound(tp=180, fp=5, fn=20, tn=195, delta=d) for d in (0.0, 1e-3, 0.1, 0.5)]
    assert np.all(np.diff(by_delta) < 0)
    by_alpha = [epsilon_lower_bound(tp=180, fp=5, fn=20, tn=195, delta=0.0, alpha=a) for a in (0.001, 0.01, 0.1)]
    assert np.all(np.diff(by_alpha) > 0)
    # more trials with the same rates: a tighter (higher) bound
    assert epsilon_lower_bound(tp=1800, fp=50, fn=200, tn=1950, delta=0.0) > by_delta[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tp": 0, "fp": 3, "fn": 0, "tn": 4}, DataError, "needs member and non-member trials; got 0 member"),
        ({"tp": 3, "fp": 0, "fn": 1, "tn": 0}, DataError, "and 0 non-member trials"),
        ({"tp": -1, "fp": 0, "fn": 1, "tn": 1}, DataError, "tp must be a non-negative integer count"),
        ({"tp": 1, "fp": 0.5, "fn": 1, "tn": 1}, DataError, "fp must be a non-negative integer count"),
        ({"tp": 1, "fp": 1, "fn": 1, "tn": 1, "delta": 1.0}, ConfigError, r"delta must be a number in \[0, 1\)"),
        ({"tp": 1, "fp": 1, "fn": 1, "tn": 1, "delta": -1e-5}, ConfigError, "delta must be"),
    ],
)
def test_bound_errors(kwargs: dict, error: type, match: str) -> None:
    kwargs.setdefault("delta", 0.0)
    with pytest.raises(error, match=match):
        epsilon_lower_bound(**kwargs)


# ---------------------------------------------------------------------------- known answers from scores
def test_randomized_response_bound_valid_and_tight() -> None:
    """eps = 2: over 200 seeded runs of 2,000 trials at alpha = 0.05 the bound exceeds 2 in at most 20
    (10% where at most 5% is allowed: P(X > 20) < 0.002 for X ~ Binomial(200, 0.05); 3 measured), and
    averages above 1.6 (1.78 measured)."""
    bounds = np.array(
        [
            epsilon_lower_bound_from_scores(*_randomized_response(2.0, 2000, s), delta=0.0, seed=s).epsilon_lb
            for s in range(200)
        ]
    )
    assert (bounds > 2.0).sum() <= 20
    assert bounds.mean() > 1.6
    assert bounds.min() > 1.0  # > 0.5 * eps on every run (1.54 measured)


def test_randomized_response_bound_approaches_epsilon_with_many_trials() -> None:
    bounds = [
        epsilon_lower_bound_from_scores(*_randomized_response(1.0, 20000, s), delta=0.0, seed=s).epsilon_lb
        for s in range(10)
    ]
    assert 0.85 < np.mean(bounds) < 1.05  # 0.95 measured over 200 runs


def test_gaussian_mechanism_bound_never_exceeds_its_epsilon() -> None:
    """mu = 1 (epsilon 4.38 at delta 1e-5): 50 runs of 4,000 trials at alpha = 0.01 stay below it
    (1.89 at most, measured), and clearly above 0 (the attack does see the mechanism)."""
    true_eps = _gaussian_epsilon(1.0, 1e-5)
    assert true_eps == pytest.approx(4.377, abs=1e-3)
    bounds = np.array(
        [
            epsilon_lower_bound_from_scores(*_gaussian_trials(1.0, 4000, s), delta=1e-5, alpha=0.01, seed=s).epsilon_lb
            for s in range(50)
        ]
    )
    assert bounds.max() <= true_eps
    assert bounds.min() > 0.5


def test_same_distribution_gives_zero() -> None:
    """Members and non-members scored alike (epsilon 0): the bound is 0 on 45 or more of 50 seeded runs
    of 400 trials (49 measured, the other at 0.0095), never above 0.1, and above 0 in at most 20 of 200
    small runs at alpha = 0.05 (0 measured; a positive bound is a Clopper-Pearson failure, rate < alpha)."""
    rng = np.random.default_rng(7)
    bounds = []
    for s in range(50):
        member = rng.permutation(np.r_[np.ones(200, bool), np.zeros(200, bool)])
        bounds.append(epsilon_lower_bound_from_scores(rng.normal(size=400), member, delta=0.0, seed=s).epsilon_lb)
    assert sum(b == 0.0 for b in bounds) >= 45
    assert max(bounds) < 0.1
    positive = 0
    for s in range(200):
        member = rng.permutation(np.r_[np.ones(20, bool), np.zeros(20, bool)])
        positive += epsilon_lower_bound_from_scores(rng.random(40), member, delta=0.0, seed=s).epsilon_lb > 0
    assert positive <= 20


# ---------------------------------------------------------------------------- the split and the record
def test_from_scores_split_record_and_seeds() -> None:
    scores, member = _gaussian_trials(3.0, 301, seed=0)
    a = epsilon_lower_bound_from_scores(scores, member, delta=1e-5, seed=1)
    assert isinstance(a, EpsilonBound)
    assert a == epsilon_lower_bound_from_scores(scores, member, delta=1e-5, seed=1)
    b = epsilon_lower_bound_from_scores(scores, member, delta=1e-5, seed=2)
    assert (a.threshold, a.counts) != (b.threshold, b.counts)
    n1, n0 = int(member.sum()), int((~member).sum())
    assert a.n_selection == round(0.5 * n1) + round(0.5 * n0)
    assert a.n_selection + a.n_evaluation == 301 == a.n_selection + sum(a.counts.values())
    assert a.counts["tp"] + a.counts["fn"] == n1 - round(0.5 * n1)
    assert a.epsilon_lb == epsilon_lower_bound(**a.counts, delta=1e-5, alpha=0.05)
    assert 0.5 < a.threshold < 2.5  # between the two means (0 and 3)
    assert a.to_dict()["counts"] == a.counts and a.to_dict()["alpha"] == 0.05
    c = epsilon_lower_bound_from_scores(scores, member, delta=1e-5, seed=1, threshold_fraction=0.25)
    assert c.n_selection == round(0.25 * n1) + round(0.25 * n0)


def test_threshold_uses_only_the_selection_trials() -> None:
    """An evaluation trial cannot move the threshold: changing the scores outside the selection part
    (identified by a seed) leaves the threshold as it was."""
    scores, member = _gaussian_trials(2.0, 200, seed=3)
    base = epsilon_lower_bound_from_scores(scores, member, delta=0.0, seed=5)
    moved = scores.copy()
    moved[scores < base.threshold] -= 0.01  # keeps every guess; changes the selection part's values too
    assert epsilon_lower_bound_from_scores(moved, member, delta=0.0, seed=5).counts == base.counts
    # perfectly separated scores: a threshold in the gap, and every evaluation trial right
    sep = np.where(member, 10.0, 0.0) + np.random.default_rng(0).random(200)
    result = epsilon_lower_bound_from_scores(sep, member, delta=0.0, seed=5)
    assert result.counts["fp"] == result.counts["fn"] == 0
    assert result.epsilon_lb == pytest.approx(epsilon_lower_bound(tp=50, fp=0, fn=0, tn=50, delta=0.0))


@pytest.mark.parametrize(
    ("scores", "member", "kwargs", "error", "match"),
    [
        ([1.0, 2.0], [1, 0, 1], {}, DataError, "1-d arrays of one length"),
        ([1.0, np.nan, 2, 3], [1, 0, 1, 0], {}, DataError, "1 NaN or infinite"),
        ([1.0, 2, 3, 4], [1, 2, 1, 0], {}, DataError, "is_member must be bool or 0/1"),
        ([1.0, 2, 3, 4], [1, 1, 1, 0], {}, DataError, "at least 2 member and 2 non-member trials; got 3 and 1"),
        ([1.0, 2, 3, 4], [1, 1, 0, 0], {"threshold_fraction": 1.0}, ConfigError, "threshold_fraction must be"),
        ([1.0, 2, 3, 4], [1, 1, 0, 0], {"delta": 2.0}, ConfigError, "delta must be"),
    ],
)
def test_from_scores_errors(scores: list, member: list, kwargs: dict, error: type, match: str) -> None:
    kwargs.setdefault("delta", 0.0)
    with pytest.raises(error, match=match):
        epsilon_lower_bound_from_scores(np.array(scores), np.array(member), seed=0, **kwargs)


def test_from_scores_seed_is_checked() -> None:
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        epsilon_lower_bound_from_scores(np.arange(4.0), np.array([1, 1, 0, 0]), delta=0.0, seed=1.5)  # type: ignore[arg-type]


def test_groups_standardise_each_canary_by_its_non_members() -> None:
    """Two canaries of different difficulty: pooled, one threshold cannot separate them; standardised by
    each group's non-member trials of the selection part, every evaluation trial is right."""
    rng = np.random.default_rng(0)
    member = np.tile(np.r_[np.ones(40, bool), np.zeros(40, bool)], 2)
    group = np.repeat(["easy", "hard"], 80)
    offset = np.where(group == "easy", 10.0, 0.0)
    scores = offset + member * 1.0 + 0.1 * rng.random(160)
    pooled = epsilon_lower_bound_from_scores(scores, member, delta=0.0, seed=0)
    grouped = epsilon_lower_bound_from_scores(scores, member, delta=0.0, seed=0, groups=group)
    assert grouped.standardised and not pooled.standardised
    assert grouped.counts["fp"] == grouped.counts["fn"] == 0
    assert grouped.epsilon_lb == pytest.approx(epsilon_lower_bound(tp=40, fp=0, fn=0, tn=40, delta=0.0))
    assert pooled.epsilon_lb < grouped.epsilon_lb - 0.5
    # one group: standardising is a monotone map and changes no guess
    one = epsilon_lower_bound_from_scores(scores[:80], member[:80], delta=0.0, seed=0, groups=np.zeros(80))
    assert one.counts == epsilon_lower_bound_from_scores(scores[:80], member[:80], delta=0.0, seed=0).counts


def test_groups_errors() -> None:
    member = np.array([1, 1, 0, 0, 1, 0])
    with pytest.raises(DataError, match=r"groups must have one label per trial, shape \(6,\)"):
        epsilon_lower_bound_from_scores(np.arange(6.0), member, delta=0.0, seed=0, groups=np.zeros(5))
    with pytest.raises(DataError, match="group 'b' has 1 member trials; each group needs at least 2"):
        epsilon_lower_bound_from_scores(
            np.arange(6.0), member, delta=0.0, seed=0, groups=np.array(["a", "a", "a", "a", "b", "b"])
        )

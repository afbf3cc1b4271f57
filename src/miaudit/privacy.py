"""Empirical lower bounds on differential privacy's epsilon: arrays in, numbers out.

A training algorithm is (epsilon, delta)-differentially private when, for any two training sets that
differ in one record and any test that guesses which of the two was used, the test's false-positive
and false-negative rates satisfy (Kairouz et al. 2015, Theorem 2.1)::

    FPR + exp(epsilon) * FNR >= 1 - delta    and    FNR + exp(epsilon) * FPR >= 1 - delta.

A membership test on a record that was inserted in half of many training runs (a canary) is such a
test, so its measured rates bound epsilon from below::

    epsilon >= max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)).

The rates are measured on finitely many trials, so :func:`epsilon_lower_bound` uses Clopper-Pearson
upper bounds of FPR and FNR, each one-sided at level ``alpha / 2`` (the upper ends of two-sided
``1 - alpha`` intervals), so that the bound holds with probability at least ``1 - alpha`` (union
bound), as in Jagielski et al. (2020, "Auditing differentially private machine learning: how private
is private SGD?") and Nasr et al. (2021, "Adversary instantiation: lower bounds for differentially
private machine learning").

What this is: a lower bound. A bound near 0 does not prove privacy (the attack may be weak, or the
trials too few: with n member and n non-member trials and no error at all the bound cannot exceed
about ``log(n / 3.7)`` at alpha = 0.05); a bound above a claimed epsilon disproves the claim, at
confidence ``1 - alpha``.

Differences from other libraries:

* TensorFlow Privacy (``privacy_tests/epsilon_lower_bound.py``) bounds ``log(TPR / FPR)`` (the
  pure-DP form, delta = 0, with a lower bound of TPR rather than an upper bound of FNR) with several
  interval methods (Clopper-Pearson, Katz-log, Bailey, ...) and reports the best of all thresholds
  computed on the same data, which overstates the bound (the threshold is selected on the data that
  certify it). Here the threshold is chosen on one random part of the trials and the bound is
  computed on the other (:func:`epsilon_lower_bound_from_scores`), so it holds at the stated
  confidence; jax_privacy's ``Split`` threshold strategy does the same.
* ML Privacy Meter audits DP with one training run and many canaries (Steinke et al. 2023), a
  different test (a p-value on the number of correct guesses) that needs no retraining but gives
  weaker bounds per canary; here every trial is one training run, as in Jagielski et al. and Nasr et al.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from miaudit.errors import ConfigError, DataError

__all__ = ["EpsilonBound", "clopper_pearson", "epsilon_lower_bound", "epsilon_lower_bound_from_scores"]

#: smallest standard deviation a group's scores are divided by (groups whose reference scores coincide)
_MIN_STD = 1e-6


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must be a number strictly between 0 and 1 (e.g. 0.05 for 95%); got {alpha!r}")
    return float(alpha)


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.0 <= float(delta) < 1.0:
        raise ConfigError(f"delta must be a number in [0, 1) (usually 1/n_train or smaller); got {delta!r}")
    return float(delta)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 0:
        raise DataError(f"{name} must be a non-negative integer count; got {value!r}")
    return int(value)


def clopper_pearson(k: int, n: int, *, alpha: float) -> tuple[float, float]:
    """The Clopper-Pearson ("exact") two-sided ``1 - alpha`` interval of a binomial proportion.

    Each end is one-sided at level ``alpha / 2``: ``P(p < lo) <= alpha / 2`` and ``P(p > hi) <=
    alpha / 2`` for every true proportion p.

    Parameters
    ----------
    k : int
        Successes, ``0 <= k <= n``.
    n : int
        Trials, ``n >= 1``.
    alpha : float
        Strictly between 0 and 1.

    Returns
    -------
    lo, hi : float
        ``lo = 0`` when ``k == 0`` and ``hi = 1`` when ``k == n``.

    Examples
    --------
    >>> lo, hi = clopper_pearson(0, 10, alpha=0.05)
    >>> lo, round(hi, 4), round(1 - 0.025 ** (1 / 10), 4)
    (0.0, 0.3085, 0.3085)
    >>> [round(v, 4) for v in clopper_pearson(5, 10, alpha=0.05)]
    [0.1871, 0.8129]
    """
    k, n = _check_count(k, "k"), _check_count(n, "n")
    alpha = _check_alpha(alpha)
    if n < 1 or k > n:
        raise DataError(f"need 0 <= k <= n and n >= 1 for a binomial interval; got k={k}, n={n}")
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lo, hi


def _bound(fpr_hi: np.ndarray, fnr_hi: np.ndarray, delta: float) -> np.ndarray:
    """max(0, log((1-d-FNR)/FPR), log((1-d-FPR)/FNR)) elementwise; a non-positive numerator counts as 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1.0 - delta - fnr_hi, 0.0) / fpr_hi)
        b = np.log(np.maximum(1.0 - delta - fpr_hi, 0.0) / fnr_hi)
    return np.maximum(0.0, np.fmax(a, b))


def _upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Clopper-Pearson upper ends (level alpha / 2 one-sided) of k successes out of n, vectorised."""
    k = np.asarray(k)
    with np.errstate(invalid="ignore"):
        hi = stats.beta.ppf(1.0 - alpha / 2.0, k + 1, np.maximum(n - k, 1))
    return np.where(k >= n, 1.0, hi)


def epsilon_lower_bound(tp: int, fp: int, fn: int, tn: int, *, delta: float, alpha: float = 0.05) -> float:
    """The empirical lower bound on epsilon from a membership test's confusion counts.

    With ``FPR_hi`` and ``FNR_hi`` the Clopper-Pearson upper bounds (each at one-sided level
    ``alpha / 2``) of ``fp / (fp + tn)`` and ``fn / (fn + tp)``::

        eps_lb = max(0, log((1 - delta - FNR_hi) / FPR_hi), log((1 - delta - FPR_hi) / FNR_hi))

    If the trials are independent and the training is (epsilon, delta)-DP, then ``eps_lb <= epsilon``
    with probability at least ``1 - alpha``. The counts are those of one test as it guesses; a test
    that is mostly wrong (an inverted score) bounds nothing until its guesses are turned around.

    Parameters
    ----------
    tp, fp, fn, tn : int
        Member trials guessed member / non-member trials guessed member / member trials guessed
        non-member / non-member trials guessed non-member. Both ``tp + fn`` and ``fp + tn`` >= 1.
    delta : float
        The delta of the claim being tested, in [0, 1).
    alpha : float, default=0.05
        One minus the confidence.

    Returns
    -------
    float, >= 0

    Examples
    --------
    >>> import math
    >>> h = 1 - 0.025 ** (1 / 500)  # the upper bound of a rate observed as 0 out of 500
    >>> round(epsilon_lower_bound(tp=500, fp=0, fn=0, tn=500, delta=0.0), 4), round(math.log((1 - h) / h), 4)
    (4.9056, 4.9056)
    >>> epsilon_lower_bound(tp=50, fp=50, fn=50, tn=50, delta=1e-5)
    0.0
    """
    tp, fp = _check_count(tp, "tp"), _check_count(fp, "fp")
    fn, tn = _check_count(fn, "fn"), _check_count(tn, "tn")
    delta, alpha = _check_delta(delta), _check_alpha(alpha)
    if tp + fn < 1 or fp + tn < 1:
        raise DataError(
            f"the bound needs member and non-member trials; got {tp + fn} member and {fp + tn} non-member trials"
        )
    fpr_hi = _upper(np.array(fp), fp + tn, alpha)
    fnr_hi = _upper(np.array(fn), fn + tp, alpha)
    return float(_bound(fpr_hi, fnr_hi, delta))


@dataclass(frozen=True)
class EpsilonBound:
    """The result of :func:`epsilon_lower_bound_from_scores`.

    Attributes
    ----------
    epsilon_lb : float
        The lower bound, computed on the evaluation trials only.
    threshold : float
        Trials with ``score >= threshold`` are guessed members (chosen on the selection trials).
    counts : dict
        ``tp``, ``fp``, ``fn``, ``tn`` on the evaluation trials.
    alpha, delta : float
    n_selection, n_evaluation : int
        Trials used to choose the threshold and to compute the bound.
    standardised : bool
        Whether scores were standardised per group (then ``threshold`` is in standard deviations).
    """

    epsilon_lb: float
    threshold: float
    counts: dict[str, int]
    alpha: float
    delta: float
    n_selection: int
    n_evaluation: int
    standardised: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _counts_at(scores: np.ndarray, member: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives for each threshold (``score >= t`` guessed member)."""
    pos = np.sort(scores[member])
    neg = np.sort(scores[~member])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    return tp, fp


def epsilon_lower_bound_from_scores(
    scores: ArrayLike,
    is_member: ArrayLike,
    *,
    delta: float,
    alpha: float = 0.05,
    threshold_fraction: float = 0.5,
    groups: ArrayLike | None = None,
    seed: int,
) -> EpsilonBound:
    """The empirical epsilon lower bound from per-trial membership scores, with an honest threshold.

    The trials are split at random (members and non-members separately, and each group separately,
    seeded): on a ``threshold_fraction`` of them the threshold that maximises
    :func:`epsilon_lower_bound` is chosen; on the rest, which played no part in the choice, the bound
    is computed. Choosing the threshold on the trials that certify it would overstate the bound (the
    best of many thresholds is optimistic).

    With ``groups`` (e.g. which canary a trial is about), each group's scores are first standardised by
    the mean and standard deviation of its non-member trials in the selection part (the offline
    normalisation of LiRA, Carlini et al. 2022), so that canaries of different difficulty share one
    threshold; again the evaluation trials play no part in it.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
        Finite scores, higher meaning "member" (e.g. minus the canary's loss).
    is_member : array-like of shape (n_trials,)
        Whether the canary was in the training set of each trial, bool or 0/1; each class needs at
        least 2 trials.
    delta, alpha : float
        As in :func:`epsilon_lower_bound`.
    threshold_fraction : float, default=0.5
        Share of each class used to choose the threshold, strictly between 0 and 1.
    groups : array-like of shape (n_trials,), optional
        A group label per trial (any hashable values); each group needs at least 2 member and 2
        non-member trials.
    seed : int
        Seed of the split (see :mod:`miaudit.seeding`); the same seed gives the same result.

    Returns
    -------
    EpsilonBound
    """
    from miaudit.seeding import make_rng  # seeding's torch import is lazy; keep this module light

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_member)
    if s.ndim != 1 or y.shape != s.shape:
        raise DataError(f"scores and is_member must be 1-d arrays of one length; got shapes {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise DataError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    if not np.isin(y, [0, 1]).all():
        raise DataError("is_member must be bool or 0/1")
    y = y.astype(bool)
    delta, alpha = _check_delta(delta), _check_alpha(alpha)
    frac = threshold_fraction
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0.0 < float(frac) < 1.0:
        raise ConfigError(f"threshold_fraction must be strictly between 0 and 1 (e.g. 0.5); got {frac!r}")
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 < 2 or n0 < 2:
        raise DataError(f"need at least 2 member and 2 non-member trials; got {n1} and {n0}")
    if groups is None:
        labels, group = np.array(["all trials"]), np.zeros(len(s), dtype=np.int64)
    else:
        g = np.asarray(groups)
        if g.shape != s.shape:
            raise DataError(f"groups must have one label per trial, shape {s.shape}; got {g.shape}")
        labels, group = np.unique(g, return_inverse=True)
        group = group.reshape(-1)
    rng = make_rng(seed)
    select = np.zeros(len(s), dtype=bool)
    for k in range(int(group.max()) + 1):
        for cls in (True, False):
            idx = np.flatnonzero((group == k) & (y == cls))
            if len(idx) < 2:
                raise DataError(
                    f"group {labels[k].item()!r} has {len(idx)} {'member' if cls else 'non-member'} trials; "
                    "each group needs at least 2"
                )
            m = min(max(1, round(float(frac) * len(idx))), len(idx) - 1)
            select[rng.permutation(idx)[:m]] = True
    if groups is not None:
        s = _standardise(s, group, select & ~y)
    s_sel, y_sel = s[select], y[select]
    candidates = np.r_[np.unique(s_sel), np.inf]
    tp, fp = _counts_at(s_sel, y_sel, candidates)
    p_sel, n_sel = int(y_sel.sum()), int((~y_sel).sum())
    values = _bound(_upper(fp, n_sel, alpha), _upper(p_sel - tp, p_sel, alpha), delta)
    # the best threshold; among equal bounds the middle one (a robust choice when values plateau)
    best = np.flatnonzero(values == values.max())
    threshold = float(candidates[best[len(best) // 2]])
    s_ev, y_ev = s[~select], y[~select]
    guess = s_ev >= threshold
    counts = {
        "tp": int((guess & y_ev).sum()),
        "fp": int((guess & ~y_ev).sum()),
        "fn": int((~guess & y_ev).sum()),
        "tn": int((~guess & ~y_ev).sum()),
    }
    eps = epsilon_lower_bound(**counts, delta=delta, alpha=alpha)
    return EpsilonBound(
        epsilon_lb=eps,
        threshold=threshold,
        counts=counts,
        alpha=alpha,
        delta=delta,
        n_selection=int(select.sum()),
        n_evaluation=int((~select).sum()),
        standardised=groups is not None,
    )


def _standardise(s: np.ndarray, group: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each group's scores minus the mean of its reference trials, over their standard deviation."""
    out = np.empty_like(s)
    for k in range(int(group.max()) + 1):
        in_group = group == k
        ref = s[in_group & reference]
        std = float(np.std(ref)) if len(ref) > 1 else 0.0
        out[in_group] = (s[in_group] - float(np.mean(ref))) / max(std, _MIN_STD)
    return out

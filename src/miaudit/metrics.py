"""Membership-inference metrics: arrays in, numbers out.

Conventions shared by every function:

``is_member`` : array-like of shape (n_samples,)
    True membership, bool or 0/1; 1 (True) means member, the positive class.
``scores`` : array-like of shape (n_samples,)
    Attack scores, finite floats; higher means "more likely a member".
``predictions`` : array-like of shape (n_samples,)
    Hard decisions, bool or 0/1, usually ``scores >= threshold``.

The ROC curve follows scikit-learn (one point per distinct score, tied scores enter together,
``thresholds[0] == inf``). TPR at a fixed FPR follows Carlini et al. (2022), "Membership inference
attacks from first principles": the largest TPR over thresholds whose FPR does not exceed the level,
without interpolation. Intervals are a stratified percentile bootstrap within one run and Student's t
across seeds. This module never imports models or attacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "FPR_LEVELS",
    "METRIC_BOUNDS",
    "MIN_INTERVAL_VALUES",
    "accuracy",
    "advantage",
    "auc",
    "balanced_accuracy",
    "best_threshold",
    "bootstrap_ci",
    "confusion",
    "fpr_key",
    "mean_ci",
    "membership_metrics",
    "metric_bounds",
    "paired_difference_ci",
    "precision",
    "recall",
    "roc_curve",
    "seeds_needed",
    "threshold_for_fpr",
    "tpr_at_fpr",
]

#: The false-positive-rate levels every record reports TPR at (1%, 0.1% and no false positive at all);
#: declared here once, studies and reports import it.
FPR_LEVELS: tuple[float, ...] = (0.01, 0.001, 0.0)

# Bootstrap index matrices are drawn in chunks of at most this many entries (8 bytes each).
_BOOT_CHUNK_ENTRIES = 2**22


# --------------------------------------------------------------------------------------- validation
def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, of shape (n_samples,); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got 0 samples")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold bool or real numbers; got dtype {arr.dtype}")
    return arr


def _check_binary(values: ArrayLike, name: str) -> NDArray[np.bool_]:
    arr = _as_1d(values, name)
    if arr.dtype == np.bool_:
        return arr
    n_bad = int(np.count_nonzero(~np.isin(arr, (0, 1))))
    if n_bad:
        raise ValueError(
            f"{name} must be bool or 0/1 (1 = member); got {n_bad} other value(s) of {arr.size}, "
            f"e.g. {arr[~np.isin(arr, (0, 1))][0]!r}"
        )
    return arr == 1


def _check_finite(arr: np.ndarray, name: str) -> None:
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(
            f"{name} must be finite; got {n_bad} NaN or infinite value(s) of {arr.size}. Drop or "
            "impute those records, or clip infinite scores (e.g. np.nan_to_num), before computing metrics"
        )


def _check_scores(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = _as_1d(values, name).astype(np.float64)
    _check_finite(arr, name)
    return arr


def _check_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length (one entry per sample); got {a.shape[0]} and {b.shape[0]}"
        )


def _check_both_classes(y: NDArray[np.bool_], what: str) -> tuple[int, int]:
    n1 = int(np.count_nonzero(y))
    n0 = int(y.size - n1)
    if n1 == 0 or n0 == 0:
        raise ValueError(
            f"{what} needs both members and non-members in is_member; got {n1} member(s) and {n0} non-member(s)"
        )
    return n1, n0


def _check_scored(
    is_member: ArrayLike, scores: ArrayLike, what: str
) -> tuple[NDArray[np.bool_], NDArray[np.float64], int, int]:
    y = _check_binary(is_member, "is_member")
    s = _check_scores(scores, "scores")
    _check_length(y, s, "is_member", "scores")
    n1, n0 = _check_both_classes(y, what)
    return y, s, n1, n0


def _check_decisions(is_member: ArrayLike, predictions: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    y = _check_binary(is_member, "is_member")
    p = _check_binary(predictions, "predictions")
    _check_length(y, p, "is_member", "predictions")
    return y, p


def _check_real(value: object, name: str) -> float:
    if isinstance(value, bool | np.bool_) or np.ndim(value) != 0:  # type: ignore[arg-type]
        raise TypeError(f"{name} must be a real number; got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number; got {value!r}") from None


def _check_fpr_level(level: object, name: str = "fpr") -> float:
    value = _check_real(level, name)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a false-positive rate within [0, 1]; got {level!r}")
    return value + 0.0  # -0.0 -> 0.0


def _fpr_levels(fpr: float | Sequence[float], name: str) -> tuple[list[float], bool]:
    """The validated levels, and whether ``fpr`` was a single number."""
    if isinstance(fpr, str | bytes):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {fpr!r}")
    if np.ndim(fpr) == 0:
        return [_check_fpr_level(fpr, name)], True
    return [_check_fpr_level(v, f"{name}[{i}]") for i, v in enumerate(cast(Sequence[float], fpr))], False


def _check_confidence(level: object) -> float:
    value = _check_real(level, "level")
    if not 0.0 < value < 1.0:
        raise ValueError(f"level must be a confidence level strictly between 0 and 1, e.g. 0.95; got {level!r}")
    return value


# ----------------------------------------------------------------------------------------- ROC, AUC
def _roc_counts(
    y: NDArray[np.bool_], s: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """False and true positive counts of ``s >= t`` for t = inf and each distinct score, descending."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # last index of each run of ties
    tps = np.cumsum(y_sorted, dtype=np.int64)[ends]
    fps = ends + 1 - tps
    return np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, s_sorted[ends]]


def roc_curve(
    is_member: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Receiver operating characteristic of the rule "member iff ``scores >= threshold``".

    Equal to ``sklearn.metrics.roc_curve(is_member, scores, drop_intermediate=False)``.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite attack scores, higher meaning "more likely a member".

    Returns
    -------
    fpr, tpr : ndarray of shape (n_thresholds,)
        False- and true-positive rates, non-decreasing, from (0, 0) to (1, 1).
    thresholds : ndarray of shape (n_thresholds,)
        ``inf`` (nobody flagged), then the distinct scores in decreasing order.

    Examples
    --------
    >>> fpr, tpr, thr = roc_curve([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1])
    >>> fpr.tolist(), tpr.tolist(), thr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0], [inf, 0.9, 0.5, 0.1])
    """
    y, s, n1, n0 = _check_scored(is_member, scores, "roc_curve")
    fps, tps, thresholds = _roc_counts(y, s)
    return fps / n0, tps / n1, thresholds


def auc(is_member: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve.

    The probability that a random member scores above a random non-member, ties counting one half:
    the Mann-Whitney U statistic divided by ``n_members * n_nonmembers``. 0.5 is chance.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite attack scores, higher meaning "more likely a member".

    Returns
    -------
    float
        The ROC AUC, within [0, 1].

    Examples
    --------
    >>> auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1])  # pairs won: 1 + 1 + 0.5 + 1 of 4
    0.875
    """
    y, s, n1, n0 = _check_scored(is_member, scores, "auc")
    ranks = stats.rankdata(s)  # average ranks: ties count one half
    u = float(ranks[y].sum()) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def fpr_key(level: float) -> str:
    """The record key of a false-positive-rate level, written as a person would write it.

    The shortest text that reads back as the same float, without a trailing ``.0``.

    >>> [fpr_key(v) for v in (0.01, 0.001, 0.0, 1e-05, 1)]
    ['0.01', '0.001', '0', '1e-05', '1']
    """
    text = repr(_check_fpr_level(level, "level"))
    return text[:-2] if text.endswith(".0") else text


def _tpr_at(roc_fpr: NDArray[np.float64], roc_tpr: NDArray[np.float64], level: float) -> float:
    return float(roc_tpr[np.flatnonzero(roc_fpr <= level)[-1]])  # roc_fpr[0] == 0: never empty


def tpr_at_fpr(is_member: ArrayLike, scores: ArrayLike, fpr: float | Sequence[float]) -> float | dict[str, float]:
    """True-positive rate at a fixed false-positive rate.

    The largest TPR over thresholds whose FPR is at most ``fpr``, without interpolation, as in
    Carlini et al. (2022): ``tpr[np.where(fpr_curve <= level)[0][-1]]``. Level 0 gives the
    fraction of members found with no false positive at all.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite attack scores, higher meaning "more likely a member".
    fpr : float or sequence of float
        False-positive rate level(s), each within [0, 1].

    Returns
    -------
    float or dict of str to float
        For one level, the TPR. For a sequence, ``{fpr_key(level): tpr}``, e.g.
        ``{"0.01": 0.2, "0.001": 0.05, "0": 0.01}``.

    Examples
    --------
    >>> y, s = [1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.4, 0.7, 0.3, 0.2]
    >>> tpr_at_fpr(y, s, 0.0)
    0.6666666666666666
    >>> tpr_at_fpr(y, s, [0.5, 0])
    {'0.5': 1.0, '0': 0.6666666666666666}
    """
    levels, single = _fpr_levels(fpr, "fpr")
    roc_fpr, roc_tpr, _ = roc_curve(is_member, scores)
    if single:
        return _tpr_at(roc_fpr, roc_tpr, levels[0])
    return {fpr_key(level): _tpr_at(roc_fpr, roc_tpr, level) for level in levels}


# ------------------------------------------------------------------------------ hard decisions
def confusion(is_member: ArrayLike, predictions: ArrayLike) -> dict[str, int]:
    """Confusion counts of hard membership decisions, member being the positive class.

    Parameters
    ----------
    is_member, predictions : array-like of shape (n_samples,)
        True membership and decisions, bool or 0/1.

    Returns
    -------
    dict
        ``{"tp", "fp", "tn", "fn"}`` as ints.

    Examples
    --------
    >>> confusion([1, 1, 0, 0], [1, 0, 1, 0])
    {'tp': 1, 'fp': 1, 'tn': 1, 'fn': 1}
    """
    y, p = _check_decisions(is_member, predictions)
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(~y & p))
    fn = int(np.count_nonzero(y & ~p))
    return {"tp": tp, "fp": fp, "tn": int(y.size) - tp - fp - fn, "fn": fn}


def _rates(is_member: ArrayLike, predictions: ArrayLike, what: str) -> tuple[float, float]:
    """(TPR, FPR) of hard decisions; both classes required."""
    y, p = _check_decisions(is_member, predictions)
    n1, n0 = _check_both_classes(y, what)
    return int(np.count_nonzero(y & p)) / n1, int(np.count_nonzero(~y & p)) / n0


def accuracy(is_member: ArrayLike, predictions: ArrayLike) -> float:
    """Fraction of correct decisions, ``(tp + tn) / n_samples``.

    >>> accuracy([1, 1, 0, 0], [1, 0, 0, 0])
    0.75
    """
    y, p = _check_decisions(is_member, predictions)
    return float(np.count_nonzero(y == p) / y.size)


def precision(is_member: ArrayLike, predictions: ArrayLike) -> float:
    """Fraction of predicted members that are members, ``tp / (tp + fp)``.

    With no predicted member at all the ratio is undefined; this returns 0.0 (scikit-learn's
    ``zero_division=0``), so an attack that never says "member" gets no credit.

    >>> precision([1, 1, 0, 0], [1, 1, 1, 0]), precision([1, 0], [0, 0])
    (0.6666666666666666, 0.0)
    """
    c = confusion(is_member, predictions)
    flagged = c["tp"] + c["fp"]
    return c["tp"] / flagged if flagged else 0.0


def recall(is_member: ArrayLike, predictions: ArrayLike) -> float:
    """Fraction of members flagged (the TPR), ``tp / (tp + fn)``; needs at least one member.

    >>> recall([1, 1, 0, 0], [1, 0, 1, 0])
    0.5
    """
    y, p = _check_decisions(is_member, predictions)
    n1 = int(np.count_nonzero(y))
    if n1 == 0:
        raise ValueError("recall needs at least one member in is_member; got 0 members")
    return float(np.count_nonzero(y & p) / n1)


def balanced_accuracy(is_member: ArrayLike, predictions: ArrayLike) -> float:
    """Mean of the TPR and the TNR, ``(tpr + 1 - fpr) / 2``: accuracy as if classes were balanced.

    >>> balanced_accuracy([1, 0, 0, 0], [1, 1, 0, 0])  # (1 + 2/3) / 2
    0.8333333333333334
    """
    tpr, fpr = _rates(is_member, predictions, "balanced_accuracy")
    return (tpr + 1.0 - fpr) / 2.0


def advantage(is_member: ArrayLike, predictions: ArrayLike) -> float:
    """Membership advantage of Yeom et al. (2018), ``tpr - fpr``, within [-1, 1]; 0 is chance.

    >>> advantage([1, 1, 0, 0], [1, 1, 1, 0])
    0.5
    """
    tpr, fpr = _rates(is_member, predictions, "advantage")
    return tpr - fpr


# ---------------------------------------------------------------------------------- thresholds
def _max_false_positives(level: float, n0: int) -> int:
    """The largest k in [0, n0] with ``k / n0 <= level`` (the comparison ``tpr_at_fpr`` makes)."""
    k = min(n0, math.floor(level * n0))
    while k < n0 and (k + 1) / n0 <= level:
        k += 1
    while k > 0 and k / n0 > level:
        k -= 1
    return k


def threshold_for_fpr(nonmember_scores: ArrayLike, fpr: float) -> float:
    """The lowest threshold whose rule ``scores >= threshold`` flags at most ``fpr`` of the non-members.

    At most ``k`` non-members may be flagged, the largest ``k`` with ``k / n_nonmembers <= fpr``; the
    threshold is the next float above the (k+1)-th largest non-member score, so ties at that score
    are never flagged. If every non-member may be flagged (``fpr == 1``) it is ``-inf``. Applied to
    the same non-members together with members, the recall it gives equals :func:`tpr_at_fpr`.

    Parameters
    ----------
    nonmember_scores : array-like of shape (n_nonmembers,)
        Finite attack scores of non-members (for instance population or reference records).
    fpr : float
        Target false-positive rate, within [0, 1].

    Returns
    -------
    float

    Examples
    --------
    >>> threshold_for_fpr([0.1, 0.2, 0.3, 0.4], 0.25)  # flags only 0.4: just above 0.3
    0.30000000000000004
    """
    s = _check_scores(nonmember_scores, "nonmember_scores")
    level = _check_fpr_level(fpr, "fpr")
    k = _max_false_positives(level, s.size)
    if k >= s.size:
        return -math.inf
    kth_largest = np.partition(s, s.size - 1 - k)[s.size - 1 - k]
    return float(np.nextafter(kth_largest, np.inf))


#: Objectives :func:`best_threshold` can maximise.
THRESHOLD_OBJECTIVES: tuple[str, ...] = ("balanced_accuracy", "accuracy")


def best_threshold(is_member: ArrayLike, scores: ArrayLike, *, objective: str = "balanced_accuracy") -> float:
    """The threshold whose rule ``scores >= threshold`` maximises ``objective`` on these samples.

    The candidates are every cut of the sorted scores: flag nobody, flag the records with the highest
    distinct score, the two highest, ..., flag everyone. Ties go to the higher threshold (fewer
    records flagged). The threshold returned lies halfway between the lowest flagged score and the
    highest unflagged one, so that it also separates scores not seen here; flagging nobody gives
    a threshold above the highest score, flagging everyone ``min(scores) - 1``.

    Attacks calibrate their threshold with it on data the attacker holds (shadow or reference
    models). Chosen on the evaluation data itself, it is an optimistic (oracle) choice.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite attack scores, higher meaning "more likely a member".
    objective : {"balanced_accuracy", "accuracy"}, default="balanced_accuracy"
        ``"balanced_accuracy"``: maximise ``TPR - FPR`` (class sizes do not matter), compared in
        exact integers ``tp * n_nonmembers - fp * n_members`` so that equal values tie.
        ``"accuracy"``: maximise the number of correct decisions, ``tp - fp``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown ``objective``, or invalid ``is_member``/``scores`` (see the module docstring).

    Examples
    --------
    >>> y, s = [1, 0, 1, 0, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    >>> best_threshold(y, s)  # flag 0.9, 0.8, 0.7: TPR 1, FPR 1/4
    0.6499999999999999
    >>> best_threshold(y, s, objective="accuracy")  # flag 0.9 alone: 5 of 6 right
    0.8500000000000001
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(map(repr, THRESHOLD_OBJECTIVES))}; got {objective!r}")
    y, s, n1, n0 = _check_scored(is_member, scores, "best_threshold")
    fps, tps, cuts = _roc_counts(y, s)  # cut 0: nobody; cut k: scores >= k-th highest distinct score
    gain = tps * n0 - fps * n1 if objective == "balanced_accuracy" else tps - fps
    k = int(np.argmax(gain))  # the first maximum: the highest threshold
    top, bottom = float(cuts[1]), float(cuts[-1])
    if k == 0:
        return max(top + 1.0, float(np.nextafter(top, np.inf)))
    if k == len(cuts) - 1:
        return bottom - 1.0
    flagged, unflagged = float(cuts[k]), float(cuts[k + 1])
    middle = flagged / 2.0 + unflagged / 2.0  # no overflow; equals (a + b) / 2 wherever that is finite
    return middle if unflagged < middle <= flagged else flagged


# ------------------------------------------------------------------------------------- records
def membership_metrics(
    is_member: ArrayLike,
    scores: ArrayLike,
    *,
    threshold: float | None = None,
    predictions: ArrayLike | None = None,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> dict[str, Any]:
    """Every metric of one attack on one target, as a JSON-able record of plain ints and floats.

    Threshold-free metrics (AUC, TPR at each FPR level) come from ``scores``; the others from
    hard decisions: ``predictions`` if given, else ``scores >= threshold``. Give exactly one.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite attack scores, higher meaning "more likely a member".
    threshold : float, optional
        Members are the samples with ``scores >= threshold`` (see :func:`threshold_for_fpr`).
    predictions : array-like of shape (n_samples,), optional
        Hard decisions, bool or 0/1, when the attack makes its own.
    fpr_levels : sequence of float, default=(0.01, 0.001, 0.0)
        Levels for ``tpr_at_fpr``, each within [0, 1].

    Returns
    -------
    dict
        ``n_members``, ``n_nonmembers``, ``accuracy``, ``precision``, ``recall``,
        ``balanced_accuracy``, ``advantage``, ``auc`` and ``tpr_at_fpr``, the last a dict keyed by
        :func:`fpr_key` (``{"0.01": ..., "0.001": ..., "0": ...}``).

    Examples
    --------
    >>> m = membership_metrics([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1], threshold=0.65, fpr_levels=[0])
    >>> m["accuracy"], m["precision"], m["auc"], m["tpr_at_fpr"]
    (0.5, 0.5, 0.75, {'0': 0.5})
    """
    y, s, n1, n0 = _check_scored(is_member, scores, "membership_metrics")
    if predictions is not None and threshold is not None:
        raise ValueError("membership_metrics takes threshold or predictions, not both; got both")
    if predictions is not None:
        p = _check_binary(predictions, "predictions")
        _check_length(y, p, "is_member", "predictions")
    elif threshold is not None:
        t = _check_real(threshold, "threshold")
        if math.isnan(t):
            raise ValueError("threshold must be a number (inf and -inf allowed); got nan")
        p = s >= t
    else:
        raise ValueError(
            "membership_metrics needs hard decisions for accuracy, precision, recall and advantage: "
            "pass threshold=... (members are scores >= threshold; see threshold_for_fpr and "
            "best_threshold) or predictions=...; got neither"
        )
    levels, _ = _fpr_levels(fpr_levels, "fpr_levels")
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(~y & p))
    tpr, fpr = tp / n1, fp / n0
    roc_fpr, roc_tpr, _ = roc_curve(y, s)
    return {
        "n_members": n1,
        "n_nonmembers": n0,
        "accuracy": float(np.count_nonzero(y == p) / y.size),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tpr,
        "balanced_accuracy": (tpr + 1.0 - fpr) / 2.0,
        "advantage": tpr - fpr,
        "auc": auc(y, s),
        "tpr_at_fpr": {fpr_key(level): _tpr_at(roc_fpr, roc_tpr, level) for level in levels},
    }


# ------------------------------------------------------------------------------------ intervals
def bootstrap_ci(
    is_member: ArrayLike,
    scores: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of a metric over the samples of one run.

    Members and non-members are resampled separately, with replacement, so every replicate keeps
    the original numbers of each (stratified bootstrap). This captures the uncertainty from the
    finite evaluation set only, not from training; for that, repeat over seeds and use
    :func:`mean_ci`.

    Parameters
    ----------
    is_member : array-like of shape (n_samples,)
        True membership, bool or 0/1. Both classes must be present.
    scores : array-like of shape (n_samples,)
        Finite values handed to ``metric`` (scores, or hard predictions for ``accuracy``).
    metric : callable
        ``metric(is_member, scores) -> float``, e.g. :func:`auc` or
        ``lambda y, s: tpr_at_fpr(y, s, 0.01)``. It receives ``is_member`` as a bool ndarray.
    n_boot : int, default=1000
        Number of bootstrap replicates, at least 1.
    level : float, default=0.95
        Confidence level, strictly between 0 and 1.
    seed : int
        Seed of the resampling (see :mod:`miaudit.seeding`); the same seed gives the same interval.

    Returns
    -------
    point, low, high : float
        The metric on the full data and the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
        the replicates. If ``metric`` returns NaN for any replicate, ``low`` and ``high`` are NaN.

    Examples
    --------
    >>> point, low, high = bootstrap_ci([1, 1, 1, 0, 0, 0], [0.9, 0.4, 0.8, 0.5, 0.2, 0.1], auc,
    ...                                 n_boot=200, seed=0)
    >>> point, low <= point <= high
    (0.8888888888888888, True)
    """
    y = _check_binary(is_member, "is_member")
    s = _as_1d(scores, "scores")
    _check_finite(s, "scores")
    _check_length(y, s, "is_member", "scores")
    n1, n0 = _check_both_classes(y, "bootstrap_ci")
    if not callable(metric):
        raise TypeError(f"metric must be a callable metric(is_member, scores) -> float; got {metric!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer):
        raise TypeError(f"n_boot must be a positive integer; got {n_boot!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer (e.g. 1000); got {n_boot}")
    conf = _check_confidence(level)
    # Imported here because miaudit.seeding imports torch at module level, and importing this
    # module must stay free of torch; move to the top once seeding imports torch lazily.
    from miaudit.seeding import make_rng

    rng = make_rng(seed)

    point = float(metric(y, s))
    members, nonmembers = np.flatnonzero(y), np.flatnonzero(~y)
    labels = np.r_[np.ones(n1, dtype=bool), np.zeros(n0, dtype=bool)]
    values = np.empty(int(n_boot))
    chunk = max(1, _BOOT_CHUNK_ENTRIES // y.size)
    for start in range(0, int(n_boot), chunk):
        rows = min(chunk, int(n_boot) - start)
        index = np.concatenate(
            [members[rng.integers(0, n1, size=(rows, n1))], nonmembers[rng.integers(0, n0, size=(rows, n0))]],
            axis=1,
        )
        for j, row in enumerate(index):
            values[start + j] = metric(labels, s[row])
    alpha = (1.0 - conf) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


#: Fewest values from which :func:`mean_ci` states an interval. With two values the spread rests on
#: one degree of freedom: the t quantile is 12.7 and the standard deviation's own 95% range spans a
#: factor of about 70 (chi-square with 1 df), so an "interval" from two seeds says nothing reliable.
MIN_INTERVAL_VALUES = 3

#: The range of each bounded metric of this module; :func:`mean_ci` clips to it when given
#: ``bounds=metric_bounds(name)``. Rates and AUC lie in [0, 1]; ``advantage`` (TPR - FPR) in [-1, 1].
#: Unbounded: counts (``n_members``), differences between settings, and anything not listed here.
METRIC_BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "accuracy": (0.0, 1.0),
        "precision": (0.0, 1.0),
        "recall": (0.0, 1.0),
        "balanced_accuracy": (0.0, 1.0),
        "auc": (0.0, 1.0),
        "tpr_at_fpr": (0.0, 1.0),
        "advantage": (-1.0, 1.0),
    }
)

# No finite number of seeds is reported above this (the gap to close is then negligible against the spread).
_MAX_SEEDS = 10**9


def metric_bounds(name: str) -> tuple[float, float] | None:
    """The range of a metric of this module, or None when it is unbounded or unknown.

    TPR at a fixed FPR is bounded under any of its record names (``tpr_at_fpr``,
    ``tpr_at_fpr_0.01``, ``tpr_at_fpr[0.001]``).

    >>> metric_bounds("auc"), metric_bounds("tpr_at_fpr_0.01"), metric_bounds("advantage"), metric_bounds("n_members")
    ((0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), None)
    """
    if name.startswith("tpr_at_fpr"):
        return METRIC_BOUNDS["tpr_at_fpr"]
    return METRIC_BOUNDS.get(name)


def _check_bounds(bounds: object) -> tuple[float, float]:
    try:
        lo, hi = cast(Sequence[float], bounds)
    except (TypeError, ValueError):
        raise TypeError(f"bounds must be a pair (low, high), e.g. (0.0, 1.0) for a rate; got {bounds!r}") from None
    lo_f, hi_f = _check_real(lo, "bounds[0]"), _check_real(hi, "bounds[1]")
    if not lo_f < hi_f:  # also rejects NaN
        raise ValueError(f"bounds must satisfy low < high, e.g. (0.0, 1.0) for a rate; got {bounds!r}")
    return lo_f, hi_f


def _t_quantile(n: int, conf: float) -> float:
    """The two-sided Student's t quantile for ``n`` values (``n - 1`` degrees of freedom)."""
    return float(stats.t.ppf((1.0 + conf) / 2.0, n - 1))


def _t_interval(x: NDArray[np.float64], conf: float, *, min_n: int = 2) -> tuple[float, float, float, float]:
    """(mean, std, low, high) of a Student's t interval.

    ``std`` is NaN for fewer than 2 values; ``low`` and ``high`` are NaN for fewer than ``min_n``.
    """
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size >= 2 else math.nan
    if x.size < max(2, min_n):
        return mean, std, math.nan, math.nan
    half = _t_quantile(x.size, conf) * std / math.sqrt(x.size)
    return mean, std, mean - half, mean + half


def mean_ci(
    values: Sequence[float] | ArrayLike, *, level: float = 0.95, bounds: tuple[float, float] | None = None
) -> dict[str, float | int]:
    """Mean of a metric across seeds with a Student's t confidence interval.

    Parameters
    ----------
    values : array-like of shape (n_seeds,)
        One finite value per independent run (seed).
    level : float, default=0.95
        Confidence level, strictly between 0 and 1.
    bounds : (float, float), optional
        The metric's range, e.g. ``metric_bounds("auc")`` (see :data:`METRIC_BOUNDS`). The interval
        is clipped to it, so it never claims values the metric cannot take; every value must lie
        within it.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``std`` (sample standard deviation, ``ddof=1``) and ``n``.
        With fewer than :data:`MIN_INTERVAL_VALUES` (3) values no interval is claimed: ``low`` and
        ``high`` are NaN; with a single value ``std`` is NaN too.

    Examples
    --------
    >>> r = mean_ci([0.6, 0.6, 0.6])
    >>> r["mean"], r["low"], r["high"], r["std"], r["n"]
    (0.6, 0.6, 0.6, 0.0, 3)
    >>> r = mean_ci([0.70, 0.95])  # two seeds: no interval
    >>> round(r["mean"], 3), r["low"], r["high"], r["n"]
    (0.825, nan, nan, 2)
    >>> r = mean_ci([0.90, 0.99, 1.0], bounds=(0.0, 1.0))  # unclipped: [0.827, 1.100]
    >>> round(r["low"], 4), r["high"]
    (0.8265, 1.0)
    """
    x = _check_scores(values, "values")
    conf = _check_confidence(level)
    lim = None if bounds is None else _check_bounds(bounds)
    if lim is not None and (x.min() < lim[0] or x.max() > lim[1]):
        raise ValueError(
            f"values must lie within bounds {lim}; got values from {float(x.min())!r} to {float(x.max())!r}: "
            "pass the metric's own range (metric_bounds(name)) or bounds=None"
        )
    mean, std, low, high = _t_interval(x, conf, min_n=MIN_INTERVAL_VALUES)
    if lim is not None and math.isfinite(low):
        low, high = max(lim[0], low), min(lim[1], high)
    return {"mean": mean, "low": low, "high": high, "std": std, "n": int(x.size)}


def seeds_needed(std: float, gap: float, *, level: float = 0.95) -> int | None:
    """Fewest seeds whose expected t-interval half-width is below ``gap``.

    The smallest ``n >= MIN_INTERVAL_VALUES`` with ``t(n - 1) * std / sqrt(n) < gap``, where
    ``t(n - 1)`` is the two-sided Student's t quantile at ``level``: with the spread taken as
    ``std``, an interval around a mean that lies ``gap`` from a boundary would then clear it. A
    planning estimate (it treats the observed ``std`` as the truth), not a power calculation.

    Parameters
    ----------
    std : float
        Standard deviation of one seed's value (e.g. of the per-seed differences), at least 0.
    gap : float
        Distance the half-width must stay under.
    level : float, default=0.95
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    int or None
        None when no number of seeds would do: ``gap <= 0``, ``std`` NaN, or more than 10**9 needed.

    Examples
    --------
    >>> seeds_needed(0.01, 0.012)  # n = 5: 2.776 * 0.01 / sqrt(5) = 0.0124; n = 6: 2.571 * 0.01 / sqrt(6) = 0.0105
    6
    >>> seeds_needed(0.0, 0.001), seeds_needed(0.01, 0.0)
    (3, None)
    """
    s, g = _check_real(std, "std"), _check_real(gap, "gap")
    conf = _check_confidence(level)
    if s < 0:
        raise ValueError(f"std must be a standard deviation, at least 0; got {std!r}")
    if not (math.isfinite(s) and g > 0):
        return None
    z = float(stats.norm.ppf((1.0 + conf) / 2.0))
    start = (z * s / g) ** 2  # the normal quantile is below t: no smaller n can qualify
    if start > _MAX_SEEDS:
        return None
    n = max(MIN_INTERVAL_VALUES, math.ceil(start))
    while _t_quantile(n, conf) * s / math.sqrt(n) >= g:
        n += 1
    return n if n <= _MAX_SEEDS else None


def paired_difference_ci(
    a: Sequence[float] | ArrayLike, b: Sequence[float] | ArrayLike, *, level: float = 0.95
) -> dict[str, float | int]:
    """Mean paired difference ``a - b`` across seeds, with a t interval and a paired t-test.

    Pair runs that share a seed, e.g. attack accuracy with little (``a``) and more (``b``) training
    data: ``low > 0`` supports "more training data lowers attack accuracy" at that level.

    Parameters
    ----------
    a, b : array-like of shape (n_seeds,)
        Finite values, ``a[i]`` and ``b[i]`` from the same seed.
    level : float, default=0.95
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    dict
        ``diff`` (mean of ``a - b``), ``low``, ``high``, ``p_value`` (two-sided, null hypothesis of
        no mean difference) and ``n``. With one pair, ``low``, ``high`` and ``p_value`` are NaN. If
        all differences are equal, the interval is that difference and ``p_value`` is 1.0 when it
        is 0, else 0.0.

    Examples
    --------
    >>> r = paired_difference_ci([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])  # differences 2, 3, 4
    >>> r["diff"], round(r["low"], 4), round(r["high"], 4), round(r["p_value"], 4), r["n"]
    (3.0, 0.5159, 5.4841, 0.0351, 3)
    """
    x = _check_scores(a, "a")
    z = _check_scores(b, "b")
    _check_length(x, z, "a", "b")
    d = x - z
    diff, std, low, high = _t_interval(d, _check_confidence(level))
    if d.size < 2:
        p_value = math.nan
    elif std == 0.0:
        p_value = 1.0 if diff == 0.0 else 0.0
    else:
        t_stat = diff / (std / math.sqrt(d.size))
        p_value = float(2.0 * stats.t.sf(abs(t_stat), d.size - 1))
    return {"diff": diff, "low": low, "high": high, "p_value": p_value, "n": int(d.size)}

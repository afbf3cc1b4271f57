"""Membership signals and the statistics of the modern attacks, as pure functions over arrays.

Per-record signals from a model's probability vectors:

* :func:`cross_entropy` (Yeom et al. 2018), :func:`confidence`, :func:`entropy` and
  :func:`modified_entropy` (Song & Mittal 2021), for the threshold attacks;
* :func:`logit_confidence`, LiRA's logit-scaled confidence ``phi = log(p_y) - log(1 - p_y)``
  (Carlini et al. 2022), and :func:`logit_confidence_from_logits` for when logits are at hand.

Statistics of the attacks: :func:`gaussian_logpdf`, :func:`in_out_statistics` and
:func:`out_statistics` (per-record Gaussian fits over reference models, with an optional global
variance), :func:`lira_online_score`, :func:`lira_offline_score`, :func:`rmia_offline_pr` and
:func:`rmia_scores` (Zarifzadeh et al. 2024). The AUC and the best-threshold search that attacks use
to tune themselves are :func:`miaudit.metrics.auc` and :func:`miaudit.metrics.best_threshold`.

Precision: a confident model puts ``p_y`` within 1e-16 of 1, where ``1 - p_y`` computed by
subtraction is 0. Every function here computes ``1 - p_i`` as the sum of the *other* entries of
the probability vector instead, which keeps the tiny probabilities a float64 softmax returns, so
that very confident records stay ordered (this matters for the TPR at low FPR).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, logsumexp

from miaudit.errors import DataError

__all__ = [
    "complement",
    "confidence",
    "cross_entropy",
    "entropy",
    "gaussian_logpdf",
    "in_out_statistics",
    "lira_offline_score",
    "lira_online_score",
    "logit_confidence",
    "logit_confidence_from_logits",
    "modified_entropy",
    "out_statistics",
    "pooled_std",
    "rmia_offline_pr",
    "rmia_offline_score",
    "rmia_ratio",
    "rmia_scores",
    "true_class_probability",
]

#: smallest probability taken to a logarithm (log(1e-300) = -690.8)
_TINY = 1e-300
#: smallest standard deviation of a Gaussian fit (guards records whose reference signals coincide)
MIN_STD = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_probs(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise DataError(f"P must have shape (n_samples, n_classes); got shape {P.shape}")
    return P


def _check_labelled(P: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = _check_probs(P)
    y = np.asarray(y)
    if y.shape != (len(P),):
        raise DataError(f"y must have shape ({len(P)},) to match P; got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= P.shape[1]):
        raise DataError(f"labels must lie in [0, {P.shape[1] - 1}]; got range [{y.min()}, {y.max()}]")
    return P, y.astype(np.int64, copy=False)


def true_class_probability(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``p_y``, the probability of each record's true class: ndarray of shape (n_samples,).

    >>> true_class_probability(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([1, 1])).tolist()
    [0.8, 0.4]
    """
    P, yy = _check_labelled(P, y)
    return P[np.arange(len(yy)), yy]


def _others(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``1 - p_y`` as the sum of the other classes' probabilities (exact for tiny values)."""
    rest = P.copy()
    rest[np.arange(len(y)), y] = 0.0
    return rest.sum(axis=1)


def complement(P: np.ndarray) -> np.ndarray:
    """``1 - P`` entrywise, each entry computed as the sum of the other entries of its row.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)

    Returns
    -------
    ndarray of shape (n_samples, n_classes)

    Examples
    --------
    >>> complement(np.array([[1 - 1e-20, 1e-20]])).tolist()
    [[1e-20, 1.0]]
    """
    P = _check_probs(P)
    out = 1.0 - P
    if P.size:
        top = P.argmax(axis=1)
        out[np.arange(len(P)), top] = _others(P, top)
    return out


def _log_probs(P: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``log P`` entrywise, through ``log1p(-C)`` where ``P > 0.5`` (``C = 1 - P``, exact)."""
    with np.errstate(divide="ignore"):
        return np.where(P > 0.5, np.log1p(-np.minimum(C, 0.5)), np.log(np.maximum(P, _TINY)))


def cross_entropy(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy loss ``-log p_y`` of each record: ndarray of shape (n_samples,).

    >>> cross_entropy(np.array([[0.5, 0.5], [1 - 1e-20, 1e-20]]), np.array([0, 0])).tolist()
    [0.6931471805599453, 1e-20]
    """
    P, yy = _check_labelled(P, y)
    p = P[np.arange(len(yy)), yy]
    rest = _others(P, yy)
    with np.errstate(divide="ignore"):
        return np.where(p > 0.5, -np.log1p(-np.minimum(rest, 0.5)), -np.log(np.maximum(p, _TINY)))


def confidence(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The model's confidence in the true class, ``p_y``: ndarray of shape (n_samples,)."""
    return true_class_probability(P, y)


def entropy(P: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum_i p_i log p_i`` (nats) of each row: ndarray of shape (n_samples,).

    >>> entropy(np.array([[0.5, 0.5], [1.0, 0.0]])).round(6).tolist()
    [0.693147, 0.0]
    """
    P = _check_probs(P)
    return 0.0 - (P * _log_probs(P, complement(P))).sum(axis=1)


def modified_entropy(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified entropy: ndarray of shape (n_samples,).

    ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``. It is 0 for a correct
    prediction with full confidence and grows without bound for a confident wrong one, so, unlike the
    entropy, it separates confident correct predictions (members) from confident mistakes.

    >>> modified_entropy(np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 0, 0])).round(4).tolist()
    [0.6931, 0.0, 1381.5511]
    """
    P, yy = _check_labelled(P, y)
    rows = np.arange(len(yy))
    C = complement(P)
    log_p = _log_probs(P, C)
    log_c = _log_probs(C, P)
    wrong = P * log_c
    wrong[rows, yy] = 0.0
    return 0.0 - C[rows, yy] * log_p[rows, yy] - wrong.sum(axis=1)


def logit_confidence(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence ``phi = log(p_y) - log(sum_{j != y} p_j)``.

    Computed from probabilities as in Carlini et al.'s reference code: the denominator is the sum of
    the other classes' probabilities, not ``1 - p_y``, and both are clipped at 1e-300, so ``phi``
    stays finite (within about +-690.8) and confident records stay ordered.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> logit_confidence(np.array([[0.8, 0.1, 0.1], [0.5, 0.5, 0.0]]), np.array([0, 2])).round(4).tolist()
    [1.3863, -690.7755]
    """
    P, yy = _check_labelled(P, y)
    p = P[np.arange(len(yy)), yy]
    return np.log(np.maximum(p, _TINY)) - np.log(np.maximum(_others(P, yy), _TINY))


def logit_confidence_from_logits(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``phi = z_y - logsumexp_{j != y} z_j`` from logits ``Z``, exact for any confidence.

    Equal to :func:`logit_confidence` of ``softmax(Z)`` wherever that one does not clip.

    >>> Z = np.array([[2.0, 0.0, 0.0]])
    >>> round(float(logit_confidence_from_logits(Z, np.array([0]))[0]), 6), round(2 - math.log(2), 6)
    (1.306853, 1.306853)
    """
    Z = np.asarray(Z, dtype=np.float64)
    Z, yy = _check_labelled(Z, y)
    rows = np.arange(len(yy))
    rest = Z.copy()
    rest[rows, yy] = -np.inf
    return Z[rows, yy] - logsumexp(rest, axis=1)


# ----------------------------------------------------------------------------------- Gaussians
def gaussian_logpdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``log N(x; mean, std^2)``, elementwise with broadcasting.

    >>> round(float(gaussian_logpdf(np.array(1.0), np.array(0.0), np.array(1.0))), 6)
    -1.418939
    """
    x, mean, std = (np.asarray(a, dtype=np.float64) for a in (x, mean, std))
    z = (x - mean) / std
    return np.asarray(-_HALF_LOG_2PI - np.log(std) - 0.5 * z * z)


def pooled_std(values: np.ndarray, mask: np.ndarray) -> float:
    """One standard deviation pooled over records: the global-variance option of LiRA.

    Each record's values are centred on its own mean and the squared deviations summed over all
    records, divided by ``sum_j (n_j - 1)`` (the unbiased pooled variance). Differences between
    records' means do not enter.

    Parameters
    ----------
    values : ndarray of shape (n_models, n_samples)
    mask : ndarray of shape (n_models, n_samples), bool
        Which entries count (e.g. the models for which the record is IN).

    Returns
    -------
    float

    Examples
    --------
    >>> v = np.array([[1.0, 10.0], [3.0, 14.0]])
    >>> pooled_std(v, np.ones_like(v, bool)) == math.sqrt((1 + 1 + 4 + 4) / 2)
    True
    """
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    n = mask.sum(axis=0)
    if int((n - 1).clip(min=0).sum()) == 0:
        raise DataError("a pooled variance needs some record with at least 2 values; use more reference models")
    mean = np.where(mask, values, 0.0).sum(axis=0) / np.maximum(n, 1)
    ss = np.where(mask, (values - mean) ** 2, 0.0).sum()
    return max(float(np.sqrt(ss / (n - 1).clip(min=0).sum())), MIN_STD)


def _masked_mean_std(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = mask.sum(axis=0)
    if (n < 1).any():
        raise DataError(
            f"{int((n < 1).sum())} records have no reference model in this group; use more reference models"
        )
    mean = np.where(mask, values, 0.0).sum(axis=0) / n
    ss = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(ss / (n - 1))
    std = np.where(n > 1, std, 0.0)
    return mean, np.maximum(std, MIN_STD)


def in_out_statistics(
    phi: np.ndarray, keep: np.ndarray, *, fix_variance: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-record Gaussian fits of reference models' signals, IN and OUT (online LiRA).

    Parameters
    ----------
    phi : ndarray of shape (n_models, n_samples)
        Each reference model's logit-scaled confidence on each record.
    keep : ndarray of shape (n_models, n_samples), bool
        ``keep[m, j]``: record j was in model m's training set.
    fix_variance : bool
        One variance for all records (per group, pooled as in :func:`pooled_std`) instead of one per
        record; the per-record spread is then not estimated from a handful of models.

    Returns
    -------
    mean_in, std_in, mean_out, std_out : ndarray of shape (n_samples,)
        Standard deviations are unbiased (``ddof=1``) and at least :data:`MIN_STD`.
    """
    phi = np.asarray(phi, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if phi.shape != keep.shape or phi.ndim != 2:
        raise DataError(f"phi and keep must both have shape (n_models, n_samples); got {phi.shape}, {keep.shape}")
    mean_in, std_in = _masked_mean_std(phi, keep)
    mean_out, std_out = _masked_mean_std(phi, ~keep)
    if fix_variance:
        std_in = np.full_like(std_in, pooled_std(phi, keep))
        std_out = np.full_like(std_out, pooled_std(phi, ~keep))
    return mean_in, std_in, mean_out, std_out


def out_statistics(phi: np.ndarray, *, global_std: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-record Gaussian fits of OUT reference models' signals (offline LiRA).

    Parameters
    ----------
    phi : ndarray of shape (n_models, n_samples)
        Signals of reference models none of which trained on the records.
    global_std : float, optional
        Use this standard deviation for every record instead of the per-record one.

    Returns
    -------
    mean_out, std_out : ndarray of shape (n_samples,)
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 2:
        raise DataError(f"phi must have shape (n_models, n_samples); got {phi.shape}")
    mean, std = _masked_mean_std(phi, np.ones_like(phi, dtype=bool))
    if global_std is not None:
        std = np.full_like(std, max(float(global_std), MIN_STD))
    return mean, std


def lira_online_score(
    phi: np.ndarray, mean_in: np.ndarray, std_in: np.ndarray, mean_out: np.ndarray, std_out: np.ndarray
) -> np.ndarray:
    """Online LiRA: ``log N(phi; mean_in, std_in^2) - log N(phi; mean_out, std_out^2)``.

    The log-likelihood ratio of "member" against "non-member"; 0 is the decision threshold at equal
    priors.

    >>> round(float(lira_online_score(np.array(1.0), 2.0, 1.0, 0.0, 1.0)), 6)  # equidistant: 0
    0.0
    """
    return gaussian_logpdf(phi, mean_in, std_in) - gaussian_logpdf(phi, mean_out, std_out)


def lira_offline_score(phi: np.ndarray, mean_out: np.ndarray, std_out: np.ndarray) -> np.ndarray:
    """Offline LiRA: ``-log Pr[Z > phi]`` for ``Z ~ N(mean_out, std_out^2)``.

    Carlini et al.'s one-sided test: a member's confidence lies in the upper tail of the OUT
    distribution. The score is a monotone function of the paper's ``1 - Pr[Z > phi]`` that does not
    saturate at 1 in the tail (it uses the log survival function), so confident records stay ordered.

    >>> round(float(lira_offline_score(np.array(0.0), 0.0, 1.0)), 6)  # log 2 at the OUT mean
    0.693147
    """
    phi, mean_out, std_out = (np.asarray(a, dtype=np.float64) for a in (phi, mean_out, std_out))
    return np.asarray(-log_ndtr(-(phi - mean_out) / std_out))


# ------------------------------------------------------------------------------------------ RMIA
def rmia_offline_pr(mean_out: np.ndarray, a: float) -> np.ndarray:
    """RMIA's offline estimate of ``Pr(x)``: ``((1 + a) * mean_out + (1 - a)) / 2``.

    ``mean_out`` is the mean over OUT reference models of the probability of the true class; ``a``
    in [0, 1] corrects for the missing IN models (Zarifzadeh et al. 2024, Appendix B.2.2).

    >>> rmia_offline_pr(np.array([0.2, 1.0]), 0.5).tolist()
    [0.4, 1.0]
    """
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must be in [0, 1]; got {a}")
    return 0.5 * ((1.0 + a) * np.asarray(mean_out, dtype=np.float64) + (1.0 - a))


def rmia_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, *, gamma: float = 1.0) -> np.ndarray:
    """RMIA's score: the fraction of population records z with ``ratio_x / ratio_z > gamma``.

    Parameters
    ----------
    ratio_x : ndarray of shape (n_samples,)
        ``p_target(x) / Pr(x)`` of each record to score (non-negative).
    ratio_z : ndarray of shape (n_population,)
        ``p_target(z) / Pr(z)`` of each population record (non-negative).
    gamma : float, default 1.0
        The likelihood-ratio threshold (> 0).

    Returns
    -------
    ndarray of shape (n_samples,), values in [0, 1]

    Examples
    --------
    >>> rmia_scores(np.array([1.0, 3.0]), np.array([0.5, 1.0, 2.0, 4.0])).tolist()
    [0.25, 0.75]
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0; got {gamma}")
    ratio_x = np.asarray(ratio_x, dtype=np.float64)
    ratio_z = np.sort(np.asarray(ratio_z, dtype=np.float64).ravel())
    if ratio_z.size == 0:
        raise DataError("RMIA needs at least one population record z")
    # ratio_x / ratio_z > gamma  <=>  ratio_z < ratio_x / gamma  (ratio_z >= 0, no division by 0)
    return np.searchsorted(ratio_z, ratio_x / gamma, side="left") / ratio_z.size


def rmia_ratio(p: np.ndarray, mean_out: np.ndarray, a: float) -> np.ndarray:
    """``p / Pr(x)``: the target's true-class probability over RMIA's offline ``Pr(x)``.

    >>> rmia_ratio(np.array([0.8]), np.array([0.2]), 0.5).tolist()
    [2.0]
    """
    pr = rmia_offline_pr(mean_out, a)
    return np.asarray(p, dtype=np.float64) / np.maximum(pr, _TINY)


def rmia_offline_score(
    p_x: np.ndarray,
    mean_out_x: np.ndarray,
    p_z: np.ndarray,
    mean_out_z: np.ndarray,
    *,
    a: float,
    gamma: float = 1.0,
) -> np.ndarray:
    """Offline RMIA end to end: ratios of the records and of the population, then the fractions.

    Parameters
    ----------
    p_x : ndarray of shape (n_samples,)
        The target's probability of each record's true class.
    mean_out_x : ndarray of shape (n_samples,)
        The mean of the same over the (OUT) reference models.
    p_z, mean_out_z : ndarray of shape (n_population,)
        The same two for the population records z.
    a : float
        The offline coefficient of :func:`rmia_offline_pr`.
    gamma : float, default 1.0

    Returns
    -------
    ndarray of shape (n_samples,), values in [0, 1]

    Examples
    --------
    >>> rmia_offline_score(np.array([0.9]), np.array([0.5]), np.array([0.5, 0.9]), np.array([0.5, 0.1]), a=1.0)
    array([0.5])
    """
    return rmia_scores(rmia_ratio(p_x, mean_out_x, a), rmia_ratio(p_z, mean_out_z, a), gamma=gamma)

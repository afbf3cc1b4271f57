"""Canaries: records made to be easy to recognise, for auditing privacy claims.

A privacy audit inserts a record into half of many training runs and asks how well a test tells the
two halves apart. The audit is strongest with records that the model must memorise to fit, because
nothing else in the data explains them (Jagielski et al. 2020; Nasr et al. 2021):

``flip``
    Real records with their label changed to another class, drawn uniformly among the other classes.
    Against the data's own pattern, a model fits such a record only by memorising it.
``ood``
    Out-of-distribution records: uniform noise in the data's value range (per feature, between the
    smallest and largest value seen), with labels drawn uniformly among the classes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from miaudit.errors import ConfigError, DataError
from miaudit.seeding import make_rng

__all__ = ["CANARY_KINDS", "make_canaries"]


def _flip(
    X: np.ndarray, y: np.ndarray, n: int, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if n > len(X):
        raise DataError(f"asked for {n} flipped-label canaries from {len(X)} records; pass more records or fewer")
    source = rng.choice(len(X), size=n, replace=False)
    shift = rng.integers(1, n_classes, size=n)  # 1..C-1: never the record's own class
    return X[source].copy(), (y[source] + shift) % n_classes


def _ood(
    X: np.ndarray, y: np.ndarray, n: int, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    Xc = low + (high - low) * rng.random((n, X.shape[1]))
    return Xc.astype(X.dtype, copy=False), rng.integers(0, n_classes, size=n)


_KINDS: dict[str, Callable[[np.ndarray, np.ndarray, int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]]
_KINDS = {"flip": _flip, "ood": _ood}
#: Names accepted by :func:`make_canaries` ``kind``.
CANARY_KINDS: tuple[str, ...] = tuple(_KINDS)


def make_canaries(
    X: np.ndarray, y: np.ndarray, n: int, *, kind: str, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``n`` canary records from a dataset.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_features)
        Records to draw from (``flip``) or whose value range to fill (``ood``); finite values.
    y : ndarray of shape (n_records,)
        Integer labels in ``[0, n_classes)``.
    n : int
        Number of canaries, >= 1 (``flip``: at most ``n_records``; the sources are distinct records).
    kind : {"flip", "ood"}
    n_classes : int
        >= 2.
    seed : int
        The same seed gives the same canaries.

    Returns
    -------
    Xc : ndarray of shape (n, n_features), X's dtype
    yc : ndarray of shape (n,), int64
    """
    if kind not in _KINDS:
        raise ConfigError(f"canary kind must be one of {', '.join(map(repr, CANARY_KINDS))}; got {kind!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"the number of canaries must be an integer >= 1; got {n!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) == 0 or y.shape != (len(X),):
        raise DataError(f"X must have shape (n_records, n_features) and y (n_records,); got {X.shape} and {y.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
        raise DataError("X must hold finite numbers to make canaries from")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"y must hold integer labels in [0, {n_classes - 1}]; got {y.dtype} in [{y.min()}, {y.max()}]")
    Xc, yc = _KINDS[kind](X, y, int(n), int(n_classes), make_rng(seed, "canaries", kind))
    return Xc, np.asarray(yc, dtype=np.int64)

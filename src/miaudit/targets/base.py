"""The black box: what an attacker may see of a model.

A target is anything with ``predict_proba(X) -> ndarray of shape (n_samples, n_classes)``. Attacks
receive a target and nothing else of the model. :class:`BlackBox` is the base of our targets: it
validates every answer (shape, finite, a probability vector per row) and counts the queries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np

from miaudit.errors import DataError, TargetError

__all__ = ["BlackBox", "Target", "check_probabilities"]


@runtime_checkable
class Target(Protocol):
    """The protocol attacks rely on."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): class probabilities for each record."""
        ...


def check_probabilities(
    P: np.ndarray, *, n_samples: int, n_classes: int | None = None, atol: float = 1e-3
) -> np.ndarray:
    """Validate a target's answer and return it as float64.

    Raises TargetError naming the problem: wrong shape, NaN or infinite values, negative values or
    rows that do not sum to 1.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != n_samples or (n_classes is not None and P.shape[1] != n_classes):
        want = f"({n_samples}, {n_classes if n_classes is not None else 'n_classes'})"
        raise TargetError(f"the target answered an array of shape {P.shape}; expected {want}")
    if not np.isfinite(P).all():
        raise TargetError(
            f"the target answered {int((~np.isfinite(P)).sum())} NaN or infinite probabilities; "
            "check the model for numerical problems"
        )
    sums = P.sum(axis=1)
    if (-atol > P).any() or not np.allclose(sums, 1.0, atol=atol):
        raise TargetError(
            "the target's answers are not probability vectors (negative entries or rows not summing to 1; "
            f"row sums range {sums.min():.4g}..{sums.max():.4g}); wrap logits with a softmax"
        )
    return np.clip(P, 0.0, 1.0)


class BlackBox(ABC):
    """Base class of targets: validated answers and query counting.

    Subclasses implement :meth:`_predict_proba`. ``n_queries`` counts records answered and
    ``n_calls`` counts calls, both since construction or :meth:`reset_counts`.
    """

    def __init__(self, *, n_features: int, n_classes: int) -> None:
        self.n_features = n_features
        self.n_classes = n_classes
        self.n_queries = 0
        self.n_calls = 0

    @abstractmethod
    def _predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): the target's probabilities for each record.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"queries must have shape (n_samples, {self.n_features}); got {X.shape}")
        if not np.isfinite(X).all():
            raise DataError("queries contain NaN or infinite values; clean the records before querying")
        P = check_probabilities(self._predict_proba(X), n_samples=len(X), n_classes=self.n_classes)
        self.n_queries += len(X)
        self.n_calls += 1
        return P

    def reset_counts(self) -> None:
        self.n_queries = 0
        self.n_calls = 0

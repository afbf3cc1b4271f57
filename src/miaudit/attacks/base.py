"""What every attack is: fitted once from the attacker's knowledge, then scores records.

An attack never sees the target's weights or training data. It receives:

* at ``fit`` time, an :class:`AttackerKnowledge`: records from the same distribution as the
  target's data, disjoint from the target's training set, and the training recipe the attacker
  believes the target used (for shadow or reference models);
* at ``score`` time, the target as a black box (``predict_proba``) and the records to judge.

``score`` returns one number per record, higher meaning "more likely a member"; hard decisions are
``score >= threshold_``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from miaudit.errors import DataError, NotFittedError
from miaudit.targets.base import Target
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["Attack", "AttackerKnowledge", "check_records"]

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class AttackerKnowledge:
    """What the attacker knows before looking at the target.

    Attributes
    ----------
    X : ndarray of shape (n_population, n_features)
        The attacker's own records, from the target's distribution but never in its training set.
    y : ndarray of shape (n_population,)
        Their labels, integers in [0, n_classes).
    n_classes : int
        Number of classes the target predicts.
    model : ModelSpec
        The architecture the attacker believes the target has (for shadow/reference models).
    train : TrainSpec
        The recipe the attacker believes the target was trained with.
    """

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    model: ModelSpec
    train: TrainSpec

    def __post_init__(self) -> None:
        X, y = check_records(self.X, self.y, n_classes=self.n_classes, n_features=self.model.n_features)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    @property
    def n_population(self) -> int:
        return len(self.y)


def check_records(
    X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate records to be scored or learned from; return float32 X and int64 y."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise DataError(f"X must be 2-d, of shape (n_samples, n_features); got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(f"X must have {n_features} features per record; got {X.shape[1]}")
    if y.shape != (len(X),):
        raise DataError(f"y must have shape ({len(X)},) to match X; got {y.shape}")
    if not np.isfinite(X).all():
        raise DataError(f"X contains {int((~np.isfinite(X)).sum())} NaN or infinite values; clean the records")
    if y.size and not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
        raise DataError("y must hold integer class labels")
    y = y.astype(np.int64, copy=False)
    if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must lie in [0, {n_classes - 1}]; got range [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(X, dtype=np.float32), y


class Attack(ABC):
    """Base class of membership inference attacks (fit once, then score records)."""

    #: registry name, e.g. "shokri"
    name: ClassVar[str] = ""

    threshold_: float

    @abstractmethod
    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Learn whatever the attack needs from the attacker's knowledge; return self."""

    @abstractmethod
    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Membership scores of records, higher meaning more likely a member.

        Parameters
        ----------
        target : Target
            The black box, reached only through ``predict_proba``.
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            The records' true labels (the attacker knows the records it asks about).

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        self._check_fitted()
        X, y = check_records(X, y)
        s = np.asarray(self._score(target, X, y), dtype=np.float64)
        if s.shape != (len(X),):  # pragma: no cover - a bug in a subclass
            raise RuntimeError(f"{type(self).__name__} returned scores of shape {s.shape}")
        return s

    def predict(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Hard membership decisions, ``score >= threshold_``: ndarray of shape (n_samples,), bool."""
        return self.score(target, X, y) >= self.threshold_

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(knowledge) before score()")

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (for records and reports)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

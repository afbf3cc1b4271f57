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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from miaudit._frozen import FrozenMemo
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.targets.base import Target
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

__all__ = ["Attack", "AttackerKnowledge", "FittedModel", "ModelTrainer", "check_records"]

ProgressCallback = Callable[[int, int], None]

#: the attacker's models' outputs on rows of its (read-only) population, and which record arrays are finite
_OUTPUTS = FrozenMemo(max_bytes=256 << 20)
_FINITE = FrozenMemo(max_bytes=1 << 20)


@runtime_checkable
class FittedModel(Protocol):
    """A trained model the attacker holds: records in, class probabilities out.

    :class:`~miaudit.training.networks.MLPParams` (the built-in MLPs) satisfies it, and so do the models of
    the family trainers in :mod:`miaudit.training.family` (scikit-learn estimators, PyTorch modules).
    """

    def predict_proba(self, X: np.ndarray, /) -> np.ndarray:
        """Class probabilities, ndarray of shape (n_samples, n_classes), of records of shape (n_samples, n_features)."""
        ...


class ModelTrainer(Protocol):
    """Trains one model per training set: the signature of :func:`miaudit.training.trainer.train_models`.

    Experiments pass a trainer that looks models up in a cache before training them
    (:class:`miaudit.studies.cache.CachingTrainer`); attacks never call ``train_models`` directly. A trainer
    returns any :class:`FittedModel`s (one per training set, in order): MLPs by default, models of the
    target's own family with :class:`~miaudit.training.family.SklearnFamily` or
    :class:`~miaudit.training.family_torch.TorchFamily`.
    """

    def __call__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        model: ModelSpec,
        train: TrainSpec,
        progress: ProgressCallback | None = None,
    ) -> Sequence[FittedModel]: ...


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
    trainer : ModelTrainer, default train_models
        How the attacker's shadow and reference models get trained (a cache may stand in front).
    """

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    model: ModelSpec
    train: TrainSpec
    trainer: ModelTrainer = train_models

    def __post_init__(self) -> None:
        X, y = check_records(self.X, self.y, n_classes=self.n_classes, n_features=self.model.n_features)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    @property
    def n_population(self) -> int:
        return len(self.y)

    def outputs(self, model: FittedModel, rows: np.ndarray) -> np.ndarray:
        """``model.predict_proba(self.X[rows])``: ndarray of shape (len(rows), n_classes), a fresh copy.

        Computed once per model and selection of rows while the population is read-only (experiments keep it
        so): nine shadows serve every shadow count from 2 to 9, and their outputs are then computed 9 times,
        not 44.
        """
        rows = np.asarray(rows)

        def predict() -> np.ndarray:
            return np.asarray(model.predict_proba(self.X[rows]))

        question = ("predict_proba", rows.dtype.str, rows.shape, rows.tobytes())
        return _OUTPUTS.get((self.X,), question, predict, owners=(model,)).copy()

    def train_models(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        progress: ProgressCallback | None = None,
    ) -> list[FittedModel]:
        """Train one model per training set (indices into ``X``) with the believed architecture and recipe."""
        return list(self.trainer(X, y, train_sets, seeds=seeds, model=self.model, train=self.train, progress=progress))


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
    if not _FINITE.get((X,), "finite", lambda: bool(np.isfinite(X).all())):
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
    #: constructor parameters that an experiment's shared settings (``n_shadows``, ``per_class``, ...) must not
    #: fill in, e.g. ML-Leaks' adversary 1 keeps its single shadow model whatever ``n_shadows`` a study sets
    setting_exclude: ClassVar[frozenset[str]] = frozenset()

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

    def check_params(self) -> None:
        """Check the constructor parameters now (``fit`` checks them too); ConfigError names a bad one."""
        self._validate()

    def _validate(self) -> None:  # noqa: B027 - optional hook: attacks without parameters need no checks
        """Subclasses check their parameters here."""

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(knowledge) before score()")

    def score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Membership scores from the target's outputs on the records, already obtained (no queries).

        Attacks whose score depends on the target's answers for the scored records alone (the shadow-model,
        threshold and ML-Leaks attacks) implement it; attacks that need the records themselves (LiRA trains
        reference models on them, RMIA also queries population records) raise ConfigError: score them
        with :meth:`score` and a target that answers from stored outputs instead.

        Parameters
        ----------
        P : ndarray of shape (n_samples, n_classes)
        y : ndarray of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        raise ConfigError(
            f"the {self.name or type(self).__name__} attack needs the records themselves, not only the target's "
            "outputs on them; call score(target, X, y)"
        )

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (for records and reports)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

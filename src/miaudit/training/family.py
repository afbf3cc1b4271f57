"""Shadow and reference models of the target's own family: scikit-learn estimators.

The attacks train their shadow, reference and pseudo-target models through a trainer with the signature of
:func:`~miaudit.training.trainer.train_models`. The default trains the built-in MLPs; an audit of a user's
scikit-learn model passes :class:`SklearnFamily` instead (and :class:`~miaudit.training.family_torch.TorchFamily`
for a PyTorch module, also importable from here), so that LiRA and RMIA compare the target with models like it:

>>> from sklearn.tree import DecisionTreeClassifier
>>> family = SklearnFamily(DecisionTreeClassifier(max_depth=3), n_classes=3, n_jobs=1)
>>> X = np.arange(24, dtype=np.float32).reshape(12, 2)
>>> y = np.arange(12) % 3
>>> models = family(X, y, [np.arange(6), np.arange(6, 12)], seeds=[0, 1], model=None, train=None)
>>> models[0].predict_proba(X[:2]).shape
(2, 3)

A family trainer ignores the ``model``/``train`` arguments (they describe MLPs) and returns
:class:`FittedEstimator`s, which answer ``predict_proba`` over all ``n_classes`` classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.seeding import check_seed

if TYPE_CHECKING:
    from miaudit.training.family_torch import TorchFamily as TorchFamily
    from miaudit.training.family_torch import TorchModel as TorchModel

__all__ = [
    "FittedEstimator",
    "SklearnFamily",
    "TorchFamily",
    "TorchModel",
    "check_family_inputs",
    "expand_classes",
    "sklearn_random_state",
]

logger = logging.getLogger(__name__)

#: ``progress(n_done, n_total)``, called as models finish.
ProgressCallback = Callable[[int, int], None]


def check_family_inputs(
    X: np.ndarray, y: np.ndarray, train_sets: Sequence[np.ndarray], seeds: Sequence[int], *, n_classes: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[int]]:
    """Validate a trainer's inputs; return X (2-d, finite), int64 y, int64 index arrays and int seeds.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_features)
    y : ndarray of shape (n_records,)
        Integer labels in [0, n_classes).
    train_sets : sequence of ndarray of shape (n_train_k,)
        Indices into X, one non-empty set per model.
    seeds : sequence of int
        One seed per model.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise DataError(f"X must be 2-d, of shape (n_records, n_features); got shape {X.shape}; flatten the records")
    if y.shape != (len(X),):
        raise DataError(f"y must have shape ({len(X)},) to match X; got {y.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
        raise DataError("X must hold finite numbers; clean NaN or infinite values first")
    if y.size and (not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"labels must be integers in [0, {n_classes - 1}]; got range [{y.min()}, {y.max()}]")
    if len(seeds) != len(train_sets):
        raise ValueError(f"need one seed per training set: {len(train_sets)} sets, {len(seeds)} seeds")
    sets = []
    for k, s in enumerate(train_sets):
        s = np.asarray(s)
        if s.ndim != 1 or (s.size and (not np.issubdtype(s.dtype, np.integer) or s.min() < 0 or s.max() >= len(X))):
            raise DataError(f"train_sets[{k}] must be a 1-d array of indices into X (0..{len(X) - 1})")
        if s.size == 0:
            raise DataError(f"train_sets[{k}] is empty; every model needs at least one record")
        sets.append(s.astype(np.int64, copy=False))
    return X, y.astype(np.int64, copy=False), sets, [check_seed(s, name=f"seeds[{k}]") for k, s in enumerate(seeds)]


def check_n_classes(n_classes: object) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    return int(n_classes)


def sklearn_random_state(seed: int) -> int:
    """The ``random_state`` a model with this seed gets: the seed modulo 2**32 (scikit-learn takes 32-bit seeds).

    >>> sklearn_random_state(7), sklearn_random_state(2**32 + 7)
    (7, 7)
    """
    return check_seed(seed) % 2**32


def expand_classes(P: np.ndarray, classes: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Spread an estimator's probability columns over all classes 0..n_classes-1; absent classes get 0.

    Parameters
    ----------
    P : ndarray of shape (n_samples, len(classes))
        Probabilities over the classes the estimator saw, in the order of ``classes``.
    classes : ndarray of shape (n_seen,)
        The estimator's ``classes_`` (integer labels).

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float64

    >>> expand_classes(np.array([[0.25, 0.75]]), np.array([0, 2]), n_classes=3)
    array([[0.25, 0.  , 0.75]])
    """
    out = np.zeros((len(P), n_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = P
    return out


def softmax_decisions(D: np.ndarray) -> np.ndarray:
    """Probabilities from ``decision_function`` values: a sigmoid for shape (n,) (two classes), else a softmax.

    Returns ndarray of shape (n_samples, 2) or (n_samples, n_seen), float64.

    >>> softmax_decisions(np.array([0.0]))
    array([[0.5, 0.5]])
    """
    D = np.asarray(D, dtype=np.float64)
    if D.ndim == 1:
        p1 = 1.0 / (1.0 + np.exp(-D))
        return np.column_stack([1.0 - p1, p1])
    Z = np.exp(D - D.max(axis=1, keepdims=True))
    return Z / Z.sum(axis=1, keepdims=True)


class FittedEstimator:
    """A fitted scikit-learn estimator answering probabilities over all ``n_classes`` classes.

    Attributes
    ----------
    estimator : fitted estimator
    n_classes : int
    """

    def __init__(self, estimator: Any, *, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise TrainingError(f"the fitted {type(estimator).__name__} has no classes_; the family needs a classifier")
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of records X of shape (n_samples, n_features): ndarray of shape (n_samples, n_classes),
        float64, zero in the columns of classes the estimator never saw."""
        est = self.estimator
        if hasattr(est, "predict_proba"):
            P = np.asarray(est.predict_proba(X), dtype=np.float64)
        else:
            P = softmax_decisions(est.decision_function(X))
        return expand_classes(P, self.classes_, n_classes=self.n_classes)


def _stable_repr(value: object) -> str:
    """A repr without memory addresses: estimators by class (their parameters are listed flat), functions by name."""
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        return f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, list | tuple):
        inner = ", ".join(_stable_repr(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_stable_repr(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, np.ndarray):
        return f"array({value.tolist()!r}, {value.dtype})"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def _fit_one(estimator: Any, X: np.ndarray, y: np.ndarray, idx: np.ndarray, seed: int, k: int) -> Any:
    from sklearn.base import clone

    est = clone(estimator)
    keys = [name for name in est.get_params(deep=True) if name.endswith("random_state")]
    if keys:
        est.set_params(**dict.fromkeys(keys, sklearn_random_state(seed)))
    try:
        est.fit(X[idx], y[idx])
    except Exception as e:
        raise TrainingError(
            f"fitting model {k} ({type(estimator).__name__} on {len(idx)} records, "
            f"{len(np.unique(y[idx]))} classes) failed: {e}; give each model more records"
        ) from e
    return est


class SklearnFamily:
    """Trains shadow/reference models as clones of a scikit-learn estimator (a :class:`ModelTrainer`).

    Each model is ``sklearn.base.clone(estimator)`` with every parameter whose name ends in ``random_state``
    (also nested ones, e.g. a Pipeline step's ``clf__random_state``) set to the model's seed modulo 2**32,
    fitted on ``X[train_set], y[train_set]``. Models are fitted in parallel with joblib (results in order and
    the same whatever the number of jobs; a ``joblib.parallel_config(backend=...)`` around the call chooses the
    backend, processes by default).

    The models answer probabilities over all classes 0..n_classes-1 even when a training set lacked some
    class (those columns are 0). Estimators without ``predict_proba`` but with ``decision_function`` (e.g.
    ``LinearSVC``) answer a sigmoid (two classes) or a softmax of their decision values: a monotone score,
    not a calibrated probability.

    Parameters
    ----------
    estimator : scikit-learn classifier
        Unfitted; it is cloned, never fitted itself.
    n_classes : int
        Number of classes of the target.
    n_jobs : int, optional
        joblib workers; default all cores (-1). 1 fits in this process, one model after the other.
    """

    def __init__(self, estimator: Any, *, n_classes: int, n_jobs: int | None = None) -> None:
        if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
            raise TypeError(
                f"estimator must be a scikit-learn estimator (with fit and get_params); got {type(estimator).__name__}"
            )
        if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
            raise ConfigError(
                f"{type(estimator).__name__} has neither predict_proba nor decision_function; attacks need scores "
                "per class: use a classifier that has one (or wrap it in CalibratedClassifierCV)"
            )
        if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
            raise ConfigError(f"n_jobs must be a non-zero integer (-1: all cores) or None; got {n_jobs!r}")
        self.estimator = estimator
        self.n_classes = check_n_classes(n_classes)
        self.n_jobs = n_jobs

    @property
    def key(self) -> str:
        """A stable description for cache keys: the class, n_classes and the sorted parameters (no random_state).

        The models' random states come from their seeds, so the estimator's own ``random_state`` is left out.
        """
        est = self.estimator
        params = {k: v for k, v in est.get_params(deep=True).items() if not k.endswith("random_state")}
        body = ", ".join(f"{k}={_stable_repr(v)}" for k, v in sorted(params.items()))
        return f"sklearn:{type(est).__module__}.{type(est).__qualname__}(n_classes={self.n_classes}; {body})"

    def __repr__(self) -> str:
        return f"SklearnFamily({self.estimator!r}, n_classes={self.n_classes}, n_jobs={self.n_jobs})"

    def __call__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        train_sets: Sequence[np.ndarray],
        *,
        seeds: Sequence[int],
        model: object = None,
        train: object = None,
        progress: ProgressCallback | None = None,
    ) -> list[FittedEstimator]:
        """Fit one clone per training set.

        Parameters
        ----------
        X : ndarray of shape (n_records, n_features)
        y : ndarray of shape (n_records,)
            Integer labels in [0, n_classes).
        train_sets : sequence of ndarray of shape (n_train_k,)
            Indices into X of each model's training set; sizes may differ.
        seeds : sequence of int
            One seed per model: its ``random_state``.
        model, train : ignored
            The MLP architecture and recipe of the default trainer; the estimator fixes both here.
        progress : callable, optional
            ``progress(n_done, n_total)`` as models finish (in order).

        Returns
        -------
        list of FittedEstimator, one per training set, in order.
        """
        X, y, sets, seeds = check_family_inputs(X, y, train_sets, seeds, n_classes=self.n_classes)
        n = len(sets)
        logger.info("fitting %d %s models (n_jobs=%s)", n, type(self.estimator).__name__, self.n_jobs)
        out = []
        for k, est in enumerate(self._fit_all(X, y, sets, seeds)):
            out.append(FittedEstimator(est, n_classes=self.n_classes))
            if progress is not None:
                progress(k + 1, n)
        return out

    def _fit_all(self, X: np.ndarray, y: np.ndarray, sets: list[np.ndarray], seeds: list[int]) -> Iterator[Any]:
        n_jobs = -1 if self.n_jobs is None else self.n_jobs
        if n_jobs == 1 or len(sets) == 1:
            for k, (idx, seed) in enumerate(zip(sets, seeds, strict=True)):
                yield _fit_one(self.estimator, X, y, idx, seed, k)
            return
        from joblib import Parallel, delayed

        jobs = (
            delayed(_fit_one)(self.estimator, X, y, idx, seed, k)
            for k, (idx, seed) in enumerate(zip(sets, seeds, strict=True))
        )
        yield from Parallel(n_jobs=n_jobs, return_as="generator")(jobs)


def __getattr__(name: str) -> Any:
    """``TorchFamily`` and ``TorchModel`` live in :mod:`miaudit.training.family_torch`; importable from here too."""
    if name in ("TorchFamily", "TorchModel"):
        from miaudit.training import family_torch

        return getattr(family_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

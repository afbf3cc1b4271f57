"""The black box: what an attacker may see of a model.

A target is anything with ``predict_proba(X) -> ndarray of shape (n_samples, n_classes)``. Attacks
receive a target and nothing else of the model. :class:`BlackBox` is the base of our targets: it
validates every answer and counts the queries.

An answer is one of four kinds (:func:`describe_answers`), and all four are valid answers, not errors:

``probabilities``
    Each row is a probability vector (non-negative, summing to 1).
``rounded``
    Every value lies on a grid of ``d <= 4`` decimals (a rounding defence); rows sum to 1 up to the rounding.
``top_k``
    Each row keeps at most ``k < n_classes`` nonzero entries (a top-k defence); the rest of the mass is
    missing, so rows sum to at most 1. Rows are never renormalised here.
``labels``
    One-hot rows: the predicted label only.

What is rejected: a wrong shape, NaN or infinite values, negative values, rows summing to more than 1, and
rows summing to less than 1 that are not top-k rows: these are a model's logits, not its answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from miaudit.errors import DataError, TargetError

__all__ = [
    "ANSWER_KINDS",
    "AnswerKind",
    "AnswerProfile",
    "BlackBox",
    "Target",
    "check_probabilities",
    "describe_answers",
    "profile_answers",
]

#: what a target's answers can be; see the module docstring
AnswerKind = Literal["probabilities", "rounded", "top_k", "labels"]
ANSWER_KINDS: tuple[AnswerKind, ...] = ("probabilities", "rounded", "top_k", "labels")
#: the coarsest grid a rounding defence is recognised on (values on a grid of 10**-MAX_DECIMALS or coarser)
MAX_DECIMALS = 4
#: how far (in grid steps) a value may be from the grid and still count as rounded (float32 storage)
_GRID_TOL = 1e-3

LOGITS_HINT = "pass --output-kind logits or wrap with a softmax"


@runtime_checkable
class Target(Protocol):
    """The protocol attacks rely on."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): class probabilities for each record."""
        ...


@dataclass(frozen=True)
class AnswerProfile:
    """What a batch of answers reveals: its kind, and the grid and ``k`` where they apply.

    ``decimals`` is the coarsest grid (1..4 decimals) every value lies on, or None; ``k`` is the most
    nonzero entries of a row for ``top_k`` answers (1 for labels), else None.
    """

    kind: AnswerKind
    decimals: int | None = None
    k: int | None = None

    def __str__(self) -> str:
        grid = f"rounded to {self.decimals} decimal{'s' if self.decimals != 1 else ''}" if self.decimals else ""
        if self.kind == "labels":
            return "labels only (one-hot rows)"
        if self.kind == "top_k":
            return f"top-{self.k} probabilities (rows not renormalised)" + (f", {grid}" if grid else "")
        return grid or "probabilities"


def _as_answer(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] == 0:
        raise TargetError(f"answers must be an array of shape (n_samples, n_classes); got shape {P.shape}")
    if not np.isfinite(P).all():
        raise TargetError(f"answers contain {int((~np.isfinite(P)).sum())} NaN or infinite values")
    return P


def _grid_decimals(P: np.ndarray) -> int | None:
    """The coarsest number of decimals d in 0..MAX_DECIMALS with every value on the 10**-d grid, else None."""
    for d in range(MAX_DECIMALS + 1):
        scaled = P * 10.0**d
        if np.abs(scaled - np.round(scaled)).max(initial=0.0) <= _GRID_TOL:
            return d
    return None


def _rounding_slack(decimals: int | None, n_classes: int) -> float:
    """How far from 1 a row of values rounded to ``decimals`` decimals may sum (half a grid step per class)."""
    return 0.0 if decimals is None else 0.5 * 10.0**-decimals * n_classes


def _profile(P: np.ndarray, atol: float) -> AnswerProfile:
    """Classify finite, 2-D answers (see :func:`profile_answers`)."""
    n_classes = P.shape[1]
    if len(P) and np.all((np.abs(P) <= atol) | (np.abs(P - 1.0) <= atol)) and np.all((P > 0.5).sum(1) == 1):
        return AnswerProfile("labels", decimals=0, k=1)
    decimals = _grid_decimals(P)
    nonzero = (P > 0).sum(axis=1)
    k = int(nonzero.max(initial=0))
    slack = atol + _rounding_slack(decimals, n_classes)
    short = P.sum(axis=1) < 1.0 - slack
    if len(P) and 1 <= k < n_classes and (np.all(nonzero == k) or bool(short.any())):
        return AnswerProfile("top_k", decimals=decimals or None, k=k)
    if decimals:
        return AnswerProfile("rounded", decimals=decimals)
    return AnswerProfile("probabilities")


def profile_answers(P: np.ndarray, *, atol: float = 1e-3) -> AnswerProfile:
    """Describe a target's answers: their kind and, where they apply, the rounding grid and ``k``.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
        Answers of a target (finite).
    atol : float
        Tolerance of values and row sums.

    Returns
    -------
    AnswerProfile
        ``labels`` if every row is one-hot; ``top_k`` if each row has at most ``k < n_classes`` nonzero
        entries and either all rows have exactly ``k`` or some row misses mass; ``rounded`` if every value lies
        on a grid of 1 to 4 decimals; else ``probabilities``. The evidence grows with the batch: a handful
        of rows can look rounded by chance.

    >>> str(profile_answers(np.array([[0.5, 0.25, 0.0], [0.7, 0.0, 0.2]])))
    'top-2 probabilities (rows not renormalised), rounded to 2 decimals'
    >>> profile_answers(np.array([[0.0, 1.0], [1.0, 0.0]])).kind
    'labels'
    """
    return _profile(_as_answer(P), atol)


def describe_answers(P: np.ndarray, *, atol: float = 1e-3) -> AnswerKind:
    """The kind of a target's answers: "probabilities", "rounded", "top_k" or "labels".

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)

    >>> describe_answers(np.array([[0.12, 0.88], [0.5, 0.5]]))
    'rounded'
    >>> describe_answers(np.array([[0.123456, 0.876544]]))
    'probabilities'
    """
    return profile_answers(P, atol=atol).kind


def _check(
    P: np.ndarray, *, n_samples: int, n_classes: int | None = None, atol: float = 1e-3
) -> tuple[np.ndarray, AnswerProfile]:
    """:func:`check_probabilities` that also returns the answers' profile."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != n_samples or (n_classes is not None and P.shape[1] != n_classes):
        want = f"({n_samples}, {n_classes if n_classes is not None else 'n_classes'})"
        raise TargetError(f"the target answered an array of shape {P.shape}; expected {want}")
    if not np.isfinite(P).all():
        raise TargetError(
            f"the target answered {int((~np.isfinite(P)).sum())} NaN or infinite probabilities; "
            "check the model for numerical problems"
        )
    n_negative = int((-atol > P).sum())
    profile = _profile(P, atol) if n_negative == 0 else AnswerProfile("probabilities")
    sums = P.sum(axis=1)
    slack = atol + _rounding_slack(profile.decimals, P.shape[1])
    too_low = sums <= atol if profile.kind == "top_k" else sums < 1.0 - slack
    bad = (sums > 1.0 + slack) | too_low
    if n_negative or bad.any():
        found = [f"{n_negative} negative values"] if n_negative else []
        if bad.any():
            found.append(f"{int(bad.sum())} of {len(P)} rows summing to {sums.min():.4g}..{sums.max():.4g}")
        raise TargetError(
            "the model's outputs look like logits (negative values / rows not summing to 1): "
            f"{', '.join(found)}; {LOGITS_HINT}"
        )
    return np.clip(P, 0.0, 1.0), profile


def check_probabilities(
    P: np.ndarray, *, n_samples: int, n_classes: int | None = None, atol: float = 1e-3
) -> np.ndarray:
    """Validate a target's answer and return it as float64, clipped to [0, 1].

    Accepts the four kinds of answers of :func:`describe_answers` (probabilities, rounded, top-k rows
    summing to at most 1, one-hot labels).

    Parameters
    ----------
    P : array-like of shape (n_samples, n_classes)
    n_samples : int
        The number of records asked.
    n_classes : int, optional
        The number of classes expected.
    atol : float
        Tolerance of values and row sums (rounded answers get half a grid step per class more).

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float64

    Raises
    ------
    TargetError
        On a wrong shape, NaN or infinite values, or values that look like logits (negative values, rows
        summing to more than 1, or rows summing to less than 1 that are not top-k rows).
    """
    return _check(P, n_samples=n_samples, n_classes=n_classes, atol=atol)[0]


class BlackBox(ABC):
    """Base class of targets: validated answers and query counting.

    Subclasses implement :meth:`_predict_proba`. ``n_queries`` counts records answered and
    ``n_calls`` counts calls, both since construction or :meth:`reset_counts`. ``name`` names the
    model in errors (the class name unless given); ``answers_`` is the :class:`AnswerProfile` of the
    latest answer (None before the first).
    """

    def __init__(self, *, n_features: int, n_classes: int, name: str | None = None) -> None:
        self.n_features = n_features
        self.n_classes = n_classes
        self.name = name or type(self).__name__
        self.n_queries = 0
        self.n_calls = 0
        self.answers_: AnswerProfile | None = None

    @abstractmethod
    def _predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): the target's probabilities for each record.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Raises
        ------
        DataError
            If the queries have the wrong shape or non-finite values.
        TargetError
            If the model's answer is unusable; the message starts with the target's ``name``.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"queries must have shape (n_samples, {self.n_features}); got {X.shape}")
        if not np.isfinite(X).all():
            raise DataError("queries contain NaN or infinite values; clean the records before querying")
        answer = self._predict_proba(X)
        try:
            P, self.answers_ = _check(answer, n_samples=len(X), n_classes=self.n_classes)
        except TargetError as exc:
            raise TargetError(f"{self.name}: {exc}") from exc
        self.n_queries += len(X)
        self.n_calls += 1
        return P

    def reset_counts(self) -> None:
        self.n_queries = 0
        self.n_calls = 0

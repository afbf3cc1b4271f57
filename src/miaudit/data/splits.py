"""Disjoint membership splits: the target's members and non-members, and the attacker's population.

One pool of records (indices ``0 .. n - 1``) is permuted with ``make_rng(seed, "split")`` and cut
into consecutive blocks::

    | target_in | target_out | shadow 0 in | shadow 0 out | shadow 1 in | ... | rest |
                             \\__________________ population ______________________/

The target trains on ``target_in``; ``target_out`` are held-out non-members used to evaluate attacks;
the attacker only ever sees the population (data from the same distribution, disjoint from both).
Every index set is stored sorted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.errors import ConfigError, DataError
from miaudit.seeding import check_seed, make_rng

__all__ = ["MembershipSplit", "make_split", "random_halves"]

logger = logging.getLogger(__name__)


def _as_index_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of record indices, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise DataError(f"{name} must hold integer record indices, got dtype {array.dtype}")
    out = array.astype(np.int64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class MembershipSplit:
    """Index sets of a membership-inference experiment (all into one dataset).

    Parameters
    ----------
    target_in : ndarray of shape (n_target_in,)
        int64 indices of the target model's training set (the members).
    target_out : ndarray of shape (n_target_out,)
        Held-out non-members used to evaluate attacks.
    shadow_in : tuple of ndarray
        Per shadow model, the indices of its training set.
    shadow_out : tuple of ndarray
        Per shadow model, the indices of its held-out set.
    population : ndarray of shape (n_population,)
        Every index the attacker may use; all shadow sets are drawn from it, and it is disjoint from
        ``target_in`` and ``target_out``.
    seed : int
        The seed the split was drawn with.

    Notes
    -----
    Arrays are converted to read-only int64. Call :meth:`check_disjoint` to verify the invariants
    (:func:`make_split` and :meth:`from_dict` do).
    """

    target_in: np.ndarray
    target_out: np.ndarray
    shadow_in: tuple[np.ndarray, ...]
    shadow_out: tuple[np.ndarray, ...]
    population: np.ndarray
    seed: int

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "target_in", _as_index_array(self.target_in, "target_in"))
        set_(self, "target_out", _as_index_array(self.target_out, "target_out"))
        set_(self, "population", _as_index_array(self.population, "population"))
        set_(
            self,
            "shadow_in",
            tuple(_as_index_array(a, f"shadow_in[{i}]") for i, a in enumerate(self.shadow_in)),
        )
        set_(
            self,
            "shadow_out",
            tuple(_as_index_array(a, f"shadow_out[{i}]") for i, a in enumerate(self.shadow_out)),
        )
        if len(self.shadow_in) != len(self.shadow_out):
            raise DataError(
                f"shadow_in has {len(self.shadow_in)} sets but shadow_out has {len(self.shadow_out)}; "
                "give one training set and one held-out set per shadow model"
            )
        set_(self, "seed", check_seed(self.seed))

    @property
    def n_shadows(self) -> int:
        """Number of shadow models."""
        return len(self.shadow_in)

    def _named_sets(self) -> Iterator[tuple[str, np.ndarray]]:
        yield "target_in", self.target_in
        yield "target_out", self.target_out
        for i in range(self.n_shadows):
            yield f"shadow_in[{i}]", self.shadow_in[i]
            yield f"shadow_out[{i}]", self.shadow_out[i]

    def check_disjoint(self, n_records: int | None = None) -> None:
        """Verify the split's invariants.

        No index repeats within a set; ``target_in``, ``target_out`` and every shadow set are pairwise
        disjoint; every shadow set lies in ``population``, which is disjoint from the target sets; and,
        if ``n_records`` is given, every index lies in ``0 .. n_records - 1``.

        Parameters
        ----------
        n_records : int, optional
            Size of the dataset the indices refer to.

        Raises
        ------
        DataError
            Naming the first violated invariant and the sets involved.
        """
        sets = [*self._named_sets(), ("population", self.population)]
        for name, values in sets:
            if len(np.unique(values)) != len(values):
                raise DataError(f"split invalid: {name} contains repeated indices")
            if n_records is not None and values.size and (values.min() < 0 or values.max() >= n_records):
                raise DataError(
                    f"split invalid: {name} has indices from {values.min()} to {values.max()}, "
                    f"outside 0..{n_records - 1} (the dataset has {n_records} records); "
                    "was the split made for another dataset or class subset?"
                )
        named = list(self._named_sets())
        everything = np.concatenate([values for _, values in named])
        if len(np.unique(everything)) != len(everything):
            for i, (name_a, a) in enumerate(named):
                for name_b, b in named[i + 1 :]:
                    common = np.intersect1d(a, b)
                    if common.size:
                        raise DataError(
                            f"split invalid: {name_a} and {name_b} share {common.size} indices "
                            f"(e.g. {common[:5].tolist()}); they must be disjoint"
                        )
        for name, values in named[:2]:
            common = np.intersect1d(values, self.population)
            if common.size:
                raise DataError(
                    f"split invalid: {name} and population share {common.size} indices "
                    f"(e.g. {common[:5].tolist()}); the attacker's population must exclude the target's data"
                )
        for name, values in named[2:]:
            outside = np.setdiff1d(values, self.population)
            if outside.size:
                raise DataError(
                    f"split invalid: {name} has {outside.size} indices outside the population "
                    f"(e.g. {outside[:5].tolist()}); shadow data must come from the attacker's population"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of plain ints and lists (inverse of :meth:`from_dict`)."""
        return {
            "seed": self.seed,
            "target_in": self.target_in.tolist(),
            "target_out": self.target_out.tolist(),
            "shadow_in": [a.tolist() for a in self.shadow_in],
            "shadow_out": [a.tolist() for a in self.shadow_out],
            "population": self.population.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, check: bool = True) -> MembershipSplit:
        """Rebuild a split from :meth:`to_dict` output; with ``check``, verify it is disjoint.

        Raises
        ------
        DataError
            If a key is missing or the split violates its invariants.
        """
        keys = ("seed", "target_in", "target_out", "shadow_in", "shadow_out", "population")
        missing = [k for k in keys if k not in data]
        if missing:
            raise DataError(f"split dict lacks {', '.join(missing)}; expected the keys {', '.join(keys)}")
        split = cls(
            target_in=np.asarray(data["target_in"]),
            target_out=np.asarray(data["target_out"]),
            shadow_in=tuple(np.asarray(a) for a in data["shadow_in"]),
            shadow_out=tuple(np.asarray(a) for a in data["shadow_out"]),
            population=np.asarray(data["population"]),
            seed=data["seed"],
        )
        if check:
            split.check_disjoint()
        return split

    def fingerprint(self) -> str:
        """sha256 hex digest of the split's contents, for cache keys."""
        return hashlib.sha256(json.dumps(self.to_dict(), separators=(",", ":")).encode()).hexdigest()


def _check_size(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _stratified_blocks(
    pool: np.ndarray, y: np.ndarray, sizes: Sequence[int], rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cut the shuffled ``pool`` into blocks whose class proportions follow the remaining pool's.

    Each block's per-class quota is the largest-remainder rounding of
    ``size * remaining_c / remaining_total`` (exact integer arithmetic; ties broken at random), which
    never exceeds what is left of a class. Returns the blocks and the leftover indices.
    """
    labels = y[pool]
    classes = np.unique(labels)
    queues = [pool[labels == c] for c in classes]
    taken = np.zeros(len(classes), dtype=np.int64)
    remaining = np.array([len(q) for q in queues], dtype=np.int64)
    blocks = []
    for size in sizes:
        if size == 0:
            blocks.append(pool[:0])
            continue
        total = int(remaining.sum())
        scaled = size * remaining
        quota, frac = scaled // total, scaled % total
        extra = size - int(quota.sum())
        order = np.lexsort((rng.random(len(classes)), -frac))
        quota[order[:extra]] += 1
        blocks.append(np.concatenate([q[t : t + k] for q, t, k in zip(queues, taken, quota, strict=True)]))
        taken += quota
        remaining -= quota
    leftover = np.concatenate([q[t:] for q, t in zip(queues, taken, strict=True)])
    return blocks, leftover


def make_split(
    y: np.ndarray,
    *,
    target_size: int,
    n_shadows: int,
    shadow_train_size: int,
    shadow_test_size: int,
    seed: int,
    target_test_size: int | None = None,
    stratify: bool = False,
) -> MembershipSplit:
    """Draw disjoint target and shadow index sets from one dataset.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels of the dataset (only their number is used unless ``stratify``).
    target_size : int
        Members: records in the target's training set (>= 1).
    n_shadows : int
        Number of shadow models (>= 0; 0 means no shadow sets, e.g. for threshold attacks).
    shadow_train_size, shadow_test_size : int
        Per shadow model, records in its training and held-out sets (>= 1 when ``n_shadows > 0``).
    seed : int
        Seed; the permutation comes from ``make_rng(seed, "split")``.
    target_test_size : int, optional
        Held-out non-members for evaluation; defaults to ``target_size``.
    stratify : bool, default=False
        Give every set (nearly) the class proportions of the records still unassigned, instead of a
        plain random cut.

    Returns
    -------
    MembershipSplit
        Pairwise disjoint sets; the population is every record not in the target sets.

    Raises
    ------
    TypeError, ConfigError
        If a size is not an int, or out of range (the message names the parameter).
    DataError
        If ``y`` is not 1-D, or the dataset has fewer records than asked for (the message gives the
        breakdown and what to reduce).
    """
    seed = check_seed(seed)
    target_size = _check_size(target_size, "target_size", minimum=1)
    n_shadows = _check_size(n_shadows, "n_shadows", minimum=0)
    shadow_min = 1 if n_shadows > 0 else 0
    shadow_train_size = _check_size(shadow_train_size, "shadow_train_size", minimum=shadow_min)
    shadow_test_size = _check_size(shadow_test_size, "shadow_test_size", minimum=shadow_min)
    target_test_size = (
        target_size if target_test_size is None else _check_size(target_test_size, "target_test_size", minimum=1)
    )
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"y must be an ndarray of shape (n_samples,), got shape {y.shape}")
    n = len(y)
    shadow_total = n_shadows * (shadow_train_size + shadow_test_size)
    needed = target_size + target_test_size + shadow_total
    if needed > n:
        raise DataError(
            f"the split asks for {needed} records (target_size {target_size} + target_test_size "
            f"{target_test_size} + n_shadows {n_shadows} x (shadow_train_size {shadow_train_size} + "
            f"shadow_test_size {shadow_test_size}) = {shadow_total}) but the dataset has only {n}; "
            f"reduce one of these by {needed - n} in total, or use a larger dataset (more classes)"
        )
    rng = make_rng(seed, "split")
    pool = rng.permutation(n)
    sizes = [target_size, target_test_size]
    for _ in range(n_shadows):
        sizes += [shadow_train_size, shadow_test_size]
    if stratify:
        blocks, leftover = _stratified_blocks(pool, y, sizes, rng)
    else:
        bounds = np.cumsum([0, *sizes])
        blocks = [pool[a:b] for a, b in itertools.pairwise(bounds)]
        leftover = pool[bounds[-1] :]
    population = np.concatenate([*blocks[2:], leftover])
    split = MembershipSplit(
        target_in=np.sort(blocks[0]),
        target_out=np.sort(blocks[1]),
        shadow_in=tuple(np.sort(b) for b in blocks[2::2]),
        shadow_out=tuple(np.sort(b) for b in blocks[3::2]),
        population=np.sort(population),
        seed=seed,
    )
    split.check_disjoint(n)
    logger.debug(
        "split of %d records: target %d/%d, %d shadows x %d/%d, population %d",
        n,
        target_size,
        target_test_size,
        n_shadows,
        shadow_train_size,
        shadow_test_size,
        len(population),
    )
    return split


def random_halves(population: np.ndarray, n_models: int, *, seed: int) -> np.ndarray:
    """Assign each record to a random half of the models (LiRA's shadow-model design).

    As in Carlini et al.'s reference code, every record (column) independently draws a random
    ordering of the models and is IN for the first ``n_models // 2`` of them. For odd ``n_models``
    a record is IN for ``n_models // 2`` models at even positions and ``n_models // 2 + 1`` at odd
    positions, so every model trains on about half of the population.

    Parameters
    ----------
    population : ndarray of shape (n_population,)
        The candidate records (only their number is used).
    n_models : int
        Number of models (>= 1).
    seed : int
        Seed; draws come from ``make_rng(seed, "random_halves")``.

    Returns
    -------
    ndarray of shape (n_models, n_population)
        bool; ``keep[m, j]`` is True when record ``population[j]`` is in model ``m``'s training set.

    Raises
    ------
    DataError
        If ``population`` is not 1-D.
    TypeError, ConfigError
        If ``n_models`` is not an int >= 1.

    Examples
    --------
    >>> keep = random_halves(np.arange(6), 4, seed=0)
    >>> keep.shape, keep.sum(axis=0).tolist()
    ((4, 6), [2, 2, 2, 2, 2, 2])
    """
    n_models = _check_size(n_models, "n_models", minimum=1)
    seed = check_seed(seed)
    population = np.asarray(population)
    if population.ndim != 1:
        raise DataError(f"population must be a 1-D array of record indices, got shape {population.shape}")
    m = len(population)
    rng = make_rng(seed, "random_halves")
    order = rng.permuted(
        np.broadcast_to(np.arange(n_models, dtype=np.min_scalar_type(n_models))[:, None], (n_models, m)),
        axis=0,
    )
    k = np.full(m, n_models // 2)
    if n_models % 2:
        k[1::2] += 1
    return order < k[None, :]

"""Label-only attacks (Choquette-Choo et al. 2021): membership from predicted labels alone.

A label-only API answers the predicted class and nothing else. These attacks read only the argmax
of the target's answers, so they score a label-only, top-k, rounded or full-probability target alike
(rounding can turn a near tie into an exact tie, broken towards the lower class index).

``label-gap``
    The baseline (the "gap attack"): a record is a member when the target labels it correctly.
    Scores are 1 or 0; ties are ties. Its AUC is ``0.5 + (acc_members - acc_nonmembers) / 2``.
    One query per record.
``label-augment``
    Robustness of the label under data augmentation: the record and its transformed copies (shifts
    by ``|dx| + |dy| <= max_shift`` pixels, the vacated pixels set to 0, each also mirrored left to
    right with ``flips``); the score is the fraction of them the target labels correctly. Images only.
``label-noise``
    Robustness of the label under Gaussian noise: the record and ``n_copies`` copies with
    N(0, sigma^2) noise added to every feature; the score is the fraction labelled correctly. Any data.

Training records sit further from the decision boundary, so their labels survive perturbation more
often. The two robustness attacks query ``N + 1`` records per scored record (the record itself and its
N perturbed copies, :attr:`queries_per_record_`): with an HTTP target the query budget must allow it.
A :class:`~miaudit.errors.BudgetExhaustedError` raised by the target propagates unchanged.

Their thresholds (and label-noise's sigma, when not given) are calibrated on shadow models trained
with the attacker's knowledge, exactly as the threshold attacks do: each shadow's own members
against its held-out records, perturbed the same way and labelled by the shadow. The target's
members are never read. The shadows are those of :func:`~miaudit.attacks.shadow.train_shadows` with
the same sizes and seed (same sets, same seeds), so a study's model cache shares them.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, NamedTuple, Self, cast

import numpy as np

from miaudit.attacks.base import Attack, AttackerKnowledge, FittedModel, ProgressCallback
from miaudit.attacks.shadow import draw_shadow_sets
from miaudit.errors import ConfigError, DataError
from miaudit.metrics import auc, best_threshold
from miaudit.seeding import check_seed, derive_seed
from miaudit.targets.base import Target
from miaudit.targets.policies import record_keys

__all__ = [
    "SIGMA_GRID",
    "ImageLayout",
    "LabelAugmentAttack",
    "LabelGapAttack",
    "LabelNoiseAttack",
    "LabelRobustnessAttack",
    "augment_images",
    "correct_fraction",
    "feature_scale",
    "image_transforms",
    "noise_directions",
    "resolve_record_shape",
]

logger = logging.getLogger(__name__)

#: label-noise's candidate sigmas, as multiples of the population's feature scale (the root mean square of
#: the per-feature standard deviations); the one with the highest shadow AUC is chosen
SIGMA_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: at most about this many feature values are sent to a model in one call (queries are chunked by record)
QUERY_CHUNK_VALUES = 1 << 22

#: ``ask(Q) -> labels``: predicted labels, shape (n_queries,), of queries of shape (n_queries, n_features)
LabelOracle = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------ pure functions
def correct_fraction(labels: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fraction of each record's answers equal to its true label.

    Parameters
    ----------
    labels : ndarray of shape (n_samples, n_queries)
        Predicted labels of each record's queries.
    y : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,), float64 in [0, 1]

    >>> correct_fraction(np.array([[1, 1, 0, 1], [2, 0, 0, 0]]), np.array([1, 2])).tolist()
    [0.75, 0.25]
    """
    labels = np.asarray(labels)
    return (labels == np.asarray(y)[:, None]).mean(axis=1, dtype=np.float64)


def image_transforms(max_shift: int, flips: bool) -> list[tuple[bool, int, int]]:
    """The augmentations of label-augment as ``(flip, dy, dx)``, the identity first.

    Every shift with ``|dy| + |dx| <= max_shift`` (for ``max_shift=1``: the four one-pixel shifts, as in
    Choquette-Choo et al.'s code), each without and, with ``flips``, with a left-right mirror.

    >>> image_transforms(1, False)
    [(False, 0, 0), (False, -1, 0), (False, 0, -1), (False, 0, 1), (False, 1, 0)]
    >>> len(image_transforms(1, True)), len(image_transforms(2, True))
    (10, 26)
    """
    shifts = [
        (dy, dx)
        for dy in range(-max_shift, max_shift + 1)
        for dx in range(-max_shift, max_shift + 1)
        if abs(dy) + abs(dx) <= max_shift
    ]
    shifts.sort(key=lambda s: (s != (0, 0), s))
    return [(flip, dy, dx) for flip in ((False, True) if flips else (False,)) for dy, dx in shifts]


class ImageLayout(NamedTuple):
    """How a flattened image record is laid out."""

    height: int
    width: int
    channels: int
    channels_first: bool = False


def resolve_record_shape(record_shape: Sequence[int] | None, n_features: int) -> ImageLayout:
    """A record's image layout, checked against ``n_features``.

    ``record_shape`` is ``(height, width)``, ``(height, width, channels)`` (miaudit's image layout) or,
    when the first axis is at most 4 and the last is larger, ``(channels, height, width)`` (PyTorch's).
    None infers a square grey image when ``n_features`` is a perfect square.

    Raises
    ------
    ConfigError
        If the shape does not multiply to ``n_features``, is not 2-d or 3-d, or cannot be inferred.

    >>> tuple(resolve_record_shape(None, 64)), tuple(resolve_record_shape((3, 8, 8), 192))
    ((8, 8, 1, False), (8, 8, 3, True))
    """
    if record_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features or side < 2:
            raise ConfigError(
                f"label-augment needs images, but records of {n_features} features are not a square image; "
                "pass record_shape=(height, width[, channels]), or use label-noise for tabular records"
            )
        return ImageLayout(side, side, 1)
    if isinstance(record_shape, str) or not isinstance(record_shape, Sequence):
        raise ConfigError(f"record_shape must be a tuple of integers or None; got {record_shape!r}")
    shape = tuple(record_shape)
    if not 2 <= len(shape) <= 3 or not all(_is_int(s) for s in shape):
        raise ConfigError(
            f"record_shape must be (height, width) or (height, width, channels) of integers; got {record_shape!r}"
        )
    dims = tuple(int(s) for s in shape)
    if any(s < 1 for s in dims) or math.prod(dims) != n_features:
        raise ConfigError(
            f"record_shape {dims} holds {math.prod(dims)} values but the records have {n_features} features; "
            "pass the records' own shape"
        )
    if len(dims) == 2:
        return ImageLayout(dims[0], dims[1], 1)
    if dims[0] <= 4 < dims[2]:
        return ImageLayout(dims[1], dims[2], dims[0], channels_first=True)
    return ImageLayout(dims[0], dims[1], dims[2])


def augment_images(X: np.ndarray, layout: ImageLayout, transforms: Sequence[tuple[bool, int, int]]) -> np.ndarray:
    """Shifted (vacated pixels set to 0) and mirrored copies of flattened images.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    layout : ImageLayout
        From :func:`resolve_record_shape`.
    transforms : sequence of (flip, dy, dx)
        ``dy > 0`` moves the image down, ``dx > 0`` right; the mirror is applied first.

    Returns
    -------
    ndarray of shape (n_samples, n_transforms, n_features)

    >>> augment_images(np.arange(4.0)[None], ImageLayout(2, 2, 1), [(False, 0, 1), (True, 0, 0)]).tolist()
    [[[0.0, 0.0, 0.0, 2.0], [1.0, 0.0, 3.0, 2.0]]]
    """
    h, w, c, channels_first = layout
    n = len(X)
    imgs = X.reshape(n, c, h, w) if channels_first else X.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    out = np.zeros((n, len(transforms), c, h, w), dtype=X.dtype)
    for t, (flip, dy, dx) in enumerate(transforms):
        src = imgs[..., ::-1] if flip else imgs
        out[:, t, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = src[
            ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    if not channels_first:
        out = out.transpose(0, 1, 3, 4, 2)
    return out.reshape(n, len(transforms), h * w * c)


def noise_directions(X: np.ndarray, n_copies: int, *, seed: int) -> np.ndarray:
    """Standard normal noise for each record, a fixed function of the record's values and ``seed``.

    The same record gets the same noise in any batch and any call (its score does not depend on what it is
    scored with); another seed gives other noise.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_copies : int
    seed : int

    Returns
    -------
    ndarray of shape (n_samples, n_copies, n_features), float32
    """
    keys = record_keys(X, seed=seed)
    Z = np.empty((len(X), n_copies, X.shape[1]), dtype=np.float32)
    for i, key in enumerate(keys):
        Z[i] = np.random.default_rng(int(key)).standard_normal((n_copies, X.shape[1]), dtype=np.float32)
    return Z


def feature_scale(X: np.ndarray) -> float:
    """The root mean square of the per-feature standard deviations of ``X`` (n_samples, n_features).

    Computed in float64 over chunks of rows, so a large population is never copied whole.

    >>> feature_scale(np.array([[0.0, 0.0], [2.0, 4.0]]))  # standard deviations 1 and 2
    1.5811388300841898
    """
    total = np.zeros(X.shape[1])
    squares = np.zeros(X.shape[1])
    for start in range(0, len(X), 8192):
        chunk = X[start : start + 8192].astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    mean = total / max(1, len(X))
    return float(np.sqrt(np.mean(np.clip(squares / max(1, len(X)) - mean**2, 0.0, None))))


def _record_chunks(n: int, per_record: int) -> Iterator[slice]:
    """Slices of records whose queries hold about :data:`QUERY_CHUNK_VALUES` values each."""
    step = max(1, QUERY_CHUNK_VALUES // max(1, per_record))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _model_oracle(model: FittedModel) -> LabelOracle:
    return lambda Q: np.asarray(model.predict_proba(Q)).argmax(axis=1)


# ------------------------------------------------------------------------------------ validation
def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_int(name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or cast(int, value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(cast(int, value))


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be True or False; got {value!r}")


def _check_classes(P: np.ndarray, n_classes: int) -> None:
    if P.ndim != 2 or P.shape[1] != n_classes:
        raise DataError(
            f"the target answers {P.shape[-1]} classes but the attacker's knowledge has {n_classes}; "
            "give the attacker the target's number of classes"
        )


# ------------------------------------------------------------------------------------ the gap attack
class LabelGapAttack(Attack):
    """The gap attack: a correctly labelled record is a member (score 1), a misclassified one is not (0).

    Needs no shadow model; ``fit`` only checks the parameters and notes the number of classes.

    Parameters
    ----------
    seed : int, default 0
        Unused (the attack is deterministic); taken so that every attack takes a seed.

    Attributes
    ----------
    threshold_ : float
        0.5: member when correctly labelled.
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting (one per scored record).
    """

    name = "label-gap"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def _validate(self) -> None:
        check_seed(self.seed)

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Check the parameters and keep the number of classes; nothing is trained."""
        self._validate()
        self.n_classes_ = int(knowledge.n_classes)
        self.threshold_ = 0.5
        self.n_queries_ = 0
        self.queries_per_record_ = 1
        self.fitted_ = True
        return self

    def score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        """1.0 where the answer's argmax is the true label, else 0.0: ndarray of shape (n_samples,).

        Parameters
        ----------
        P : ndarray of shape (n_samples, n_classes)
            Any answers: probabilities, top-k, rounded or one-hot labels.
        y : ndarray of shape (n_samples,)
        """
        self._check_fitted()
        P = np.asarray(P, dtype=np.float64)
        _check_classes(P, self.n_classes_)
        return (P.argmax(axis=1) == np.asarray(y)).astype(np.float64)

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        P = target.predict_proba(X)
        self.n_queries_ += len(X)
        return self.score_outputs(P, y)


# ------------------------------------------------------------------------------------ robustness attacks
class LabelRobustnessAttack(Attack):
    """Shared machinery: shadow models, chunked label queries, a threshold on the fraction correct.

    Subclasses give the queries of each record (:meth:`_queries`, the record itself first) under a setting
    (label-noise: a sigma; label-augment: None), and may offer several settings to choose from on the
    shadows (:meth:`_settings`): the one with the highest shadow AUC is kept, the first on ties.
    """

    progress_label: ClassVar[str] = "train shadows"

    n_shadows: int
    shadow_train_size: int
    shadow_test_size: int
    disjoint_shadows: bool
    seed: int
    queries_per_record_: int

    def _validate_shared(self) -> None:
        _check_int("n_shadows", self.n_shadows, 1)
        _check_int("shadow_train_size", self.shadow_train_size, 1)
        _check_int("shadow_test_size", self.shadow_test_size, 1)
        _check_bool("disjoint_shadows", self.disjoint_shadows)
        check_seed(self.seed)

    @abstractmethod
    def _settings(self, knowledge: AttackerKnowledge) -> list[float | None]:
        """Check what needs the knowledge, set ``queries_per_record_``; the candidate settings."""

    @abstractmethod
    def _queries(self, X: np.ndarray, settings: Sequence[float | None]) -> Iterator[np.ndarray]:
        """For each setting, the queries of each record: ndarray of shape (n_samples, N + 1, n_features)."""

    def _use(self, setting: float | None, aucs: np.ndarray) -> None:
        """Keep the chosen setting (and the shadow AUC of every candidate)."""

    def fraction_correct(
        self, ask: LabelOracle, X: np.ndarray, y: np.ndarray, settings: Sequence[float | None]
    ) -> np.ndarray:
        """The fraction of each record's N + 1 queries labelled ``y`` by ``ask``, for each setting.

        Returns
        -------
        ndarray of shape (n_settings, n_samples), float64
        """
        out = np.empty((len(settings), len(X)), dtype=np.float64)
        for rows in _record_chunks(len(X), self.queries_per_record_ * X.shape[1]):
            for j, Q in enumerate(self._queries(X[rows], settings)):
                m, q, d = Q.shape
                out[j, rows] = correct_fraction(np.asarray(ask(Q.reshape(m * q, d))).reshape(m, q), y[rows])
        return out

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Train the shadow models, score their members and held-out records, set the threshold."""
        self._validate()
        self.n_features_ = int(knowledge.model.n_features)
        self.n_classes_ = int(knowledge.n_classes)
        settings = self._settings(knowledge)
        sets = draw_shadow_sets(
            knowledge.n_population,
            n_shadows=self.n_shadows,
            train_size=self.shadow_train_size,
            test_size=self.shadow_test_size,
            seed=self.seed,
            disjoint=self.disjoint_shadows,
        )
        seeds = [derive_seed(self.seed, "shadow", k) for k in range(self.n_shadows)]  # as train_shadows
        models = knowledge.train_models(knowledge.X, knowledge.y, [s[0] for s in sets], seeds=seeds, progress=progress)
        member = np.concatenate([np.r_[np.ones(len(tr), bool), np.zeros(len(te), bool)] for tr, te in sets])
        S = np.concatenate(
            [
                self.fraction_correct(_model_oracle(m), knowledge.X[idx], knowledge.y[idx], settings)
                for m, idx in zip(models, (np.concatenate(s) for s in sets), strict=True)
            ],
            axis=1,
        )
        aucs = np.array([auc(member, s) for s in S])
        best = int(np.argmax(aucs))
        self._setting = settings[best]
        self._use(settings[best], aucs)
        self.threshold_ = best_threshold(member, S[best])
        self.shadow_auc_ = float(aucs[best])
        self.n_queries_ = 0
        self.fitted_ = True
        logger.info("%s: shadow AUC %.3f, threshold %.3f", self.name, self.shadow_auc_, self.threshold_)
        return self

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.n_features_:
            raise DataError(f"X must have {self.n_features_} features per record, as when fitted; got {X.shape[1]}")

        def ask(Q: np.ndarray) -> np.ndarray:
            P = np.asarray(target.predict_proba(Q))
            self.n_queries_ += len(Q)
            _check_classes(P, self.n_classes_)
            return P.argmax(axis=1)

        return self.fraction_correct(ask, X, y, [self._setting])[0]


class LabelAugmentAttack(LabelRobustnessAttack):
    """Robustness of the predicted label to shifts and flips of an image.

    Each record is queried as itself and as its N augmented copies (:func:`image_transforms`:
    ``N + 1 = 10`` queries with the defaults); the score is the fraction labelled correctly. It pays off
    most against models trained with such augmentations, as image models usually are.

    Parameters
    ----------
    record_shape : tuple of int, optional
        ``(height, width)``, ``(height, width, channels)`` or ``(channels, height, width)`` (see
        :func:`resolve_record_shape`); None: a square grey image, else ConfigError.
    max_shift : int, default 1
        Largest shift in pixels (``|dx| + |dy| <= max_shift``); 0 for flips only.
    flips : bool, default True
        Also query each shift mirrored left to right.
    n_shadows : int, default 1
    shadow_train_size, shadow_test_size : int, default 3000, 2000
    disjoint_shadows : bool, default True
        As for the threshold attacks (:func:`~miaudit.attacks.shadow.train_shadows`).
    seed : int, default 0
        Fixes the shadows (the augmentations are not random).

    Attributes
    ----------
    layout_ : ImageLayout
    transforms_ : list of (flip, dy, dx)
        The queried transforms, the identity first.
    queries_per_record_ : int
        ``len(transforms_)``.
    threshold_ : float
        The fraction maximising balanced accuracy on the shadows.
    shadow_auc_ : float
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting.
    """

    name = "label-augment"

    def __init__(
        self,
        *,
        record_shape: tuple[int, ...] | None = None,
        max_shift: int = 1,
        flips: bool = True,
        n_shadows: int = 1,
        shadow_train_size: int = 3000,
        shadow_test_size: int = 2000,
        disjoint_shadows: bool = True,
        seed: int = 0,
    ) -> None:
        self.record_shape = record_shape
        self.max_shift = max_shift
        self.flips = flips
        self.n_shadows = n_shadows
        self.shadow_train_size = shadow_train_size
        self.shadow_test_size = shadow_test_size
        self.disjoint_shadows = disjoint_shadows
        self.seed = seed

    def _validate(self) -> None:
        self._validate_shared()
        shift = _check_int("max_shift", self.max_shift, 0)
        _check_bool("flips", self.flips)
        if shift == 0 and not self.flips:
            raise ConfigError("max_shift=0 with flips=False leaves no augmentation to query; use label-gap for that")
        shape = self.record_shape
        if shape is not None:  # checked alone here; against the records' width in fit
            whole = not isinstance(shape, str) and isinstance(shape, Sequence) and all(_is_int(s) for s in shape)
            resolve_record_shape(shape, math.prod(shape) if whole else -1)

    def _settings(self, knowledge: AttackerKnowledge) -> list[float | None]:
        layout = resolve_record_shape(self.record_shape, self.n_features_)
        if self.max_shift >= min(layout.height, layout.width):
            raise ConfigError(
                f"max_shift={self.max_shift} moves a {layout.height}x{layout.width} image out of view; "
                f"choose max_shift < {min(layout.height, layout.width)}"
            )
        if self.record_shape is None:
            logger.info("label-augment: records of %d features read as %dx%d images", self.n_features_, *layout[:2])
        self.layout_ = layout
        self.transforms_ = image_transforms(int(self.max_shift), bool(self.flips))
        self.queries_per_record_ = len(self.transforms_)
        return [None]

    def _queries(self, X: np.ndarray, settings: Sequence[float | None]) -> Iterator[np.ndarray]:
        yield augment_images(X, self.layout_, self.transforms_)


class LabelNoiseAttack(LabelRobustnessAttack):
    """Robustness of the predicted label to Gaussian noise on the features.

    Each record is queried as itself and as ``n_copies`` copies with N(0, sigma^2) noise added to every
    feature (:func:`noise_directions`: the noise is a function of the record and the seed); the score is
    the fraction of the ``n_copies + 1`` answers that are correct.

    Parameters
    ----------
    sigma : float, optional
        The noise's standard deviation, in the records' units. None (default): the sigma of
        :data:`SIGMA_GRID` (times the population's feature scale) whose AUC on the shadow models is
        highest, the smallest on ties. Every candidate is tried on the same noise directions.
    n_copies : int, default 20
        Noisy copies per record (``n_copies + 1`` queries per record).
    n_shadows : int, default 1
    shadow_train_size, shadow_test_size : int, default 3000, 2000
    disjoint_shadows : bool, default True
    seed : int, default 0
        Fixes the shadows and the noise.

    Attributes
    ----------
    sigma_ : float
        The sigma used.
    sigma_grid_, grid_auc_ : ndarray of shape (n_sigmas,)
        The candidate sigmas and their shadow AUCs (the given sigma alone when ``sigma`` is set).
    queries_per_record_ : int
        ``n_copies + 1``.
    threshold_ : float
        The fraction maximising balanced accuracy on the shadows, at ``sigma_``.
    shadow_auc_ : float
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting.
    """

    name = "label-noise"

    def __init__(
        self,
        *,
        sigma: float | None = None,
        n_copies: int = 20,
        n_shadows: int = 1,
        shadow_train_size: int = 3000,
        shadow_test_size: int = 2000,
        disjoint_shadows: bool = True,
        seed: int = 0,
    ) -> None:
        self.sigma = sigma
        self.n_copies = n_copies
        self.n_shadows = n_shadows
        self.shadow_train_size = shadow_train_size
        self.shadow_test_size = shadow_test_size
        self.disjoint_shadows = disjoint_shadows
        self.seed = seed

    def _validate(self) -> None:
        self._validate_shared()
        _check_int("n_copies", self.n_copies, 1)
        s = self.sigma
        if s is not None and (
            isinstance(s, bool) or not isinstance(s, int | float | np.integer | np.floating) or not 0 < s < math.inf
        ):
            raise ConfigError(f"sigma must be a finite number > 0, or None to calibrate it on the shadows; got {s!r}")

    def _settings(self, knowledge: AttackerKnowledge) -> list[float | None]:
        self.queries_per_record_ = int(self.n_copies) + 1
        if self.sigma is not None:
            self.sigma_grid_ = np.array([float(self.sigma)])
        else:
            scale = feature_scale(knowledge.X)
            self.sigma_grid_ = np.array(SIGMA_GRID) * (scale if scale > 0 else 1.0)
        return [float(s) for s in self.sigma_grid_]

    def _queries(self, X: np.ndarray, settings: Sequence[float | None]) -> Iterator[np.ndarray]:
        Z = noise_directions(X, int(self.n_copies), seed=derive_seed(self.seed, "label-noise"))
        for sigma in settings:
            yield np.concatenate([X[:, None, :], X[:, None, :] + np.float32(sigma) * Z], axis=1)

    def _use(self, setting: float | None, aucs: np.ndarray) -> None:
        self.sigma_ = float(cast(float, setting))
        self.grid_auc_ = aucs

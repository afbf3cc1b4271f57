"""The shadow-model attack of Shokri et al. (2017), as run by the seed study.

The attacker trains N shadow models on disjoint subsets of its own data with the target's believed
recipe, records each shadow's outputs on its training records ("in") and on held-out records
("out"), and fits an attack classifier on those labelled outputs, one for all classes or one per
class. The classifier then judges the target's outputs.

Shadow training is separate from classifier fitting (:func:`train_shadows`,
:meth:`ShadowModelAttack.fit_shadow_data`) so experiments can train nine shadows once and fit
attacks on the first 2, 3, ..., 9 of them.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from miaudit.attacks.base import Attack, AttackerKnowledge, ProgressCallback
from miaudit.attacks.classifiers import (
    ATTACK_MODELS,
    FEATURE_SETS,
    attack_features,
    classifier_scores,
    make_attack_model,
    single_threaded_blas,
)
from miaudit.errors import ConfigError, DataError
from miaudit.seeding import check_seed, derive_seed, make_rng
from miaudit.targets.base import Target

__all__ = ["ShadowData", "ShadowModelAttack", "ShadowTrainedAttack", "draw_shadow_sets", "train_shadows"]

logger = logging.getLogger(__name__)

#: threads fitting a per-class attack's classifiers side by side (one model per thread)
FIT_THREADS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True, eq=False)
class ShadowData:
    """Shadow models' outputs on their own members and non-members.

    Attributes
    ----------
    probs : ndarray of shape (n_records, n_classes)
    labels : ndarray of shape (n_records,)
        True class labels of the records.
    is_member : ndarray of shape (n_records,), bool
        Whether the record was in the training set of the shadow that produced the row.
    shadow_id : ndarray of shape (n_records,), int
        Which shadow model produced the row (0..n_shadows-1).
    """

    probs: np.ndarray
    labels: np.ndarray
    is_member: np.ndarray
    shadow_id: np.ndarray

    @property
    def n_shadows(self) -> int:
        return int(self.shadow_id.max()) + 1 if self.shadow_id.size else 0

    def first(self, n_shadows: int) -> ShadowData:
        """The rows of shadows 0..n_shadows-1 only."""
        if not 1 <= n_shadows <= self.n_shadows:
            raise ConfigError(f"n_shadows must be in [1, {self.n_shadows}]; got {n_shadows}")
        keep = self.shadow_id < n_shadows
        return ShadowData(self.probs[keep], self.labels[keep], self.is_member[keep], self.shadow_id[keep])


def draw_shadow_sets(
    n_population: int, *, n_shadows: int, train_size: int, test_size: int, seed: int, disjoint: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index sets into the attacker's population, one pair per shadow model.

    With ``disjoint`` (the seed study's setup) all sets of all shadows are pairwise disjoint. Without
    it, each shadow draws its own train and held-out sets (disjoint from each other) independently,
    so different shadows may share records, as Shokri et al. allow; this needs only
    ``train_size + test_size`` records in the population.

    Shadow k's sets depend only on ``seed`` and k, so the first n shadows of a larger draw are the
    shadows of a draw of n.
    """
    for name, value in (
        ("n_shadows", n_shadows),
        ("shadow_train_size", train_size),
        ("shadow_test_size", test_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    need = (n_shadows if disjoint else 1) * (train_size + test_size)
    if need > n_population:
        raise DataError(
            f"{n_shadows if disjoint else 1} shadow models x ({train_size} train + {test_size} held-out) "
            f"= {need} records are needed, but the attacker's population has only {n_population}; "
            "use fewer shadows or smaller shadow sets, or a smaller target"
        )
    if not disjoint:
        out = []
        for k in range(n_shadows):
            draw = make_rng(seed, "shadow-sets", k).permutation(n_population)[: train_size + test_size]
            out.append((draw[:train_size], draw[train_size:]))
        return out
    perm = make_rng(seed, "shadow-sets").permutation(n_population)
    out = []
    for k in range(n_shadows):
        start = k * (train_size + test_size)
        out.append((perm[start : start + train_size], perm[start + train_size : start + train_size + test_size]))
    return out


def train_shadows(
    knowledge: AttackerKnowledge,
    *,
    n_shadows: int,
    train_size: int,
    test_size: int,
    seed: int,
    disjoint: bool = True,
    progress: ProgressCallback | None = None,
) -> ShadowData:
    """Train shadow models with the attacker's recipe and collect their in/out outputs.

    The sets come from :func:`draw_shadow_sets` (``disjoint`` as there), shadow k's seed from
    ``derive_seed(seed, "shadow", k)``: the first n shadows of a larger draw are the same models.
    """
    sets = draw_shadow_sets(
        knowledge.n_population,
        n_shadows=n_shadows,
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        disjoint=disjoint,
    )
    seeds = [derive_seed(seed, "shadow", k) for k in range(n_shadows)]
    models = knowledge.train_models(knowledge.X, knowledge.y, [s[0] for s in sets], seeds=seeds, progress=progress)
    probs, labels, member, sid = [], [], [], []
    for k, (model, (tr, te)) in enumerate(zip(models, sets, strict=True)):
        idx = np.concatenate([tr, te])
        probs.append(knowledge.outputs(model, idx))
        labels.append(knowledge.y[idx])
        member.append(np.r_[np.ones(len(tr), bool), np.zeros(len(te), bool)])
        sid.append(np.full(len(idx), k))
    return ShadowData(np.concatenate(probs), np.concatenate(labels), np.concatenate(member), np.concatenate(sid))


class ShadowTrainedAttack(Attack):
    """An attack learned from shadow models' outputs.

    ``fit`` trains ``n_shadows`` shadow models on the attacker's population (each on
    ``shadow_train_size`` records, with ``shadow_test_size`` held out) and hands their in/out
    outputs to :meth:`fit_shadow_data`, which experiments may also call directly with shadow outputs
    already computed (nine shadows trained once serve every shadow count). Subclasses implement
    :meth:`_fit_shadow_data` and :meth:`_validate`.
    """

    n_shadows: int
    shadow_train_size: int
    shadow_test_size: int
    seed: int
    n_classes_: int
    #: draw every shadow's sets from disjoint records (see :func:`draw_shadow_sets`); subclasses may take it as a
    #: constructor parameter
    disjoint_shadows: bool = True

    def _validate(self) -> None:
        check_seed(self.seed)

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Train the shadow models on the attacker's population, then learn from their outputs."""
        self._validate()
        data = train_shadows(
            knowledge,
            n_shadows=self.n_shadows,
            train_size=self.shadow_train_size,
            test_size=self.shadow_test_size,
            seed=self.seed,
            disjoint=self.disjoint_shadows,
            progress=progress,
        )
        return self.fit_shadow_data(data)

    def fit_shadow_data(self, data: ShadowData) -> Self:
        """Learn from shadow outputs already computed (no shadow training)."""
        self._validate()
        if data.is_member.all() or not data.is_member.any():
            raise DataError("shadow data must contain both members and non-members")
        return self._fit_shadow_data(data)

    @abstractmethod
    def _fit_shadow_data(self, data: ShadowData) -> Self: ...

    def score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Membership scores from probability vectors already obtained from the target (no queries).

        Parameters
        ----------
        P : ndarray of shape (n_samples, n_classes)
        y : ndarray of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        self._check_fitted()
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.n_classes_:
            raise DataError(
                f"the target outputs {P.shape[-1]} classes but the shadow models had {self.n_classes_}; "
                "train the shadows with the target's number of classes"
            )
        return self._score_outputs(P, np.asarray(y))

    @abstractmethod
    def _score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        P = target.predict_proba(X)
        self.n_queries_ = getattr(self, "n_queries_", 0) + len(X)
        return self.score_outputs(P, y)


class ShadowModelAttack(ShadowTrainedAttack):
    """Shokri et al.'s shadow-model attack.

    Parameters
    ----------
    n_shadows : int, default 6
        Number of shadow models (the seed's best setting is 6).
    shadow_train_size, shadow_test_size : int, default 3000, 2000
        Records each shadow is trained on, and held out from it.
    attack_model : {"lr", "tree", "linear-svm", "rbf-svm"}, default "linear-svm"
        The attack classifier.
    per_class : bool, default False
        One attack classifier per true class (as in Shokri et al.) instead of one for all.
    features : str, default "rich"
        Feature set of the attack classifier, see :data:`~miaudit.attacks.classifiers.FEATURE_SETS`.
    max_train_samples : int or None, default None
        Fit each attack classifier on at most this many shadow records (a class-stratified random
        subsample). Kernel SVMs cost roughly the square of their training set; this keeps the RBF
        SVM fast at 9 shadows x 5,000 records at a measured, small cost in accuracy.
    disjoint_shadows : bool, default True
        Draw the shadows' sets from disjoint records (the seed study's setup); False lets shadows share
        records, for populations too small for disjoint sets (see :func:`draw_shadow_sets`).
    seed : int, default 0
        Fixes the shadow data, the shadows' training and the classifiers.

    Attributes
    ----------
    attack_models_ : dict
        Fitted classifiers; key ``None`` is the global model, class labels key per-class models.
    threshold_ : float
        0.0: scores are on a log-odds scale.
    n_shadow_records_ : int
    """

    name = "shokri"

    def __init__(
        self,
        *,
        n_shadows: int = 6,
        shadow_train_size: int = 3000,
        shadow_test_size: int = 2000,
        attack_model: str = "linear-svm",
        per_class: bool = False,
        features: str = "rich",
        max_train_samples: int | None = None,
        disjoint_shadows: bool = True,
        seed: int = 0,
    ) -> None:
        self.n_shadows = n_shadows
        self.shadow_train_size = shadow_train_size
        self.shadow_test_size = shadow_test_size
        self.attack_model = attack_model
        self.per_class = per_class
        self.features = features
        self.max_train_samples = max_train_samples
        self.disjoint_shadows = disjoint_shadows
        self.seed = seed

    def _validate(self) -> None:
        if self.attack_model not in ATTACK_MODELS:
            raise ConfigError(f"unknown attack model {self.attack_model!r}; choose one of: {', '.join(ATTACK_MODELS)}")
        if self.features not in FEATURE_SETS:
            raise ConfigError(f"unknown feature set {self.features!r}; choose one of: {', '.join(FEATURE_SETS)}")
        check_seed(self.seed)
        cap = self.max_train_samples
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 10):
            raise ConfigError(f"max_train_samples must be None or an integer >= 10; got {cap!r}")

    def _fit_shadow_data(self, data: ShadowData) -> Self:
        """Fit the attack classifier(s) on shadow outputs already computed.

        Each classifier's features are computed on its own (subsampled) rows only, and the global and
        per-class classifiers are fitted on :data:`FIT_THREADS` threads (libsvm, liblinear and the tree
        release the GIL); each fit is independent, so the models are those of fitting them one by one.
        BLAS runs on one thread meanwhile (:func:`~miaudit.attacks.classifiers.single_threaded_blas`).
        """
        target = data.is_member.astype(int)
        seed = derive_seed(self.seed, "attack-model") % 2**32  # scikit-learn takes 32-bit seeds
        jobs: list[tuple[int | None, np.ndarray]] = [(None, self._subsample(target, np.ones(len(target), bool), "all"))]
        if self.per_class:
            for c in np.unique(data.labels):
                in_class = data.labels == c
                if len(np.unique(target[in_class])) < 2:
                    logger.warning(
                        "class %d has only one membership label in the shadow data; using the global model", c
                    )
                    continue
                jobs.append((int(c), self._subsample(target, in_class, int(c))))

        def fit_one(job: tuple[int | None, np.ndarray]) -> tuple[int | None, Any]:
            key, rows = job
            F = attack_features(data.probs[rows], data.labels[rows], features=self.features)
            return key, make_attack_model(self.attack_model, seed=seed).fit(F, target[rows])

        workers = min(FIT_THREADS, len(jobs))
        with single_threaded_blas():
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miaudit-attack-fit") as pool:
                    models: dict[Any, Any] = dict(pool.map(fit_one, jobs))
            else:
                models = dict(map(fit_one, jobs))
        self.attack_models_ = models
        self.n_shadow_records_ = len(target)
        self.n_classes_ = data.probs.shape[1]
        self.threshold_ = 0.0
        self.fitted_ = True
        return self

    def _subsample(self, target: np.ndarray, mask: np.ndarray, key: str | int) -> np.ndarray:
        """Indices of the rows in ``mask``, class-stratified-subsampled to ``max_train_samples``."""
        rows = np.flatnonzero(mask)
        cap = self.max_train_samples
        if cap is None or len(rows) <= cap:
            return rows
        rng = make_rng(self.seed, "subsample", key)
        keep = []
        for label in (0, 1):
            these = rows[target[rows] == label]
            n = max(1, round(cap * len(these) / len(rows)))
            keep.append(rng.choice(these, size=min(n, len(these)), replace=False))
        return np.sort(np.concatenate(keep))

    def _score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        F = attack_features(P, y, features=self.features)
        with single_threaded_blas():
            s = classifier_scores(self.attack_models_[None], F)
            if self.per_class:
                for c, m in self.attack_models_.items():
                    if c is None:
                        continue
                    rows = y == c
                    if rows.any():
                        s[rows] = classifier_scores(m, F[rows])
        return s

"""The likelihood-ratio attack, LiRA (Carlini et al. 2022), online and offline.

Both compare the target's logit-scaled confidence ``phi`` on a record (:func:`logit_confidence`)
with the distribution of the same quantity across *reference models* trained by the attacker with
the believed recipe, fitted per record by a Gaussian.

``lira`` (online)
    The attacker knows the records it asks about, so at :meth:`~LiRAAttack.score` time it trains K
    reference models on random halves (:func:`~miaudit.data.splits.random_halves`) of a pool made
    of the candidate records and, if they are fewer than ``2 * ref_train_size``, records of its own
    population: each record is IN for about half of the models. The score is the log-likelihood
    ratio ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``; ``fit`` only validates and stores
    the knowledge. Every ``score`` call trains new reference models (on that call's records).
``lira-offline``
    :meth:`~LiRAOfflineAttack.fit` trains K reference models on random halves of a pool drawn from
    the population; none saw the records to be scored, so only the OUT distribution is fitted and
    the score is the one-sided test ``-log Pr[Z > phi]``, ``Z ~ N(mu_out, s_out)``.

With few models a per-record variance is noisy; a global variance (pooled over records, see
:func:`~miaudit.attacks.signals.pooled_std`) is used by default below 64 models, as the paper
advises. Reference models are trained with one :func:`~miaudit.training.trainer.train_models` call,
so the batched engine trains them together.

Offline attacks also train one *pseudo-target* on records none of the reference models saw, with
the same recipe, and attack it with known membership (its training records against as many held-out
ones): that sets the decision threshold (balanced accuracy) without touching the real target, and
for RMIA tunes its coefficient ``a``. :func:`train_offline_references` does this for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from miaudit.attacks.base import Attack, AttackerKnowledge, FittedModel, ProgressCallback
from miaudit.attacks.signals import (
    in_out_statistics,
    lira_offline_score,
    lira_online_score,
    logit_confidence,
    out_statistics,
    pooled_std,
    true_class_probability,
)
from miaudit.data.splits import random_halves
from miaudit.errors import ConfigError, DataError
from miaudit.metrics import auc, best_threshold
from miaudit.seeding import check_seed, derive_seed, make_rng
from miaudit.targets.base import Target

__all__ = [
    "LiRAAttack",
    "LiRAOfflineAttack",
    "OfflineReferences",
    "ReferenceAttack",
    "reference_phi",
    "reference_probabilities",
    "train_offline_references",
]

logger = logging.getLogger(__name__)

#: below this many reference models a global variance is the default
GLOBAL_VARIANCE_BELOW = 64


def _check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_fix_variance(value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"fix_variance must be True, False or None (automatic); got {value!r}")


def reference_phi(models: Sequence[FittedModel], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logit-scaled confidences of several models: ndarray of shape (n_models, n_samples).

    Computed from probabilities, as for the target, so reference and target signals are the same
    function of the model's output.
    """
    return np.stack([logit_confidence(m.predict_proba(X), y) for m in models])


def reference_probabilities(models: Sequence[FittedModel], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True-class probabilities of several models: ndarray of shape (n_models, n_samples)."""
    return np.stack([true_class_probability(m.predict_proba(X), y) for m in models])


@dataclass(frozen=True, eq=False)
class OfflineReferences:
    """Reference models trained on population halves, and a pseudo-target for calibration.

    All index arrays point into the attacker's population (``knowledge.X``) and are pairwise
    disjoint.

    Attributes
    ----------
    models : list of FittedModel
        The K reference models.
    keep : ndarray of shape (n_refs, n_pool), bool
        ``keep[m, j]``: ``pool[j]`` was in model m's training set.
    pool : ndarray of shape (n_pool,)
        The records the reference models were trained on (``2 * ref_train_size``).
    pseudo_target : FittedModel
        A model trained like the target on ``tune_in``.
    tune_in, tune_out : ndarray of shape (tune_size,)
        The pseudo-target's training records and as many held-out ones; no reference model saw them.
    extra : ndarray of shape (extra_size,)
        Records reserved for the attack (RMIA's population z), unseen by every model.
    """

    models: list[FittedModel]
    keep: np.ndarray
    pool: np.ndarray
    pseudo_target: FittedModel
    tune_in: np.ndarray
    tune_out: np.ndarray
    extra: np.ndarray


def train_offline_references(
    knowledge: AttackerKnowledge,
    *,
    n_refs: int,
    ref_train_size: int,
    tune_size: int,
    extra_size: int = 0,
    seed: int,
    what: str = "the offline attack",
    progress: ProgressCallback | None = None,
) -> OfflineReferences:
    """Draw disjoint record sets from the population and train reference models and a pseudo-target.

    The population is permuted (``make_rng(seed, "offline-layout")``) and cut into
    ``tune_in | tune_out | extra | pool``; the K reference models train on random halves of the
    pool (about ``ref_train_size`` records each), the pseudo-target on ``tune_in``. All K + 1 models
    are trained in one :func:`train_models` call.

    Raises
    ------
    DataError
        If the population has fewer than ``2 * tune_size + extra_size + 2 * ref_train_size`` records.
    """
    n_refs = _check_positive_int("n_refs", n_refs)
    ref_train_size = _check_positive_int("ref_train_size", ref_train_size)
    tune_size = _check_positive_int("tune_size", tune_size)
    extra_size = _check_positive_int("extra_size", extra_size, minimum=0)
    need = 2 * tune_size + extra_size + 2 * ref_train_size
    if need > knowledge.n_population:
        z_part = f" + {extra_size} population records z" if extra_size else ""
        raise DataError(
            f"{what} needs 2 x {tune_size} calibration records{z_part} + 2 x {ref_train_size} records for "
            f"the reference models' halves = {need} records, but the attacker's population has only "
            f"{knowledge.n_population}; use a smaller ref_train_size or tune_size"
        )
    perm = make_rng(seed, "offline-layout").permutation(knowledge.n_population)
    cuts = np.cumsum([tune_size, tune_size, extra_size, 2 * ref_train_size])
    tune_in, tune_out, extra, pool = np.split(perm[: cuts[-1]], cuts[:-1])
    keep = random_halves(pool, n_refs, seed=derive_seed(seed, "halves"))
    sets = [pool[keep[k]] for k in range(n_refs)] + [tune_in]
    seeds = [derive_seed(seed, "ref", k) for k in range(n_refs)] + [derive_seed(seed, "pseudo-target")]
    models = knowledge.train_models(knowledge.X, knowledge.y, sets, seeds=seeds, progress=progress)
    return OfflineReferences(
        models=models[:n_refs],
        keep=keep,
        pool=pool,
        pseudo_target=models[n_refs],
        tune_in=tune_in,
        tune_out=tune_out,
        extra=extra,
    )


class ReferenceAttack(Attack):
    """Shared parameter checks of the attacks that train reference models."""

    progress_label: ClassVar[str] = "train reference models"
    min_refs: ClassVar[int] = 1

    n_refs: int
    ref_train_size: int
    seed: int

    def _validate_refs(self) -> None:
        n = _check_positive_int("n_refs", self.n_refs)
        if n < self.min_refs:
            raise ConfigError(f"{self.name} needs n_refs >= {self.min_refs}; got {n}")
        _check_positive_int("ref_train_size", self.ref_train_size)
        check_seed(self.seed)

    def _validate(self) -> None:
        self._validate_refs()
        _check_fix_variance(getattr(self, "fix_variance", None))

    def _check_classes(self, P: np.ndarray, n_classes: int) -> None:
        if P.shape[1] != n_classes:
            raise DataError(
                f"the target outputs {P.shape[1]} classes but the reference models have {n_classes}; "
                "train them with the target's number of classes"
            )


class LiRAAttack(ReferenceAttack):
    """Online LiRA: per-record IN and OUT Gaussians from reference models trained at scoring time.

    Parameters
    ----------
    n_refs : int, default 16
        Reference models (at least 4: two IN and two OUT per record).
    ref_train_size : int, default 3000
        Records each reference model trains on (the believed size of the target's training set).
        The pool is the candidate records plus population records up to ``2 * ref_train_size``;
        when there are more candidates than that, each model trains on half of them.
    fix_variance : bool, optional
        One pooled variance per group instead of one per record; default: True below 64 models.
    seed : int, default 0
        Fixes the population padding, the halves and the reference models' training.

    Attributes
    ----------
    knowledge_ : AttackerKnowledge
    fix_variance_ : bool
    threshold_ : float
        0.0: the log-likelihood ratio at equal priors.
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting (each scored record once).
    n_models_trained_ : int
        Reference models trained by :meth:`score` since fitting.
    """

    name = "lira"
    min_refs = 4

    def __init__(
        self,
        *,
        n_refs: int = 16,
        ref_train_size: int = 3000,
        fix_variance: bool | None = None,
        seed: int = 0,
    ) -> None:
        self.n_refs = n_refs
        self.ref_train_size = ref_train_size
        self.fix_variance = fix_variance
        self.seed = seed

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Validate the parameters and keep the knowledge; reference models are trained by ``score``."""
        self._validate()
        self.knowledge_ = knowledge
        self.fix_variance_ = self.n_refs < GLOBAL_VARIANCE_BELOW if self.fix_variance is None else self.fix_variance
        self._progress = progress
        self.threshold_ = 0.0
        self.n_queries_ = 0
        self.n_models_trained_ = 0
        self.fitted_ = True
        return self

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        kn = self.knowledge_
        n = len(X)
        P = target.predict_proba(X)
        self.n_queries_ += n
        self._check_classes(P, kn.n_classes)
        n_pad = max(0, 2 * self.ref_train_size - n)
        if n_pad > kn.n_population:
            logger.warning(
                "online LiRA wants %d population records to pad the pool but has %d; using all",
                n_pad,
                kn.n_population,
            )
            n_pad = kn.n_population
        pad = np.sort(make_rng(self.seed, "lira-pad").choice(kn.n_population, size=n_pad, replace=False))
        X_pool = np.concatenate([X, kn.X[pad]])
        y_pool = np.concatenate([y, kn.y[pad]])
        keep = random_halves(np.arange(len(y_pool)), self.n_refs, seed=derive_seed(self.seed, "halves"))
        models = kn.train_models(
            X_pool,
            y_pool,
            [np.flatnonzero(keep[k]) for k in range(self.n_refs)],
            seeds=[derive_seed(self.seed, "ref", k) for k in range(self.n_refs)],
            progress=self._progress,
        )
        self.n_models_trained_ += self.n_refs
        phi_ref = reference_phi(models, X_pool, y_pool)
        mu_in, s_in, mu_out, s_out = in_out_statistics(phi_ref, keep, fix_variance=self.fix_variance_)
        phi = logit_confidence(P, y)
        return lira_online_score(phi, mu_in[:n], s_in[:n], mu_out[:n], s_out[:n])


class LiRAOfflineAttack(ReferenceAttack):
    """Offline LiRA: per-record OUT Gaussians from reference models trained on the population.

    Parameters
    ----------
    n_refs : int, default 16
        Reference models (at least 2).
    ref_train_size : int, default 3000
        Records each reference model trains on (the believed size of the target's training set).
    fix_variance : bool, optional
        One pooled variance for all records (estimated in ``fit`` on the calibration records)
        instead of one per record; default: True below 64 models.
    tune_size : int, optional
        Training records of the pseudo-target, and as many held-out ones (default
        ``ref_train_size``); the population must hold ``4 * ref_train_size`` records by default.
    seed : int, default 0

    Attributes
    ----------
    models_ : list of FittedModel
        The reference models.
    global_std_ : float or None
        The pooled standard deviation when ``fix_variance_``.
    threshold_ : float
        The score maximising balanced accuracy on the pseudo-target.
    tuning_auc_ : float
        AUC of the attack on the pseudo-target (a sanity check of the references).
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting (each scored record once).
    """

    name = "lira-offline"
    min_refs = 2

    def __init__(
        self,
        *,
        n_refs: int = 16,
        ref_train_size: int = 3000,
        fix_variance: bool | None = None,
        tune_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_refs = n_refs
        self.ref_train_size = ref_train_size
        self.fix_variance = fix_variance
        self.tune_size = tune_size
        self.seed = seed

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Train the reference models and the pseudo-target; set the variance and threshold."""
        self._validate()
        refs = train_offline_references(
            knowledge,
            n_refs=self.n_refs,
            ref_train_size=self.ref_train_size,
            tune_size=self.ref_train_size if self.tune_size is None else self.tune_size,
            seed=self.seed,
            what="offline LiRA",
            progress=progress,
        )
        fix = self.n_refs < GLOBAL_VARIANCE_BELOW if self.fix_variance is None else self.fix_variance
        tune = np.concatenate([refs.tune_in, refs.tune_out])
        member = np.r_[np.ones(len(refs.tune_in), bool), np.zeros(len(refs.tune_out), bool)]
        Xt, yt = knowledge.X[tune], knowledge.y[tune]
        phi_ref = reference_phi(refs.models, Xt, yt)
        self.global_std_ = pooled_std(phi_ref, np.ones_like(phi_ref, dtype=bool)) if fix else None
        mu, sd = out_statistics(phi_ref, global_std=self.global_std_)
        s = lira_offline_score(logit_confidence(refs.pseudo_target.predict_proba(Xt), yt), mu, sd)
        self.threshold_ = best_threshold(member, s)
        self.tuning_auc_ = auc(member, s)
        self.models_ = refs.models
        self.fix_variance_ = fix
        self.n_classes_ = knowledge.n_classes
        self.n_queries_ = 0
        self.fitted_ = True
        return self

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        mu, sd = out_statistics(reference_phi(self.models_, X, y), global_std=self.global_std_)
        P = target.predict_proba(X)
        self.n_queries_ += len(X)
        self._check_classes(P, self.n_classes_)
        return lira_offline_score(logit_confidence(P, y), mu, sd)

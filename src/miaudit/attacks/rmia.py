"""RMIA, the relative membership inference attack (Zarifzadeh et al. 2024), offline.

A record x is compared with population records z through likelihood ratios relative to the
reference models: ``ratio(x) = p_target(x) / Pr(x)`` where ``p`` is the probability of the true
class and ``Pr(x)`` the same averaged over models that did not train on x. Offline, all reference
models are OUT, and ``Pr(x) = ((1 + a) * mean_OUT(p_ref(x)) + (1 - a)) / 2`` approximates the
average over IN and OUT models. The score of x is the fraction of z with
``ratio(x) / ratio(z) > gamma`` (:func:`~miaudit.attacks.signals.rmia_offline_score`).

:meth:`RMIAAttack.fit` trains K reference models on random halves of a population pool and, on
records none of them saw, a pseudo-target (see :func:`~miaudit.attacks.lira.train_offline_references`);
attacking the pseudo-target with known membership chooses ``a`` from a grid (the AUC-maximising
value, as in the reference implementation, privacytrustlab/ml_privacy_meter) and the decision
threshold. A single reference model is enough. At :meth:`~RMIAAttack.score` time the target is
queried on the records to score and on the population records z, and the number of
queries is recorded.
"""

from __future__ import annotations

import logging
from typing import Self

import numpy as np

from miaudit.attacks.base import AttackerKnowledge, ProgressCallback
from miaudit.attacks.lira import ReferenceAttack, _check_positive_int, reference_probabilities, train_offline_references
from miaudit.attacks.signals import rmia_offline_score, true_class_probability
from miaudit.errors import ConfigError
from miaudit.metrics import auc, best_threshold
from miaudit.targets.base import Target

__all__ = ["A_GRID", "DEFAULT_Z_SIZE", "RMIAAttack"]

logger = logging.getLogger(__name__)

#: population records z by default
DEFAULT_Z_SIZE = 2000

#: values of the offline coefficient ``a`` tried when tuning
A_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


class RMIAAttack(ReferenceAttack):
    """Offline RMIA with ``a`` tuned on a pseudo-target.

    Parameters
    ----------
    n_refs : int, default 16
        Reference models (at least 1).
    ref_train_size : int, default 3000
        Records each reference model trains on (the believed size of the target's training set).
    z_size : int, optional
        Population records z the records are compared with (each costs one query per ``score``);
        default: :data:`DEFAULT_Z_SIZE`, or the population records left over by the calibration and
        reference sets if fewer.
    offline_a : float, optional
        Fix the coefficient ``a`` in [0, 1] instead of tuning it.
    gamma : float, default 1.0
        The pairwise likelihood-ratio threshold.
    tune_size : int, optional
        Training records of the pseudo-target, and as many held-out ones (default
        ``ref_train_size``); the population must hold ``4 * ref_train_size`` records plus the z.
    seed : int, default 0

    Attributes
    ----------
    a_ : float
        The coefficient used.
    tuning_auc_ : dict of float to float
        AUC on the pseudo-target for each ``a`` tried.
    threshold_ : float
        The score maximising balanced accuracy on the pseudo-target.
    models_ : list of FittedModel
    z_X_, z_y_ : ndarray of shape (z_size, n_features), (z_size,)
        The population records z.
    mean_out_z_ : ndarray of shape (z_size,)
        Mean true-class probability of the reference models on z.
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting: the scored records plus z per call.
    """

    name = "rmia"
    min_refs = 1

    def __init__(
        self,
        *,
        n_refs: int = 16,
        ref_train_size: int = 3000,
        z_size: int | None = None,
        offline_a: float | None = None,
        gamma: float = 1.0,
        tune_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_refs = n_refs
        self.ref_train_size = ref_train_size
        self.z_size = z_size
        self.offline_a = offline_a
        self.gamma = gamma
        self.tune_size = tune_size
        self.seed = seed

    def _validate(self) -> None:
        self._validate_refs()
        if self.z_size is not None:
            _check_positive_int("z_size", self.z_size)
        a = self.offline_a
        if a is not None and (isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a <= 1):
            raise ConfigError(f"offline_a must be a number in [0, 1] or None (tuned); got {a!r}")
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, int | float) or not g > 0:
            raise ConfigError(f"gamma must be a number > 0; got {g!r}")

    def fit(self, knowledge: AttackerKnowledge, *, progress: ProgressCallback | None = None) -> Self:
        """Train reference models and a pseudo-target on the population; tune ``a`` and the threshold."""
        self._validate()
        tune_size = self.ref_train_size if self.tune_size is None else self.tune_size
        z_size = self.z_size
        if z_size is None:
            left = knowledge.n_population - 2 * tune_size - 2 * self.ref_train_size
            z_size = max(1, min(DEFAULT_Z_SIZE, left))
        refs = train_offline_references(
            knowledge,
            n_refs=self.n_refs,
            ref_train_size=self.ref_train_size,
            tune_size=tune_size,
            extra_size=z_size,
            seed=self.seed,
            what="RMIA",
            progress=progress,
        )
        X, y = knowledge.X, knowledge.y
        z = refs.extra
        tune = np.concatenate([refs.tune_in, refs.tune_out])
        member = np.r_[np.ones(len(refs.tune_in), bool), np.zeros(len(refs.tune_out), bool)]
        mean_out_z = reference_probabilities(refs.models, X[z], y[z]).mean(axis=0)
        mean_out_t = reference_probabilities(refs.models, X[tune], y[tune]).mean(axis=0)
        p_t = true_class_probability(refs.pseudo_target.predict_proba(X[tune]), y[tune])
        p_z = true_class_probability(refs.pseudo_target.predict_proba(X[z]), y[z])
        grid = A_GRID if self.offline_a is None else (float(self.offline_a),)
        scores = {a: rmia_offline_score(p_t, mean_out_t, p_z, mean_out_z, a=a, gamma=self.gamma) for a in grid}
        aucs = {a: auc(member, s) for a, s in scores.items()}
        best = max(grid, key=lambda a: aucs[a])  # the first of equal maxima
        logger.info("RMIA: a = %.1f (pseudo-target AUC %.4f)", best, aucs[best])
        self.a_ = best
        self.tuning_auc_ = aucs
        self.threshold_ = best_threshold(member, scores[best])
        self.models_ = refs.models
        self.z_X_ = X[z]
        self.z_y_ = y[z]
        self.mean_out_z_ = mean_out_z
        self.n_classes_ = knowledge.n_classes
        self.n_queries_ = 0
        self.fitted_ = True
        return self

    def _score(self, target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        P_x = target.predict_proba(X)
        self._check_classes(P_x, self.n_classes_)
        P_z = target.predict_proba(self.z_X_)
        self.n_queries_ += len(X) + len(self.z_y_)
        mean_out_x = reference_probabilities(self.models_, X, y).mean(axis=0)
        return rmia_offline_score(
            true_class_probability(P_x, y),
            mean_out_x,
            true_class_probability(P_z, self.z_y_),
            self.mean_out_z_,
            a=self.a_,
            gamma=self.gamma,
        )

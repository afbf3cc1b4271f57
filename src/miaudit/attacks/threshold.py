"""Threshold attacks: one signal per record, one threshold (per class where the attack calls for it).

* ``loss`` (Yeom et al. 2018): members have a lower cross-entropy loss; one global threshold.
* ``confidence``, ``entropy``, ``modified-entropy`` (Song & Mittal 2021): the true-class
  confidence, the prediction entropy and the modified entropy, with class-dependent thresholds.

Every threshold comes from the attacker's own shadow models (trained on its population with the
believed recipe, as for the shadow-model attack): it is the cut of the shadows' signals that
maximises balanced accuracy between the shadows' members and non-members. The target's members are
never touched: :meth:`ThresholdAttack.fit` receives only the attacker's knowledge.

Scores are continuous, ``signal - threshold[class]`` oriented so that higher means member, so ROC
metrics apply and the hard decision is ``score >= 0`` for every class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar, Self

import numpy as np

from miaudit.attacks.shadow import ShadowData, ShadowTrainedAttack
from miaudit.attacks.signals import (
    cross_entropy,
    entropy,
    logit_confidence,
    modified_entropy,
)
from miaudit.errors import ConfigError
from miaudit.metrics import best_threshold
from miaudit.seeding import check_seed

__all__ = [
    "MEMBERSHIP_SIGNALS",
    "ConfidenceAttack",
    "EntropyAttack",
    "LossAttack",
    "ModifiedEntropyAttack",
    "ThresholdAttack",
    "membership_signal",
]

logger = logging.getLogger(__name__)

#: at least this many shadow records of each membership in a class for a per-class threshold
MIN_PER_CLASS = 10


def _neg_loss(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -cross_entropy(P, y)


def _neg_entropy(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -entropy(P)


def _neg_modified_entropy(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -modified_entropy(P, y)


#: name -> f(P, y), the signal oriented so that higher means member. ``confidence`` is the true
#: class's confidence on a logit scale: a monotone function of ``p_y``, so the same attack with the
#: same thresholds, but confidences that round to 1.0 in float64 stay ordered.
MEMBERSHIP_SIGNALS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "loss": _neg_loss,
    "confidence": logit_confidence,
    "entropy": _neg_entropy,
    "modified-entropy": _neg_modified_entropy,
}


def membership_signal(name: str, P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The signal ``name`` of :data:`MEMBERSHIP_SIGNALS`: ndarray of shape (n_samples,), higher = member.

    Parameters
    ----------
    name : str
    P : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,)
    """
    if name not in MEMBERSHIP_SIGNALS:
        raise ConfigError(f"unknown signal {name!r}; choose one of: {', '.join(MEMBERSHIP_SIGNALS)}")
    return np.asarray(MEMBERSHIP_SIGNALS[name](P, y), dtype=np.float64)


class ThresholdAttack(ShadowTrainedAttack):
    """A threshold on one per-record signal, calibrated on shadow models (base of the four attacks).

    Parameters
    ----------
    n_shadows : int, default 1
        Shadow models trained to calibrate the thresholds.
    shadow_train_size, shadow_test_size : int, default 3000, 2000
        Records each shadow trains on, and holds out.
    per_class : bool, optional
        One threshold per true class; default: the attack's own choice (:attr:`default_per_class`:
        False for ``loss``, True for the Song & Mittal attacks).
    disjoint_shadows : bool, default True
        Draw the shadows' sets from disjoint records (see :func:`~miaudit.attacks.shadow.draw_shadow_sets`).
    seed : int, default 0
        Fixes the shadow data and the shadows' training.

    Attributes
    ----------
    thresholds_ : ndarray of shape (n_classes,)
        The signal's threshold for each class (all equal without per-class thresholds).
    global_threshold_ : float
    per_class_ : bool
        Whether per-class thresholds were used.
    threshold_ : float
        0.0: scores are ``signal - thresholds_[y]``.
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting.
    """

    #: key of :data:`MEMBERSHIP_SIGNALS`
    signal: ClassVar[str] = ""
    #: per-class thresholds unless the caller says otherwise
    default_per_class: ClassVar[bool] = True
    #: label of the fitting stage in progress reports
    progress_label: ClassVar[str] = "train shadows"

    def __init__(
        self,
        *,
        n_shadows: int = 1,
        shadow_train_size: int = 3000,
        shadow_test_size: int = 2000,
        per_class: bool | None = None,
        disjoint_shadows: bool = True,
        seed: int = 0,
    ) -> None:
        self.n_shadows = n_shadows
        self.shadow_train_size = shadow_train_size
        self.shadow_test_size = shadow_test_size
        self.per_class = per_class
        self.disjoint_shadows = disjoint_shadows
        self.seed = seed

    def _validate(self) -> None:
        if self.per_class is not None and not isinstance(self.per_class, bool):
            raise ConfigError(f"per_class must be True, False or None; got {self.per_class!r}")
        check_seed(self.seed)

    def _fit_shadow_data(self, data: ShadowData) -> Self:
        """Calibrate the thresholds on shadow outputs already computed (no shadow training)."""
        per_class = self.default_per_class if self.per_class is None else self.per_class
        n_classes = data.probs.shape[1]
        s = membership_signal(self.signal, data.probs, data.labels)
        member = np.asarray(data.is_member, dtype=bool)
        global_t = best_threshold(member, s)
        thresholds = np.full(n_classes, global_t)
        if per_class:
            for c in range(n_classes):
                rows = data.labels == c
                n_in, n_out = int(member[rows].sum()), int((~member[rows]).sum())
                if min(n_in, n_out) < MIN_PER_CLASS:
                    logger.warning(
                        "class %d has %d member and %d non-member shadow records; using the global threshold",
                        c,
                        n_in,
                        n_out,
                    )
                    continue
                thresholds[c] = best_threshold(member[rows], s[rows])
        self.thresholds_ = thresholds
        self.global_threshold_ = global_t
        self.per_class_ = per_class
        self.n_classes_ = n_classes
        self.threshold_ = 0.0
        self.n_queries_ = 0
        self.fitted_ = True
        return self

    def _score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The signal shifted by the class threshold: ``signal(P, y) - thresholds_[y]``."""
        return membership_signal(self.signal, P, y) - self.thresholds_[y]


class LossAttack(ThresholdAttack):
    """Yeom et al.'s loss attack: a record is a member when its cross-entropy loss is low.

    One global threshold by default (``per_class=True`` for one per class). See
    :class:`ThresholdAttack` for the parameters.
    """

    name = "loss"
    signal = "loss"
    default_per_class = False


class ConfidenceAttack(ThresholdAttack):
    """Song & Mittal's confidence attack: high confidence in the true class, thresholds per class.

    See :class:`ThresholdAttack` for the parameters.
    """

    name = "confidence"
    signal = "confidence"


class EntropyAttack(ThresholdAttack):
    """Song & Mittal's entropy attack: low prediction entropy, thresholds per class.

    See :class:`ThresholdAttack` for the parameters.
    """

    name = "entropy"
    signal = "entropy"


class ModifiedEntropyAttack(ThresholdAttack):
    """Song & Mittal's modified-entropy attack: low modified entropy, thresholds per class.

    See :class:`ThresholdAttack` for the parameters.
    """

    name = "modified-entropy"
    signal = "modified-entropy"

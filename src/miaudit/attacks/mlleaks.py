"""ML-Leaks, adversary 1 (Salem et al. 2018): one shadow model, the top-3 probabilities as features.

The attacker trains a single shadow model like the target on its own population, takes the three
largest probabilities of the shadow's output (sorted, so the attack does not depend on the class)
on the shadow's members and non-members, and trains a small neural network (a multilayer perceptron
with one hidden layer of 64 units, as in the paper; scikit-learn's ``MLPClassifier``, seeded) to
tell them apart. Members and non-members are balanced by undersampling the larger group (seeded),
so that the decision threshold 0 on the log-odds score means "more likely member than not".
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar, Self

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from miaudit.attacks.shadow import ShadowData, ShadowTrainedAttack
from miaudit.errors import ConfigError, DataError
from miaudit.seeding import check_seed, derive_seed, make_rng

__all__ = ["MLLeaksAttack", "balanced_indices", "top_k_probabilities"]

logger = logging.getLogger(__name__)


def top_k_probabilities(P: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest probabilities of each row, in decreasing order.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
    k : int
        At most ``n_classes``.

    Returns
    -------
    ndarray of shape (n_samples, k)

    Examples
    --------
    >>> top_k_probabilities(np.array([[0.1, 0.6, 0.2, 0.1]]), 3).tolist()
    [[0.6, 0.2, 0.1]]
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or not 1 <= k <= P.shape[1]:
        raise DataError(f"top-k needs P of shape (n_samples, n_classes >= {k}); got shape {P.shape}")
    return -np.sort(-P, axis=1)[:, :k]


def balanced_indices(labels: np.ndarray, *, seed: int) -> np.ndarray:
    """Indices of a class-balanced subsample: every class cut to the smallest class's size.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
    seed : int

    Returns
    -------
    ndarray of shape (n_classes * min_count,), sorted indices into ``labels``

    Examples
    --------
    >>> idx = balanced_indices(np.array([1, 1, 1, 0, 0]), seed=0)
    >>> len(idx), int(np.asarray([1, 1, 1, 0, 0])[idx].sum())
    (4, 2)
    """
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    n = int(counts.min())
    rng = make_rng(seed, "balance")
    parts = [rng.choice(np.flatnonzero(labels == v), size=n, replace=False) for v in values]
    return np.sort(np.concatenate(parts))


def _mlp_log_odds(model: Any, F: np.ndarray) -> np.ndarray:
    """The fitted pipeline's pre-sigmoid output for class 1 (the log-odds, without saturation)."""
    scaler, mlp = model[0], model[-1]
    h = scaler.transform(F)
    last = len(mlp.coefs_) - 1
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        h = h @ w + b
        if i < last:
            h = np.maximum(h, 0.0)  # MLPClassifier's default activation, relu
    z = h[:, 0].astype(np.float64)
    return z if list(mlp.classes_).index(1) == 1 else -z


class MLLeaksAttack(ShadowTrainedAttack):
    """Salem et al.'s ML-Leaks adversary 1.

    Parameters
    ----------
    n_shadows : int, default 1
        Shadow models (the paper's adversary 1 uses one).
    shadow_train_size, shadow_test_size : int, default 3000, 2000
        Records the shadow trains on, and holds out.
    top_k : int, default 3
        Number of largest probabilities used as features (fewer if the target has fewer classes).
    hidden : int, default 64
        Width of the attack network's hidden layer.
    max_iter : int, default 500
        Epochs of the attack network (Adam).
    disjoint_shadows : bool, default True
        How the shadow's sets are drawn (see :func:`~miaudit.attacks.shadow.draw_shadow_sets`).
    seed : int, default 0
        Fixes the shadow data, its training, the balancing and the attack network.

    Attributes
    ----------
    attack_model_ : sklearn Pipeline
        Standardisation, then the fitted MLPClassifier.
    n_training_records_ : int
        Records the attack network learnt from (after balancing).
    threshold_ : float
        0.0: scores are the network's log-odds of "member".
    n_queries_ : int
        Records sent to targets by :meth:`score` since fitting.
    """

    name = "ml-leaks"
    progress_label: ClassVar[str] = "train shadows"
    #: adversary 1 trains one shadow model, whatever number of shadows an experiment sets for other attacks
    setting_exclude: ClassVar[frozenset[str]] = frozenset({"n_shadows"})

    def __init__(
        self,
        *,
        n_shadows: int = 1,
        shadow_train_size: int = 3000,
        shadow_test_size: int = 2000,
        top_k: int = 3,
        hidden: int = 64,
        max_iter: int = 500,
        disjoint_shadows: bool = True,
        seed: int = 0,
    ) -> None:
        self.n_shadows = n_shadows
        self.shadow_train_size = shadow_train_size
        self.shadow_test_size = shadow_test_size
        self.top_k = top_k
        self.hidden = hidden
        self.max_iter = max_iter
        self.disjoint_shadows = disjoint_shadows
        self.seed = seed

    def _validate(self) -> None:
        for name in ("top_k", "hidden", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        check_seed(self.seed)

    def _fit_shadow_data(self, data: ShadowData) -> Self:
        """Fit the attack network on shadow outputs already computed."""
        k = min(self.top_k, data.probs.shape[1])
        F = top_k_probabilities(data.probs, k)
        target = np.asarray(data.is_member, dtype=int)
        keep = balanced_indices(target, seed=derive_seed(self.seed, "ml-leaks"))
        model: Any = make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(self.hidden,),
                max_iter=self.max_iter,
                random_state=derive_seed(self.seed, "attack-model") % 2**32,
            ),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(F[keep], target[keep])
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            logger.info("the ML-Leaks attack network stopped at max_iter=%d before converging", self.max_iter)
        self.attack_model_ = model
        self.top_k_ = k
        self.n_classes_ = data.probs.shape[1]
        self.n_training_records_ = len(keep)
        self.threshold_ = 0.0
        self.n_queries_ = 0
        self.fitted_ = True
        return self

    def _score_outputs(self, P: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Log-odds of "member" from the top-k probabilities."""
        return _mlp_log_odds(self.attack_model_, top_k_probabilities(P, self.top_k_))

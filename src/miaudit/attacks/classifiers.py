"""Attack classifiers by name, and the features they learn from.

The seed study tries four classifiers on the shadow models' outputs: logistic regression, a
decision tree, a linear SVM and an RBF-kernel SVM. Each is class-balanced (``class_weight=
"balanced"``), so the unequal numbers of shadow members and non-members (3,000 vs 2,000) do not
bias the decisions, and each yields a continuous score on a log-odds scale with the decision
threshold at 0: ``decision_function`` for the linear models and SVMs, the logit of the leaf's
member fraction for the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from miaudit.attacks.rbf_svm import RBFSVC, reference_rbf_svm, single_threaded_blas
from miaudit.errors import ConfigError

__all__ = [
    "ATTACK_MODELS",
    "FEATURE_SETS",
    "RBFSVC",
    "attack_features",
    "classifier_scores",
    "make_attack_model",
    "reference_rbf_svm",
    "single_threaded_blas",
]

_EPS = 1e-12


def _lr(seed: int) -> Any:
    return LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)


def _tree(seed: int) -> Any:
    # min_samples_leaf keeps leaves' member fractions meaningful as scores
    return DecisionTreeClassifier(class_weight="balanced", min_samples_leaf=20, random_state=seed)


def _linear_svm(seed: int) -> Any:
    return LinearSVC(class_weight="balanced", dual="auto", max_iter=20_000, random_state=seed)


def _rbf_svm(seed: int) -> Any:
    return RBFSVC(class_weight="balanced", cache_size=1000, random_state=seed)


#: name -> factory(seed) of an unfitted scikit-learn classifier
ATTACK_MODELS: dict[str, Callable[[int], Any]] = {
    "lr": _lr,
    "tree": _tree,
    "linear-svm": _linear_svm,
    "rbf-svm": _rbf_svm,
}


def make_attack_model(name: str, *, seed: int) -> Pipeline:
    """An unfitted pipeline (standardisation, then the classifier named ``name``)."""
    if name not in ATTACK_MODELS:
        raise ConfigError(f"unknown attack model {name!r}; choose one of: {', '.join(ATTACK_MODELS)}")
    return make_pipeline(StandardScaler(), ATTACK_MODELS[name](seed))


def classifier_scores(model: Pipeline, F: np.ndarray) -> np.ndarray:
    """Continuous member scores on a log-odds scale (decision threshold 0), ndarray of shape (n_samples,)."""
    if hasattr(model, "decision_function") and not isinstance(model[-1], DecisionTreeClassifier):
        return np.asarray(model.decision_function(F), dtype=np.float64)
    p = model.predict_proba(F)[:, list(model.classes_).index(1)]
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _sorted(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.sort(-P, axis=1)


def _log_sorted(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.log(np.clip(_sorted(P, y), _EPS, 1.0))


def _true_label_logit(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(P[np.arange(len(y)), y], _EPS, 1 - _EPS)
    return (np.log(p) - np.log1p(-p))[:, None]


def _raw(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return P


def _rich(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hstack([_sorted(P, y), _log_sorted(P, y), _true_label_logit(P, y)])


#: name -> f(P, y) -> features. ``raw`` is the probability vector as Shokri et al. feed it (best
#: with per-class attack models); ``sorted`` is ML-Leaks' ordering; ``rich`` (the default) adds the
#: logarithms and the true label's logit, which makes membership learnable for linear models.
FEATURE_SETS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "raw": _raw,
    "sorted": _sorted,
    "log-sorted": _log_sorted,
    "true-label": _true_label_logit,
    "rich": _rich,
}


def attack_features(P: np.ndarray, y: np.ndarray, *, features: str = "rich") -> np.ndarray:
    """Features of the attack classifier from a model's outputs.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_classes)
        Probability vectors from a shadow model or the target.
    y : ndarray of shape (n_samples,)
        True labels of the records.
    features : str
        One of :data:`FEATURE_SETS`.

    Returns
    -------
    ndarray of shape (n_samples, n_features_attack)
    """
    if features not in FEATURE_SETS:
        raise ConfigError(f"unknown feature set {features!r}; choose one of: {', '.join(FEATURE_SETS)}")
    return np.asarray(FEATURE_SETS[features](np.asarray(P, dtype=np.float64), np.asarray(y)), dtype=np.float64)

"""Targets that live in this process: our own trained MLPs, scikit-learn estimators, torch modules."""

from __future__ import annotations

from typing import Any

import numpy as np

from miaudit.errors import ConfigError
from miaudit.targets.base import BlackBox
from miaudit.training.networks import MLPParams

__all__ = ["EstimatorTarget", "LocalTarget", "TorchModuleTarget", "as_target"]


class LocalTarget(BlackBox):
    """A model trained by miaudit (:class:`MLPParams`), seen only through ``predict_proba``."""

    def __init__(self, model: MLPParams) -> None:
        super().__init__(n_features=model.spec.n_features, n_classes=model.spec.n_classes)
        self._model = model

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(X)


class EstimatorTarget(BlackBox):
    """A fitted scikit-learn classifier with ``predict_proba``."""

    def __init__(self, estimator: Any, *, n_features: int) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ConfigError(f"{type(estimator).__name__} has no predict_proba; wrap a probabilistic classifier")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ConfigError("the estimator is not fitted (no classes_); fit it before auditing")
        super().__init__(n_features=n_features, n_classes=len(classes))
        self._estimator = estimator

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._estimator.predict_proba(X)


class TorchModuleTarget(BlackBox):
    """A torch module returning logits; softmax is applied here. Runs in eval mode without gradients."""

    def __init__(self, module: Any, *, n_features: int, n_classes: int) -> None:
        super().__init__(n_features=n_features, n_classes=n_classes)
        self._module = module

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        self._module.eval()
        with torch.inference_mode():
            logits = self._module(torch.as_tensor(np.asarray(X, dtype=np.float32)))
            return torch.softmax(logits.double(), dim=1).numpy()


def as_target(obj: Any, *, n_features: int | None = None, n_classes: int | None = None) -> BlackBox:
    """Wrap a model as a counting black box (targets pass through unchanged)."""
    if isinstance(obj, BlackBox):
        return obj
    if isinstance(obj, MLPParams):
        return LocalTarget(obj)
    try:
        import torch

        if isinstance(obj, torch.nn.Module):
            if n_features is None or n_classes is None:
                raise ConfigError("wrapping a torch module needs n_features and n_classes")
            return TorchModuleTarget(obj, n_features=n_features, n_classes=n_classes)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if hasattr(obj, "predict_proba"):
        if n_features is None:
            n_features = int(getattr(obj, "n_features_in_", 0)) or None
        if n_features is None:
            raise ConfigError("wrapping this estimator needs n_features")
        return EstimatorTarget(obj, n_features=n_features)
    raise ConfigError(f"cannot use {type(obj).__name__} as a target: it needs a predict_proba(X) method")

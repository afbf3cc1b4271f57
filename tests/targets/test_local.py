from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from miaudit.errors import ConfigError, DataError, TargetError
from miaudit.targets import BlackBox, EstimatorTarget, LocalTarget, as_target, check_probabilities
from miaudit.training.networks import MLPParams, build_module, params_from_module
from miaudit.training.specs import ModelSpec


def _model() -> MLPParams:
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    return params_from_module(build_module(spec), spec)


def test_local_target_counts_queries(digits) -> None:
    X, _ = digits
    t = LocalTarget(_model())
    P = t.predict_proba(X[:30])
    assert P.shape == (30, 10)
    np.testing.assert_allclose(P.sum(1), 1.0)
    t.predict_proba(X[:5])
    assert (t.n_queries, t.n_calls) == (35, 2)
    t.reset_counts()
    assert t.n_queries == 0


def test_estimator_and_module_wrappers(digits) -> None:
    X, y = digits
    est = LogisticRegression(max_iter=200).fit(X[:300], y[:300])
    t = as_target(est)
    assert isinstance(t, EstimatorTarget)
    assert t.predict_proba(X[:4]).shape == (4, 10)
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    module = build_module(spec)
    tm = as_target(module, n_features=64, n_classes=10)
    np.testing.assert_allclose(
        tm.predict_proba(X[:4]), LocalTarget(params_from_module(module, spec)).predict_proba(X[:4]), atol=1e-6
    )
    with pytest.raises(ConfigError, match="needs a predict_proba"):
        as_target(object())


def test_bad_queries_and_bad_answers(digits) -> None:
    X, _ = digits
    t = LocalTarget(_model())
    with pytest.raises(DataError, match=r"shape \(n_samples, 64\)"):
        t.predict_proba(X[:3, :10])
    bad = X[:3].copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        t.predict_proba(bad)

    class Broken(BlackBox):
        def __init__(self, answer: np.ndarray) -> None:
            super().__init__(n_features=64, n_classes=2)
            self.answer = answer

        def _predict_proba(self, X: np.ndarray) -> np.ndarray:
            return self.answer

    with pytest.raises(TargetError, match="shape"):
        Broken(np.ones((2, 2)) / 2).predict_proba(X[:3])
    with pytest.raises(TargetError, match="NaN"):
        Broken(np.full((3, 2), np.nan)).predict_proba(X[:3])
    with pytest.raises(TargetError, match="not probability vectors.*softmax"):
        Broken(np.ones((3, 2))).predict_proba(X[:3])
    assert check_probabilities(np.array([[0.25, 0.75]]), n_samples=1).shape == (1, 2)

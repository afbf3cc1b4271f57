"""ML-Leaks adversary 1: one shadow model, the top-3 probabilities, an MLP attack model."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import AttackerKnowledge, MLLeaksAttack, ShadowData, create_attack
from miaudit.attacks.mlleaks import balanced_indices, top_k_probabilities
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.metrics import auc
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


def test_top_k_and_balancing() -> None:
    P = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    np.testing.assert_allclose(top_k_probabilities(P, 3), [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    with pytest.raises(DataError, match=r"n_classes >= 4"):
        top_k_probabilities(P, 4)
    labels = np.r_[np.ones(70, int), np.zeros(30, int)]
    idx = balanced_indices(labels, seed=0)
    assert len(idx) == 60 and labels[idx].sum() == 30 and len(np.unique(idx)) == 60
    assert not np.array_equal(idx, balanced_indices(labels, seed=1))


def _shadow_data(n: int, seed: int) -> ShadowData:
    """Synthetic shadow outputs: members are more confident (top probability Beta(8,1) vs Beta(3,2))."""
    rng = np.random.default_rng(seed)
    member = rng.random(n) < 0.6
    top = np.where(member, rng.beta(8, 1, n), rng.beta(3, 2, n))
    rest = rng.dirichlet(np.ones(4), size=n) * (1 - top)[:, None]
    P = np.hstack([top[:, None], rest])
    labels = np.zeros(n, int)
    return ShadowData(P, labels, member, np.zeros(n, int))


def test_attack_network_learns_a_known_signal_reproducibly() -> None:
    train, test = _shadow_data(2000, 0), _shadow_data(1000, 1)
    attack = MLLeaksAttack(seed=0).fit_shadow_data(train)
    assert attack.n_training_records_ < 2000  # undersampled to balance 60% members
    s = attack.score_outputs(test.probs, test.labels)
    assert auc(test.is_member, s) > 0.8
    assert 0.25 < np.mean(s >= attack.threshold_) < 0.75  # balanced: not all one side
    # the score is the network's log-odds: sigmoid(score) is its predicted member probability
    F = top_k_probabilities(test.probs, 3)
    np.testing.assert_allclose(1 / (1 + np.exp(-s)), attack.attack_model_.predict_proba(F)[:, 1], rtol=1e-6)
    again = MLLeaksAttack(seed=0).fit_shadow_data(train)
    np.testing.assert_array_equal(s, again.score_outputs(test.probs, test.labels))
    other = MLLeaksAttack(seed=1).fit_shadow_data(train)
    assert not np.array_equal(s, other.score_outputs(test.probs, test.labels))


def test_fit_on_digits_and_errors(digits) -> None:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(16,))
    train = TrainSpec(epochs=5)
    kn = AttackerKnowledge(X=X[:1000], y=y[:1000], n_classes=10, model=spec, train=train)
    attack = create_attack("ml-leaks", shadow_train_size=200, shadow_test_size=200, seed=2).fit(kn)
    (m,) = train_models(X, y, [np.arange(1000, 1200)], seeds=[0], model=spec, train=train)
    target = LocalTarget(m)
    s = attack.score(target, X[1000:1100], y[1000:1100])
    assert s.shape == (100,) and np.isfinite(s).all()
    assert target.n_queries == 100 == attack.n_queries_
    with pytest.raises(NotFittedError, match="MLLeaksAttack is not fitted yet"):
        MLLeaksAttack().score(target, X[:2], y[:2])
    with pytest.raises(ConfigError, match="top_k must be a positive integer; got 0"):
        MLLeaksAttack(top_k=0).fit_shadow_data(_shadow_data(50, 0))
    with pytest.raises(DataError, match="outputs 3 classes but the shadow models had 10"):
        attack.score_outputs(np.full((2, 3), 1 / 3), np.zeros(2, int))
    with pytest.raises(DataError, match="both members and non-members"):
        d = _shadow_data(50, 0)
        MLLeaksAttack().fit_shadow_data(ShadowData(d.probs, d.labels, np.zeros(50, bool), d.shadow_id))

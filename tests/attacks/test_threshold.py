"""Threshold attacks: loss (Yeom et al.), confidence, entropy and modified entropy (Song & Mittal)."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import (
    AttackerKnowledge,
    LossAttack,
    ShadowData,
    ThresholdAttack,
    create_attack,
    membership_signal,
    train_shadows,
)
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

THRESHOLD_ATTACKS = ["loss", "confidence", "entropy", "modified-entropy"]


def _digits_knowledge(digits, n: int = 1200) -> AttackerKnowledge:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32,))
    return AttackerKnowledge(X=X[:n], y=y[:n], n_classes=10, model=spec, train=TrainSpec(epochs=15))


@pytest.fixture(scope="module")
def digits_shadows(digits) -> ShadowData:
    return train_shadows(_digits_knowledge(digits), n_shadows=2, train_size=300, test_size=300, seed=0)


def test_fit_trains_shadows_and_sets_thresholds(digits) -> None:
    kn = _digits_knowledge(digits)
    attack = LossAttack(n_shadows=1, shadow_train_size=200, shadow_test_size=200, seed=1).fit(kn)
    assert attack.fitted_ and attack.threshold_ == 0.0
    assert attack.per_class_ is False and np.all(attack.thresholds_ == attack.global_threshold_)
    again = LossAttack(n_shadows=1, shadow_train_size=200, shadow_test_size=200, seed=1).fit(kn)
    np.testing.assert_array_equal(attack.thresholds_, again.thresholds_)
    other = LossAttack(n_shadows=1, shadow_train_size=200, shadow_test_size=200, seed=2).fit(kn)
    assert other.global_threshold_ != attack.global_threshold_


def test_song_mittal_attacks_use_class_thresholds_by_default(digits_shadows) -> None:
    for name in ("confidence", "entropy", "modified-entropy"):
        attack = create_attack(name).fit_shadow_data(digits_shadows)
        assert attack.per_class_ and len(np.unique(attack.thresholds_)) > 1
    glob = create_attack("entropy", per_class=False).fit_shadow_data(digits_shadows)
    assert len(np.unique(glob.thresholds_)) == 1
    loss_pc = create_attack("loss", per_class=True).fit_shadow_data(digits_shadows)
    assert loss_pc.per_class_ and len(np.unique(loss_pc.thresholds_)) > 1


def test_scores_are_the_signal_shifted_by_the_class_threshold(digits_shadows) -> None:
    attack = create_attack("modified-entropy").fit_shadow_data(digits_shadows)
    P, y = digits_shadows.probs[:50], digits_shadows.labels[:50]
    expected = membership_signal("modified-entropy", P, y) - attack.thresholds_[y]
    np.testing.assert_allclose(attack.score_outputs(P, y), expected)
    # calibrated on balanced accuracy: decisions at 0 are not all one class on the shadows
    decided = attack.score_outputs(digits_shadows.probs, digits_shadows.labels) >= 0
    assert 0.2 < decided.mean() < 0.8


class SpyTarget:
    """Records every query; answers like the wrapped model."""

    def __init__(self, model) -> None:
        self.inner = LocalTarget(model)
        self.queries: list[np.ndarray] = []

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.queries.append(np.array(X))
        return self.inner.predict_proba(X)


@pytest.mark.parametrize("name", THRESHOLD_ATTACKS)
def test_calibration_never_reads_the_targets_members(digits, name: str) -> None:
    """fit sees only the attacker's knowledge: thresholds are the same whoever the target's members are."""
    X, y = digits
    kn = _digits_knowledge(digits)  # records 0..1199; the targets train on disjoint records
    spec, train = kn.model, kn.train
    target_a, target_b = train_models(
        X, y, [np.arange(1200, 1500), np.arange(1500, 1797)], seeds=[1, 2], model=spec, train=train
    )
    spy = SpyTarget(target_a)
    attack = create_attack(name, n_shadows=1, shadow_train_size=200, shadow_test_size=200, seed=4).fit(kn)
    assert spy.queries == []  # fitting never touched a target
    other = create_attack(name, n_shadows=1, shadow_train_size=200, shadow_test_size=200, seed=4).fit(kn)
    np.testing.assert_array_equal(attack.thresholds_, other.thresholds_)
    records = X[1200:1300]
    attack.score(spy, records, y[1200:1300])
    other.score(LocalTarget(target_b), records, y[1200:1300])
    np.testing.assert_array_equal(attack.thresholds_, other.thresholds_)  # scoring learns nothing
    assert len(spy.queries) == 1 and np.array_equal(spy.queries[0], records)
    assert attack.n_queries_ == 100


def test_errors(digits, digits_shadows) -> None:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    (m,) = train_models(X, y, [np.arange(50)], seeds=[0], model=spec, train=TrainSpec(epochs=1, engine="loop"))
    with pytest.raises(NotFittedError, match=r"LossAttack is not fitted yet"):
        LossAttack().score(LocalTarget(m), X[:5], y[:5])
    with pytest.raises(ConfigError, match="per_class must be True, False or None; got 'yes'"):
        LossAttack(per_class="yes").fit_shadow_data(digits_shadows)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bad parameters for attack 'entropy'"):
        create_attack("entropy", n_refs=4)
    with pytest.raises(ConfigError, match="unknown signal 'x'; choose one of: loss, confidence, entropy"):
        membership_signal("x", np.full((1, 2), 0.5), np.zeros(1, int))
    fitted = create_attack("confidence").fit_shadow_data(digits_shadows)
    with pytest.raises(DataError, match="outputs 4 classes but the shadow models had 10"):
        fitted.score_outputs(np.full((2, 4), 0.25), np.zeros(2, int))
    only_members = ShadowData(
        digits_shadows.probs, digits_shadows.labels, np.ones(len(digits_shadows.labels), bool), digits_shadows.shadow_id
    )
    with pytest.raises(DataError, match="both members and non-members"):
        LossAttack().fit_shadow_data(only_members)
    assert issubclass(type(fitted), ThresholdAttack)

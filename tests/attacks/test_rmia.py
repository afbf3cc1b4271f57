"""RMIA (offline) on a memorising target, from one reference model up, and its tuning of ``a``."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import AttackerKnowledge, RMIAAttack, create_attack
from miaudit.attacks.rmia import A_GRID
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.metrics import auc
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

IS_MEMBER = np.r_[np.ones(300, bool), np.zeros(300, bool)]


@pytest.fixture(scope="module")
def memorising(memorising_target):
    """A target that memorises 300 Fashion-MNIST images (80 epochs), and the attacker's knowledge."""
    ds, split, target, knowledge = memorising_target
    return ds, split, target, knowledge


def _auc(ds, members, nonmembers, target, attack) -> tuple[float, LocalTarget]:
    idx = np.concatenate([members, nonmembers])
    box = LocalTarget(target)
    return auc(IS_MEMBER, attack.score(box, ds.X[idx], ds.y[idx])), box


@pytest.mark.slow
@pytest.mark.parametrize("n_refs", [1, 4])
def test_rmia_on_a_memorising_target(memorising, n_refs: int) -> None:
    ds, split, target, knowledge = memorising
    attack = RMIAAttack(n_refs=n_refs, ref_train_size=300, z_size=1000, seed=3).fit(knowledge)
    assert attack.a_ in A_GRID and set(attack.tuning_auc_) == set(A_GRID)
    assert attack.tuning_auc_[attack.a_] == max(attack.tuning_auc_.values()) > 0.6
    value, box = _auc(ds, split.target_in, split.target_out[:300], target, attack)
    assert value > 0.65
    assert box.n_queries == 600 + 1000 == attack.n_queries_  # the records and the population z
    null, _ = _auc(ds, split.target_out[300:600], split.target_out[600:900], target, attack)
    assert abs(null - 0.5) < 0.1


def _digits_knowledge(digits, n: int = 1200) -> AttackerKnowledge:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32,))
    return AttackerKnowledge(X=X[:n], y=y[:n], n_classes=10, model=spec, train=TrainSpec(epochs=10))


@pytest.fixture(scope="module")
def digits_setup(digits):
    X, y = digits
    kn = _digits_knowledge(digits)
    (m,) = train_models(X, y, [np.arange(1200, 1400)], seeds=[0], model=kn.model, train=kn.train)
    return kn, m


def test_fixed_a_default_z_and_reproducibility(digits, digits_setup) -> None:
    X, y = digits
    kn, m = digits_setup
    records, labels = X[1200:1500], y[1200:1500]
    fixed = RMIAAttack(n_refs=2, ref_train_size=100, offline_a=0.3, seed=1).fit(kn)
    assert fixed.a_ == 0.3 and list(fixed.tuning_auc_) == [0.3]
    # z defaults to 2000 records, or what the population leaves: 1200 - 4 x 100
    assert len(fixed.z_y_) == 800
    a = fixed.score(LocalTarget(m), records, labels)
    assert np.all((a >= 0) & (a <= 1))
    b = RMIAAttack(n_refs=2, ref_train_size=100, offline_a=0.3, seed=1).fit(kn).score(LocalTarget(m), records, labels)
    c = RMIAAttack(n_refs=2, ref_train_size=100, offline_a=0.3, seed=2).fit(kn).score(LocalTarget(m), records, labels)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_errors(digits, digits_setup) -> None:
    X, y = digits
    kn, m = digits_setup
    with pytest.raises(ConfigError, match=r"offline_a must be a number in \[0, 1\] or None \(tuned\); got 1.5"):
        RMIAAttack(offline_a=1.5).fit(kn)
    with pytest.raises(ConfigError, match="gamma must be a number > 0; got 0"):
        RMIAAttack(gamma=0).fit(kn)
    with pytest.raises(ConfigError, match="z_size must be an integer >= 1; got 0"):
        RMIAAttack(z_size=0).fit(kn)
    with pytest.raises(ConfigError, match="rmia needs n_refs >= 1; got 0|n_refs must be an integer >= 1; got 0"):
        create_attack("rmia", n_refs=0).fit(kn)
    with pytest.raises(DataError, match=r"RMIA needs 2 x 300 calibration records \+ 2000 population records z"):
        RMIAAttack(ref_train_size=300, z_size=2000).fit(kn)
    with pytest.raises(NotFittedError, match="RMIAAttack is not fitted yet"):
        RMIAAttack().score(LocalTarget(m), X[:3], y[:3])

"""RMIA (offline): its tuning of ``a``, z, seeding and errors (known answers: test_known_answers.py)."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import AttackerKnowledge, RMIAAttack, create_attack
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


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

"""LiRA online and offline: bookkeeping, seeding and errors (known answers: test_known_answers.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from miaudit.attacks import (
    AttackerKnowledge,
    LiRAAttack,
    LiRAOfflineAttack,
    create_attack,
    train_offline_references,
)
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


def _digits_knowledge(digits, n: int = 1200) -> AttackerKnowledge:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32,))
    return AttackerKnowledge(X=X[:n], y=y[:n], n_classes=10, model=spec, train=TrainSpec(epochs=10))


def test_offline_references_are_disjoint_halves(digits) -> None:
    kn = _digits_knowledge(digits)
    refs = train_offline_references(kn, n_refs=4, ref_train_size=100, tune_size=50, extra_size=30, seed=0)
    sets = [refs.tune_in, refs.tune_out, refs.extra, refs.pool]
    assert [len(s) for s in sets] == [50, 50, 30, 200]
    together = np.concatenate(sets)
    assert len(np.unique(together)) == len(together)
    assert refs.keep.shape == (4, 200) and np.all(refs.keep.sum(axis=0) == 2)  # each record IN for half
    assert len(refs.models) == 4
    with pytest.raises(DataError, match=r"2 x 500 calibration records \+ 2 x 500 .* only 1200"):
        train_offline_references(kn, n_refs=2, ref_train_size=500, tune_size=500, seed=0, what="x")


def test_seeded_reproducibility(digits) -> None:
    X, y = digits
    kn = _digits_knowledge(digits)
    (m,) = train_models(X, y, [np.arange(1200, 1400)], seeds=[0], model=kn.model, train=kn.train)
    records, labels = X[1200:1500], y[1200:1500]
    for cls in (LiRAAttack, LiRAOfflineAttack):
        a = cls(n_refs=4, ref_train_size=100, seed=1).fit(kn).score(LocalTarget(m), records, labels)
        b = cls(n_refs=4, ref_train_size=100, seed=1).fit(kn).score(LocalTarget(m), records, labels)
        c = cls(n_refs=4, ref_train_size=100, seed=2).fit(kn).score(LocalTarget(m), records, labels)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_variance_option_and_errors(digits) -> None:
    X, y = digits
    kn = _digits_knowledge(digits, 600)
    assert LiRAAttack(n_refs=64).fit(kn).fix_variance_ is False  # 64 models: per-record variances
    assert LiRAAttack(n_refs=8, fix_variance=False).fit(kn).fix_variance_ is False
    with pytest.raises(ConfigError, match="lira needs n_refs >= 4; got 2"):
        create_attack("lira", n_refs=2).fit(kn)
    with pytest.raises(ConfigError, match="lira-offline needs n_refs >= 2; got 1"):
        create_attack("lira-offline", n_refs=1).fit(kn)
    with pytest.raises(ConfigError, match="n_refs must be an integer >= 1; got 'x'"):
        LiRAAttack(n_refs="x").fit(kn)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fix_variance must be True, False or None"):
        LiRAAttack(fix_variance=1).fit(kn)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="offline LiRA needs .* only 600"):
        LiRAOfflineAttack(ref_train_size=3000).fit(kn)
    with pytest.raises(ConfigError, match="bad parameters for attack 'lira'"):
        create_attack("lira", n_shadows=3)
    (m,) = train_models(X, y, [np.arange(50)], seeds=[0], model=kn.model, train=kn.train)
    with pytest.raises(NotFittedError, match="LiRAOfflineAttack is not fitted yet"):
        LiRAOfflineAttack().score(LocalTarget(m), X[:3], y[:3])


def test_online_lira_pads_with_the_whole_population_when_it_is_too_small(digits, caplog) -> None:
    X, y = digits
    kn = _digits_knowledge(digits, 100)  # the attacker holds 100 records
    (m,) = train_models(X, y, [np.arange(1200, 1400)], seeds=[0], model=kn.model, train=kn.train)
    attack = LiRAAttack(n_refs=4, ref_train_size=200, seed=0).fit(kn)
    with caplog.at_level(logging.WARNING, logger="miaudit.attacks.lira"):
        scores = attack.score(LocalTarget(m), X[1200:1250], y[1200:1250])  # a pool of 400 needs 350 more
    assert "wants 350 population records to pad the pool but has 100; using all" in caplog.text
    assert scores.shape == (50,) and np.isfinite(scores).all() and attack.n_models_trained_ == 4

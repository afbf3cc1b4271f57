"""End-to-end tests of one attack, and the known-answer tests of the shadow-model attack."""

from __future__ import annotations

import json

import numpy as np
import pytest

from miaudit.attacks import ShadowModelAttack
from miaudit.errors import DataError
from miaudit.metrics import auc
from miaudit.studies.config import AttackConfig
from miaudit.studies.pipeline import run_attack
from miaudit.targets import LocalTarget

SMALL_DIGITS = dict(
    dataset="digits", target_size=200, shadow_train_size=200, shadow_test_size=150, shadows=2, epochs=40
)


@pytest.fixture(scope="module")
def digits_result() -> dict:
    return run_attack(AttackConfig(seed=1, **SMALL_DIGITS))


def test_attack_on_digits_end_to_end(digits_result) -> None:
    r = digits_result
    assert set(r) >= {"config", "target", "metrics", "timings", "versions", "queries"}
    m = r["metrics"]
    for key in ("accuracy", "precision", "recall", "balanced_accuracy", "auc"):
        assert 0.0 <= m[key] <= 1.0
    assert set(m["tpr_at_fpr"]) >= {"0.01", "0.001"}
    assert (m["n_members"], m["n_nonmembers"]) == (200, 200)
    assert r["queries"] == 400
    assert r["target"]["train_accuracy"] > 0.9
    assert {"train_target", "fit_attack", "score", "total"} <= set(r["timings"])
    json.dumps(r)  # the whole record is JSON-able


def test_same_seed_same_numbers_other_seed_other_numbers(digits_result) -> None:
    again = run_attack(AttackConfig(seed=1, **SMALL_DIGITS))
    assert again["metrics"] == digits_result["metrics"]
    assert again["scores"] == digits_result["scores"]
    other = run_attack(AttackConfig(seed=2, **SMALL_DIGITS))
    assert other["scores"] != digits_result["scores"]


def test_pool_too_small_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"1797"):
        run_attack(AttackConfig(dataset="digits", target_size=3000))


@pytest.fixture(scope="module")
def memorising_setup(memorising_target):
    """The shared memorising target (300 images, 80 epochs) and a Shokri attack fitted with 3 shadows."""
    ds, split, target, knowledge = memorising_target
    attack = ShadowModelAttack(n_shadows=3, shadow_train_size=300, shadow_test_size=300, seed=3).fit(knowledge)
    return ds, split, target, attack


@pytest.mark.slow
def test_memorising_target_is_attacked_with_high_auc(memorising_setup) -> None:
    ds, split, target, attack = memorising_setup
    assert target.accuracy(ds.X[split.target_in], ds.y[split.target_in]) > 0.99
    members, nonmembers = split.target_in, split.target_out[:300]
    idx = np.concatenate([members, nonmembers])
    scores = attack.score(LocalTarget(target), ds.X[idx], ds.y[idx])
    is_member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    # chance gives AUC 0.5 with a standard deviation of about 0.024 at 300 + 300 records
    assert auc(is_member, scores) > 0.62


@pytest.mark.slow
def test_unseen_members_give_chance_auc(memorising_setup) -> None:
    ds, split, target, attack = memorising_setup
    fake_members, nonmembers = split.target_out[300:600], split.target_out[600:900]
    idx = np.concatenate([fake_members, nonmembers])
    scores = attack.score(LocalTarget(target), ds.X[idx], ds.y[idx])
    is_member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    assert abs(auc(is_member, scores) - 0.5) < 0.1  # about 4 standard deviations of the null


@pytest.mark.slow
def test_attack_on_small_fashion_mnist_end_to_end(fmnist_available) -> None:
    if not fmnist_available:
        pytest.skip("Fashion-MNIST is not installed (run scripts/setup.sh)")
    r = run_attack(
        AttackConfig(
            target_size=400,
            shadow_train_size=400,
            shadow_test_size=300,
            shadows=2,
            epochs=5,
            classes=5,
            attack_model="lr",
            per_class=True,
        )
    )
    assert r["dataset"]["n_classes"] == 5
    assert r["target"]["test_accuracy"] > 0.6
    assert r["metrics"]["n_members"] == 400
    assert r["queries"] == 800


# ------------------------------------------------------------------------- every attack by name
TINY_DIGITS = dict(
    dataset="digits", target_size=150, shadow_train_size=150, shadow_test_size=100, shadows=2, epochs=10, refs=4
)


@pytest.mark.parametrize(
    ("name", "queries"),
    [("loss", 300), ("modified-entropy", 300), ("ml-leaks", 300), ("lira", 300), ("lira-offline", 300), ("rmia", None)],
)
def test_every_attack_runs_end_to_end_by_name(name: str, queries: int | None) -> None:
    r = run_attack(AttackConfig(attack=name, seed=1, **TINY_DIGITS))
    assert r["attack"]["name"] == name and r["config"]["attack"] == name
    assert set(r["metrics"]["tpr_at_fpr"]) == {"0.01", "0.001", "0"}
    assert 0.0 <= r["metrics"]["auc"] <= 1.0
    assert (r["metrics"]["n_members"], r["metrics"]["n_nonmembers"]) == (150, 150)
    if queries is not None:
        assert r["queries"] == queries
    else:  # RMIA also queries its population records z
        assert r["queries"] > 300
    if name in ("lira", "lira-offline", "rmia"):
        assert r["attack"]["n_refs"] == 4 and r["attack"]["ref_train_size"] == 150
    json.dumps(r)


def test_attack_params_come_from_the_config() -> None:
    from miaudit.studies.pipeline import attack_params

    c = AttackConfig(shadows=3, per_class=True, refs=8, ref_train_size=500)
    assert attack_params("shokri", c, seed=1)["n_shadows"] == 3
    assert attack_params("loss", c, seed=1) == {
        "n_shadows": 3,
        "shadow_train_size": 3000,
        "shadow_test_size": 2000,
        "per_class": True,
        "seed": 1,
    }
    assert "n_shadows" not in attack_params("ml-leaks", c, seed=1)  # adversary 1: one shadow
    assert attack_params("rmia", c, seed=1) == {"n_refs": 8, "ref_train_size": 500, "seed": 1}
    assert attack_params("lira", AttackConfig(), seed=1) == {"n_refs": 16, "ref_train_size": 3000, "seed": 1}


def test_refs_are_ignored_with_a_warning_by_attacks_without_references(caplog) -> None:
    with caplog.at_level("WARNING"):
        run_attack(AttackConfig(attack="loss", seed=1, **TINY_DIGITS))
    assert "refs=4 is used by lira, lira-offline and rmia only; the loss attack ignores it" in caplog.text


def test_unknown_attack_is_rejected_with_the_allowed_list() -> None:
    from miaudit.errors import ConfigError
    from miaudit.studies.config import parse_config

    with pytest.raises(ConfigError, match=r"attack: .*unknown attack 'nope'; choose one of: shokri, loss, .*rmia"):
        parse_config(AttackConfig, {"attack": "nope"})

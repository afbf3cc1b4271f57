"""Attack details that mutation testing showed no test pinned: the attack classifiers' features stay finite at
probabilities of exactly 0 and 1, and each subsample the shadow-model attack draws has its own stream."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from miaudit.attacks import ShadowData, ShadowModelAttack, attack_features
from miaudit.attacks import shadow as shadow_mod

#: the clip of classifiers._EPS, as a person would compute the features by hand
EPS = 1e-12


def test_log_features_of_zero_probabilities_are_clipped_not_infinite() -> None:
    P = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    F = attack_features(P, np.array([0, 1]), features="log-sorted")
    assert np.isfinite(F).all()
    np.testing.assert_allclose(F, [[0.0, math.log(EPS), math.log(EPS)], [math.log(0.5), math.log(0.5), math.log(EPS)]])


def test_true_label_logit_of_a_certain_prediction_is_clipped_not_infinite() -> None:
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    F = attack_features(P, np.array([0, 0, 1]), features="true-label")
    big = math.log(1 - EPS) - math.log1p(-(1 - EPS))  # about 27.6
    small = math.log(EPS) - math.log1p(-EPS)  # about -27.6
    np.testing.assert_allclose(F[:, 0], [big, small, math.log(3.0)], rtol=1e-9)
    rich = attack_features(P, np.array([0, 0, 1]))
    assert np.isfinite(rich).all() and rich.shape == (3, 2 + 2 + 1)


def test_each_capped_training_set_is_drawn_from_its_own_stream(monkeypatch) -> None:
    # every stochastic step gets its own derived seed: the global model's subsample and each class's
    asked: list[tuple] = []
    real = shadow_mod.make_rng

    def recording(seed, *keys):
        asked.append((seed, *keys))
        return real(seed, *keys)

    monkeypatch.setattr(shadow_mod, "make_rng", recording)
    rng = np.random.default_rng(0)
    n = 300
    labels = np.arange(n) % 3
    member = rng.random(n) < 0.5
    P = rng.dirichlet(np.ones(3), size=n)
    data = ShadowData(P, labels, member, np.arange(n) % 2)
    ShadowModelAttack(attack_model="lr", per_class=True, max_train_samples=60, seed=5).fit_shadow_data(data)
    subsample = sorted((k for k in asked if "subsample" in k), key=str)
    assert subsample == sorted([(5, "subsample", "all"), *((5, "subsample", c) for c in range(3))], key=str)


def test_shadows_that_may_overlap_need_records_for_one_shadow_only() -> None:
    from miaudit.attacks import draw_shadow_sets
    from miaudit.errors import DataError

    sets = draw_shadow_sets(100, n_shadows=9, train_size=30, test_size=20, seed=0, disjoint=False)
    assert len(sets) == 9
    for train, held_out in sets:
        assert len(train) == 30 and len(held_out) == 20 and not set(train) & set(held_out)
    with pytest.raises(DataError, match=r"1 shadow models x \(30 train \+ 80 held-out\) = 110 records"):
        draw_shadow_sets(100, n_shadows=9, train_size=30, test_size=80, seed=0, disjoint=False)


def test_ml_leaks_reports_an_attack_network_stopped_before_converging(caplog: pytest.LogCaptureFixture) -> None:
    from miaudit.attacks import create_attack

    rng = np.random.default_rng(2)
    n = 200
    P = rng.dirichlet(np.ones(4), size=n)
    data = ShadowData(P, rng.integers(0, 4, n), rng.random(n) < 0.5, np.zeros(n, int))
    attack = create_attack("ml-leaks", max_iter=1, hidden=4, seed=0)
    with caplog.at_level(logging.INFO, logger="miaudit.attacks.mlleaks"):
        attack.fit_shadow_data(data)
    assert "stopped at max_iter=1 before converging" in caplog.text
    assert np.isfinite(attack.score_outputs(P, data.labels)).all()


def test_overlapping_shadows_each_draw_their_own_sets() -> None:
    from miaudit.attacks import draw_shadow_sets

    sets = draw_shadow_sets(1000, n_shadows=3, train_size=30, test_size=20, seed=0, disjoint=False)
    trains = [frozenset(train.tolist()) for train, _ in sets]
    assert len(set(trains)) == 3


def test_a_class_with_too_few_shadow_records_falls_back_alone() -> None:
    from miaudit.attacks.threshold import ConfidenceAttack, membership_signal
    from miaudit.metrics import best_threshold

    rng = np.random.default_rng(3)
    # class 0: 4 records (too few for its own threshold); classes 1 and 2: 150 each, members far apart
    labels = np.r_[np.zeros(4, int), np.ones(150, int), np.full(150, 2)]
    member = np.r_[[True, False, True, False], rng.random(300) < 0.5]
    conf = np.where(labels == 1, np.where(member, 0.85, 0.55), np.where(member, 0.42, 0.25))
    conf = conf + rng.uniform(-0.04, 0.04, len(labels))
    P = np.empty((len(labels), 3))
    P[:] = ((1 - conf) / 2)[:, None]
    P[np.arange(len(labels)), labels] = conf
    data = ShadowData(P, labels, member, np.zeros(len(labels), int))
    attack = ConfidenceAttack(seed=0).fit_shadow_data(data)
    s = membership_signal("confidence", P, labels)
    assert attack.per_class_
    assert attack.thresholds_[0] == attack.global_threshold_
    for c in (1, 2):
        rows = labels == c
        assert attack.thresholds_[c] == best_threshold(member[rows], s[rows])
    assert attack.thresholds_[1] != attack.thresholds_[2]


@pytest.mark.parametrize("name", ["lr", "tree", "linear-svm", "rbf-svm"])
def test_every_attack_classifier_weighs_members_and_non_members_equally(name: str) -> None:
    # shadow data has more members than non-members (or fewer); the classifiers must not learn the ratio
    from miaudit.attacks import make_attack_model

    assert make_attack_model(name, seed=0)[-1].get_params()["class_weight"] == "balanced"


def test_offline_a_accepts_both_ends_of_its_range() -> None:
    from miaudit.attacks.rmia import RMIAAttack
    from miaudit.errors import ConfigError

    RMIAAttack(offline_a=0.0).check_params()
    RMIAAttack(offline_a=1).check_params()
    with pytest.raises(ConfigError, match=r"offline_a must be a number in \[0, 1\] or None \(tuned\); got -0.1"):
        RMIAAttack(offline_a=-0.1).check_params()


def test_the_rbf_error_scale_is_the_documented_sum() -> None:
    from miaudit.attacks.rbf_svm import rbf_decision_values

    rng = np.random.default_rng(3)
    S, coef, Z = rng.normal(size=(50, 7)), rng.normal(size=50), rng.normal(size=(30, 7)) * 2
    gamma, b = 0.1, -0.3
    _, scale = rbf_decision_values(Z, S, coef, b, gamma=gamma)
    K = np.exp(-gamma * ((Z[:, None, :] - S[None, :, :]) ** 2).sum(-1))
    want = (np.abs(coef) * K * (1 + gamma * ((Z**2).sum(1)[:, None] + (S**2).sum(1)[None, :]))).sum(1) + abs(b)
    np.testing.assert_allclose(scale, want, rtol=1e-10)


def test_the_feature_scale_of_a_single_record_is_zero() -> None:
    from miaudit.attacks.label_only import feature_scale

    assert feature_scale(np.array([[3.0, -1.0, 7.0]], dtype=np.float32)) == 0.0


def test_a_rare_label_keeps_one_record_when_its_share_of_the_cap_rounds_to_none() -> None:
    target = np.zeros(1000, dtype=int)
    target[[10, 500, 900]] = 1  # 3 members in 1,000 rows: 100 * 3 / 1000 rounds to 0
    attack = ShadowModelAttack(max_train_samples=100, seed=3)
    rows = attack._subsample(target, np.ones(1000, bool), "all")
    assert int(target[rows].sum()) == 1  # at least one of each label, not more than its share asks
    assert len(rows) == 1 + 100 and np.all(np.diff(rows) > 0)

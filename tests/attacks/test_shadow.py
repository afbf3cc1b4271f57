from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import (
    AttackerKnowledge,
    ShadowData,
    ShadowModelAttack,
    attack_features,
    attack_names,
    create_attack,
    draw_shadow_sets,
    make_attack_model,
)
from miaudit.errors import ConfigError, DataError, NotFittedError
from miaudit.metrics import auc
from miaudit.targets import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


def test_shadow_sets_are_disjoint_and_prefix_stable() -> None:
    nine = draw_shadow_sets(50_000, n_shadows=9, train_size=3000, test_size=2000, seed=4)
    four = draw_shadow_sets(50_000, n_shadows=4, train_size=3000, test_size=2000, seed=4)
    allidx = np.concatenate([np.concatenate(p) for p in nine])
    assert len(np.unique(allidx)) == len(allidx) == 45_000
    for (a, b), (c, d) in zip(four, nine[:4], strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = draw_shadow_sets(50_000, n_shadows=4, train_size=3000, test_size=2000, seed=5)
    assert not np.array_equal(other[0][0], four[0][0])


def test_shadow_sets_too_small_population() -> None:
    with pytest.raises(DataError, match=r"9 shadow models x \(3000 train \+ 2000 held-out\) = 45000.*only 1000"):
        draw_shadow_sets(1000, n_shadows=9, train_size=3000, test_size=2000, seed=0)
    with pytest.raises(ConfigError, match="n_shadows must be a positive integer"):
        draw_shadow_sets(1000, n_shadows=0, train_size=3, test_size=2, seed=0)


def test_registry() -> None:
    assert "shokri" in attack_names()
    assert isinstance(create_attack("shokri", n_shadows=2), ShadowModelAttack)
    with pytest.raises(ConfigError, match="unknown attack 'nope'; choose one of: .*shokri"):
        create_attack("nope")
    with pytest.raises(ConfigError, match="bad parameters for attack 'shokri'"):
        create_attack("shokri", n_shadow=2)
    with pytest.raises(ConfigError, match="unknown attack model 'svm'; choose one of: lr, tree, linear-svm, rbf-svm"):
        make_attack_model("svm", seed=0)
    with pytest.raises(ConfigError, match="unknown feature set 'x'"):
        attack_features(np.ones((1, 2)) / 2, np.zeros(1, int), features="x")


def _synthetic_shadow_data(n: int, seed: int) -> ShadowData:
    """Members get confident outputs on their true label, non-members less confident ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    member = rng.random(n) < 0.6
    conf = np.where(member, rng.beta(8, 1, n), rng.beta(3, 2, n))
    P = np.full((n, 3), 0.0)
    P[np.arange(n), labels] = conf
    for i in range(n):
        rest = rng.dirichlet([1, 1]) * (1 - conf[i])
        P[i, [c for c in range(3) if c != labels[i]]] = rest
    return ShadowData(P, labels, member, np.arange(n) % 3)


@pytest.mark.parametrize("attack_model", ["lr", "tree", "linear-svm", "rbf-svm"])
@pytest.mark.parametrize("per_class", [False, True])
def test_attack_models_learn_a_known_signal(attack_model: str, per_class: bool) -> None:
    train = _synthetic_shadow_data(1500, 0)
    test = _synthetic_shadow_data(1000, 1)
    attack = ShadowModelAttack(attack_model=attack_model, per_class=per_class, seed=0).fit_shadow_data(train)
    s = attack.score_outputs(test.probs, test.labels)
    # the two beta distributions overlap little: the true AUC is about 0.9
    assert auc(test.is_member, s) > 0.8
    # class weighting: decisions at threshold 0 are not all one class despite 60% members
    decided = s >= attack.threshold_
    assert 0.3 < decided.mean() < 0.8
    again = ShadowModelAttack(attack_model=attack_model, per_class=per_class, seed=0).fit_shadow_data(train)
    np.testing.assert_array_equal(s, again.score_outputs(test.probs, test.labels))


def test_shadow_data_first_and_errors() -> None:
    d = _synthetic_shadow_data(30, 0)
    assert d.n_shadows == 3
    assert d.first(2).n_shadows == 2
    assert len(d.first(2).labels) == 20
    with pytest.raises(ConfigError, match=r"n_shadows must be in \[1, 3\]"):
        d.first(4)
    only_members = ShadowData(d.probs, d.labels, np.ones(30, bool), d.shadow_id)
    with pytest.raises(DataError, match="both members and non-members"):
        ShadowModelAttack().fit_shadow_data(only_members)


def test_unfitted_attack_raises(digits) -> None:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    (m,) = train_models(X, y, [np.arange(50)], seeds=[0], model=spec, train=TrainSpec(epochs=1, engine="loop"))
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(knowledge\)"):
        ShadowModelAttack().score(LocalTarget(m), X[:5], y[:5])


def test_knowledge_validation(digits) -> None:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10)
    with pytest.raises(DataError, match="64 features"):
        AttackerKnowledge(X=X[:, :5], y=y, n_classes=10, model=spec, train=TrainSpec())
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\]"):
        AttackerKnowledge(X=X, y=y + 1, n_classes=10, model=spec, train=TrainSpec())


def test_class_count_mismatch_is_reported() -> None:
    d = _synthetic_shadow_data(300, 0)
    attack = ShadowModelAttack(attack_model="lr").fit_shadow_data(d)
    with pytest.raises(DataError, match="outputs 4 classes but the shadow models had 3"):
        attack.score_outputs(np.full((2, 4), 0.25), np.zeros(2, int))


def test_true_label_features_use_the_true_label_not_the_prediction() -> None:
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.05, 0.15, 0.8]])
    y = np.array([1, 1, 0, 0])  # the predicted classes are 0, 2, 1, 2: never the label
    p_true = P[np.arange(4), y]
    logit = np.log(p_true) - np.log1p(-p_true)
    np.testing.assert_allclose(attack_features(P, y, features="true-label"), logit[:, None], rtol=1e-12)
    rich = attack_features(P, y, features="rich")
    top = -np.sort(-P, axis=1)
    np.testing.assert_allclose(rich, np.hstack([top, np.log(top), logit[:, None]]), rtol=1e-12)
    # another label changes the label's feature only
    other = attack_features(P, (y + 1) % 3, features="rich")
    np.testing.assert_array_equal(other[:, :6], rich[:, :6])
    assert np.all(np.abs(other[:, 6] - rich[:, 6]) > 0.1)


def test_per_class_attack_models_are_chosen_by_the_true_label() -> None:
    from miaudit.attacks.classifiers import classifier_scores

    train = _synthetic_shadow_data(1500, 0)
    attack = ShadowModelAttack(attack_model="lr", per_class=True, seed=0).fit_shadow_data(train)
    assert set(attack.attack_models_) == {None, 0, 1, 2}
    test = _synthetic_shadow_data(400, 1)
    P, y = test.probs, test.labels
    predicted = P.argmax(axis=1)
    assert np.sum(predicted != y) > 20  # records whose prediction is not their label
    F = attack_features(P, y, features="rich")

    def routed(by: np.ndarray) -> np.ndarray:
        return np.array([classifier_scores(attack.attack_models_[int(c)], F[i : i + 1])[0] for i, c in enumerate(by)])

    s = attack.score_outputs(P, y)
    np.testing.assert_allclose(s, routed(y), rtol=1e-10)
    assert not np.allclose(s, routed(predicted), rtol=1e-3)  # so routing by the prediction would be seen


class _CountingModel:
    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.model.predict_proba(X)


def test_knowledge_outputs_are_computed_once_per_model_and_rows_of_a_frozen_population(digits) -> None:
    X, y = (a.copy() for a in digits)
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    m1, m2 = train_models(X, y, [np.arange(100), np.arange(100, 200)], seeds=[0, 1], model=spec,
                          train=TrainSpec(epochs=1, engine="loop"))  # fmt: skip
    rows = np.arange(300, 400)
    writeable = AttackerKnowledge(X=X, y=y, n_classes=10, model=spec, train=TrainSpec())
    c = _CountingModel(m1)
    np.testing.assert_array_equal(writeable.outputs(c, rows), m1.predict_proba(X[rows]))
    writeable.outputs(c, rows)
    assert c.calls == 2  # a population that may change is asked every time
    X.flags.writeable = y.flags.writeable = False
    kn = AttackerKnowledge(X=X, y=y, n_classes=10, model=spec, train=TrainSpec())
    c1, c2 = _CountingModel(m1), _CountingModel(m2)
    P = kn.outputs(c1, rows)
    np.testing.assert_array_equal(P, m1.predict_proba(X[rows]))
    P[:] = 0.0  # the caller's own copy
    np.testing.assert_array_equal(kn.outputs(c1, rows), m1.predict_proba(X[rows]))
    assert c1.calls == 1
    np.testing.assert_array_equal(kn.outputs(c2, rows), m2.predict_proba(X[rows]))  # another model: its own
    assert not np.array_equal(kn.outputs(c2, rows), kn.outputs(c1, rows))
    np.testing.assert_array_equal(kn.outputs(c1, rows[::-1]), m1.predict_proba(X[rows[::-1]]))  # other rows
    assert (c1.calls, c2.calls) == (2, 1)

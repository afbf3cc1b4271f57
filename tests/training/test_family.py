"""Family trainers: scikit-learn clones and PyTorch modules as shadow/reference models."""

from __future__ import annotations

import doctest
import logging

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.training import family
from miaudit.training.family import FittedEstimator, SklearnFamily, expand_classes, sklearn_random_state
from miaudit.training.family_torch import TorchFamily, TorchModel
from miaudit.training.specs import TrainSpec

RECIPE = TrainSpec(epochs=3, batch_size=32, lr=1e-2, weight_decay=1e-4)


@pytest.fixture(scope="module")
def small(digits) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Digits and three training sets of unequal sizes, none a multiple of the batch size."""
    X, y = digits
    rng = np.random.default_rng(7)
    sets = [rng.choice(len(X), n, replace=False) for n in (150, 97, 201)]
    return X, y, sets


def forest(**kw: object) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=8, max_depth=6, min_samples_leaf=2, random_state=123, **kw)


# --- scikit-learn ---------------------------------------------------------------------------------------------


def test_clones_keep_hyperparameters_and_take_the_seed(small) -> None:
    X, y, sets = small
    est = forest()
    models = SklearnFamily(est, n_classes=10, n_jobs=1)(X, y, sets[:2], seeds=[5, 2**40 + 9], model=None, train=None)
    assert not hasattr(est, "estimators_")  # the prototype itself is never fitted
    want = {k: v for k, v in est.get_params().items() if k != "random_state"}
    for m, seed in zip(models, [5, 2**40 + 9], strict=True):
        assert isinstance(m, FittedEstimator)
        got = m.estimator.get_params()
        assert got["random_state"] == seed % 2**32
        assert {k: v for k, v in got.items() if k != "random_state"} == want
    assert sklearn_random_state(2**40 + 9) == 9


def test_nested_random_state_of_a_pipeline_is_set(small) -> None:
    X, y, sets = small
    pipe = make_pipeline(StandardScaler(), forest())
    (m,) = SklearnFamily(pipe, n_classes=10, n_jobs=1)(X, y, sets[:1], seeds=[77], model=None, train=None)
    assert m.estimator.get_params()["randomforestclassifier__random_state"] == 77
    assert m.predict_proba(X[:5]).shape == (5, 10)


def test_same_seed_same_forest_other_seed_other_forest(small) -> None:
    X, y, sets = small
    fam = SklearnFamily(forest(), n_classes=10, n_jobs=1)
    a, b = fam(X, y, [sets[0], sets[0]], seeds=[1, 2], model=None, train=None)
    (a2,) = fam(X, y, [sets[0]], seeds=[1], model=None, train=None)
    np.testing.assert_array_equal(a.predict_proba(X), a2.predict_proba(X))
    assert np.abs(a.predict_proba(X) - b.predict_proba(X)).max() > 0.2


def test_missing_class_is_a_zero_column(small) -> None:
    X, y, _ = small
    no_two = np.flatnonzero(y != 2)[:300]
    (m,) = SklearnFamily(forest(), n_classes=10, n_jobs=1)(X, y, [no_two], seeds=[0], model=None, train=None)
    P = m.predict_proba(X)
    assert P.shape == (len(X), 10) and P.dtype == np.float64
    assert np.all(P[:, 2] == 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    # the other columns are the estimator's own, in class order
    np.testing.assert_array_equal(np.delete(P, 2, axis=1), m.estimator.predict_proba(X))
    np.testing.assert_array_equal(
        expand_classes(np.array([[0.25, 0.75]]), np.array([0, 2]), n_classes=3), [[0.25, 0, 0.75]]
    )


def test_parallel_equals_serial_and_progress_counts(small) -> None:
    X, y, sets = small
    calls: list[tuple[int, int]] = []
    serial = SklearnFamily(forest(), n_classes=10, n_jobs=1)(X, y, sets, seeds=[3, 4, 5], model=None, train=None)
    par = SklearnFamily(forest(), n_classes=10, n_jobs=2)(
        X, y, sets, seeds=[3, 4, 5], model=None, train=None, progress=lambda i, n: calls.append((i, n))
    )
    for s, p in zip(serial, par, strict=True):
        np.testing.assert_array_equal(s.predict_proba(X), p.predict_proba(X))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_decision_function_estimators_answer_softmax_and_sigmoid(small) -> None:
    X, y, sets = small
    (m,) = SklearnFamily(LinearSVC(), n_classes=10, n_jobs=1)(X, y, sets[2:], seeds=[0], model=None, train=None)
    P = m.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(P.argmax(axis=1), m.estimator.predict(X))
    two = np.flatnonzero(y < 2)
    (b,) = SklearnFamily(LinearSVC(), n_classes=10, n_jobs=1)(X, y, [two], seeds=[0], model=None, train=None)
    Pb = b.predict_proba(X[two])
    d = b.estimator.decision_function(X[two])
    np.testing.assert_allclose(Pb[:, 1], 1 / (1 + np.exp(-d)))
    assert np.all(Pb[:, 2:] == 0)


def test_key_is_stable_and_names_the_parameters() -> None:
    a = SklearnFamily(make_pipeline(StandardScaler(), forest()), n_classes=10)
    b = SklearnFamily(make_pipeline(StandardScaler(), forest()), n_classes=10)
    assert a.key == b.key
    assert "max_depth=6" in a.key and "0x" not in a.key and "random_state" not in a.key
    other_seed = SklearnFamily(RandomForestClassifier(n_estimators=8, max_depth=6, min_samples_leaf=2), n_classes=10)
    assert other_seed.key == SklearnFamily(forest(), n_classes=10).key  # random_state comes from the seeds
    assert SklearnFamily(make_pipeline(StandardScaler(), forest(max_features=3)), n_classes=10).key != a.key
    assert SklearnFamily(make_pipeline(StandardScaler(), forest()), n_classes=3).key != a.key


class _NoClasses(BaseEstimator, ClassifierMixin):
    def fit(self, X: np.ndarray, y: np.ndarray) -> _NoClasses:
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))


def test_sklearn_family_errors(small) -> None:
    X, y, sets = small
    with pytest.raises(TypeError, match="must be a scikit-learn estimator"):
        SklearnFamily(object(), n_classes=10)
    with pytest.raises(ConfigError, match="neither predict_proba nor decision_function"):
        SklearnFamily(StandardScaler(), n_classes=10)
    with pytest.raises(ConfigError, match="n_jobs must be"):
        SklearnFamily(forest(), n_classes=10, n_jobs=0)
    with pytest.raises(ConfigError, match="n_classes must be an integer >= 2"):
        SklearnFamily(forest(), n_classes=1)
    fam = SklearnFamily(LogisticRegression(), n_classes=10, n_jobs=1)
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 9\]"):
        fam(X, y + 1, sets, seeds=[0, 1, 2], model=None, train=None)
    with pytest.raises(ValueError, match="need one seed per training set"):
        fam(X, y, sets, seeds=[0], model=None, train=None)
    with pytest.raises(DataError, match=r"train_sets\[1\] is empty"):
        fam(X, y, [sets[0], np.array([], dtype=int)], seeds=[0, 1], model=None, train=None)
    with pytest.raises(DataError, match=r"train_sets\[0\] must be a 1-d array of indices"):
        fam(X, y, [np.array([len(X)])], seeds=[0], model=None, train=None)
    with pytest.raises(DataError, match="X must be 2-d"):
        fam(X[:, :, None], y, sets, seeds=[0, 1, 2], model=None, train=None)
    with pytest.raises(DataError, match="finite numbers"):
        fam(np.full_like(X, np.nan), y, sets, seeds=[0, 1, 2], model=None, train=None)
    with pytest.raises(DataError, match="y must have shape"):
        fam(X, y[:-1], sets, seeds=[0, 1, 2], model=None, train=None)
    with pytest.raises(TrainingError, match=r"fitting model 0 \(LogisticRegression on 20 records, 1 classes\) failed"):
        fam(X, y, [np.flatnonzero(y == 3)[:20]], seeds=[0], model=None, train=None)
    with pytest.raises(TrainingError, match="has no classes_"):
        SklearnFamily(_NoClasses(), n_classes=10, n_jobs=1)(X, y, sets[:1], seeds=[0], model=None, train=None)


# --- PyTorch ----------------------------------------------------------------------------------------------------


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def with_batchnorm() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def with_dropout() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))


def softmax_mlp() -> nn.Module:
    return nn.Sequential(mlp(), nn.Softmax(dim=1))


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x)
        return z if z.sum() > 0 else -z


def train_torch(factory, small, *, engine, seeds=(11, 12, 13), **kw) -> tuple[TorchFamily, list[TorchModel]]:
    X, y, sets = small
    fam = TorchFamily(factory, n_classes=10, engine=engine, **kw)
    return fam, fam(X, y, sets[: len(seeds)], seeds=list(seeds), model=None, train=RECIPE)


@pytest.mark.parametrize(("factory", "shape"), [(mlp, None), (cnn, (1, 8, 8))], ids=["mlp", "cnn"])
def test_vmap_models_equal_models_trained_alone(small, factory, shape) -> None:
    X = small[0]
    fv, vm = train_torch(factory, small, engine="vmap", input_shape=shape)
    fl, lp = train_torch(factory, small, engine="loop", input_shape=shape)
    assert (fv.engine_used_, fl.engine_used_) == ("vmap", "loop")
    for a, b in zip(vm, lp, strict=True):
        assert np.abs(a.predict_proba(X) - b.predict_proba(X)).max() < 1e-5
    # and they learned something, differently from each other
    accs = [(m.predict_proba(X).argmax(1) == small[1]).mean() for m in vm]
    assert min(accs) > 0.3
    assert np.abs(vm[0].predict_proba(X) - vm[1].predict_proba(X)).max() > 0.1


def test_torch_same_seed_same_weights_other_seed_other_weights(small) -> None:
    X, y, sets = small
    fam = TorchFamily(mlp, n_classes=10, engine="vmap")
    a, b = fam(X, y, [sets[0], sets[0]], seeds=[4, 5], train=RECIPE)
    (a2,) = fam(X, y, [sets[0]], seeds=[4], train=RECIPE)
    for (n, p), p2, q in zip(a.module.named_parameters(), a2.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(p, p2), n
        assert not torch.allclose(p, q), n


def test_global_torch_state_is_left_alone(small) -> None:
    rng, threads = torch.random.get_rng_state(), torch.get_num_threads()
    train_torch(with_dropout, small, engine="vmap")
    train_torch(with_dropout, small, engine="loop", seeds=(1,))
    assert torch.equal(rng, torch.random.get_rng_state()) and torch.get_num_threads() == threads


def test_dropout_models_are_reproducible_in_each_engine(small) -> None:
    X = small[0]
    for engine in ("vmap", "loop"):
        _, a = train_torch(with_dropout, small, engine=engine, seeds=(3, 4))
        _, b = train_torch(with_dropout, small, engine=engine, seeds=(3, 4))
        for m, m2 in zip(a, b, strict=True):
            np.testing.assert_array_equal(m.predict_proba(X), m2.predict_proba(X))


def test_batchnorm_falls_back_to_the_loop_and_trains(small, caplog) -> None:
    X, y, sets = small
    with caplog.at_level(logging.INFO, logger="miaudit.training.family_torch"):
        fam, (m,) = train_torch(with_batchnorm, small, engine="auto", seeds=(0,))
    assert fam.engine_used_ == "loop"
    assert "BatchNorm1d: its batch statistics mix records" in caplog.text
    assert (m.predict_proba(X[sets[0]]).argmax(1) == y[sets[0]]).mean() > 0.8
    assert not m.module.training
    with pytest.raises(ConfigError, match="cannot be trained with engine='vmap'.*BatchNorm1d"):
        train_torch(with_batchnorm, small, engine="vmap", seeds=(0,))


def test_data_dependent_control_flow_falls_back_to_the_loop(small, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="miaudit.training.family_torch"):
        fam, models = train_torch(Branchy, small, engine="auto", seeds=(0,))
    assert fam.engine_used_ == "loop" and len(models) == 1
    assert "data-dependent control flow" in caplog.text


def test_probability_outputs_train_like_logits(small) -> None:
    """A module ending in softmax, trained on NLL of its log output, equals the logits module's softmax."""
    X = small[0]
    _, probs = train_torch(softmax_mlp, small, engine="vmap", output_kind="probabilities", seeds=(8, 9))
    _, logits = train_torch(mlp, small, engine="loop", seeds=(8, 9))
    for p, q in zip(probs, logits, strict=True):
        assert np.abs(p.predict_proba(X) - q.predict_proba(X)).max() < 1e-5


def test_torch_progress_and_key(small) -> None:
    X, y, sets = small
    calls: list[tuple[int, int]] = []
    fam = TorchFamily(mlp, n_classes=10, engine="loop")
    fam(X, y, sets, seeds=[0, 1, 2], train=RECIPE, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert fam.key == TorchFamily(mlp, n_classes=10, engine="loop").key
    assert "Linear(in_features=64, out_features=32" in fam.key and "test_family.mlp" in fam.key
    assert TorchFamily(mlp, n_classes=10, output_kind="probabilities", engine="loop").key != fam.key


def test_torch_family_errors(small) -> None:
    X, y, sets = small
    with pytest.raises(TypeError, match="factory must be a callable"):
        TorchFamily(nn.Linear(64, 10), n_classes=10)
    with pytest.raises(ConfigError, match="output_kind must be one of"):
        TorchFamily(mlp, n_classes=10, output_kind="softmax")
    with pytest.raises(ConfigError, match="engine must be one of"):
        TorchFamily(mlp, n_classes=10, engine="batched")
    with pytest.raises(ConfigError, match="input_shape must be a sequence of positive integers"):
        TorchFamily(mlp, n_classes=10, input_shape=(1, 0, 8))
    with pytest.raises(DataError, match=r"input_shape \(1, 9, 9\) holds 81 values but records have 64"):
        TorchFamily(cnn, n_classes=10, input_shape=(1, 9, 9))(X, y, sets, seeds=[0, 1, 2], train=RECIPE)
    with pytest.raises(ConfigError, match="needs the training recipe as train=TrainSpec"):
        TorchFamily(mlp, n_classes=10)(X, y, sets, seeds=[0, 1, 2], train=None)
    with pytest.raises(ConfigError, match=r"answers \(2, 10\) for 2 records.*n_classes=3"):
        TorchFamily(mlp, n_classes=3)(X, y % 3, sets, seeds=[0, 1, 2], train=RECIPE)
    with pytest.raises(TypeError, match="must return a torch.nn.Module; it returned int"):
        TorchFamily(lambda: 3, n_classes=10)(X, y, sets, seeds=[0, 1, 2], train=RECIPE)  # type: ignore[arg-type,return-value]
    huge = np.full_like(X, 3e38)  # the logits overflow
    for engine in ("vmap", "loop"):
        with pytest.raises(TrainingError, match="training diverged"):
            TorchFamily(mlp, n_classes=10, engine=engine)(
                huge, y, sets[:1], seeds=[0], train=TrainSpec(epochs=1, lr=10.0)
            )


def test_doctests() -> None:
    result = doctest.testmod(family)
    assert result.attempted >= 5 and result.failed == 0


def test_torch_family_is_importable_from_the_family_module() -> None:
    assert family.TorchFamily is TorchFamily and family.TorchModel is TorchModel
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = family.Nothing

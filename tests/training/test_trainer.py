from __future__ import annotations

import numpy as np
import pytest

from miaudit.errors import ConfigError, DataError
from miaudit.training.networks import MLPParams, build_module, params_from_module
from miaudit.training.specs import ModelSpec, TrainSpec, spec_hash
from miaudit.training.trainer import train_models

LOOP = TrainSpec(epochs=30, engine="loop")


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec.from_arch("simple", n_features=64, n_classes=10)


def test_loop_learns_digits(digits, spec) -> None:
    X, y = digits
    (m,) = train_models(X, y, [np.arange(1000)], seeds=[0], model=spec, train=LOOP)
    assert m.accuracy(X[:1000], y[:1000]) > 0.97
    assert m.accuracy(X[1000:], y[1000:]) > 0.9


def test_loop_same_seed_same_weights_other_seed_other(digits, spec) -> None:
    X, y = digits
    train = TrainSpec(epochs=2, engine="loop")
    a, b, c = train_models(X, y, [np.arange(300)] * 3, seeds=[1, 1, 2], model=spec, train=train)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
        assert not np.array_equal(wa, wc)


def test_dropout_and_weight_decay_paths(digits) -> None:
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(64, 32), dropout=0.5)
    train = TrainSpec(epochs=30, weight_decay=1e-3, engine="loop")
    (m,) = train_models(X, y, [np.arange(1000)], seeds=[0], model=spec, train=train)
    assert m.accuracy(X[1000:], y[1000:]) > 0.8


def test_params_round_trip(tmp_path, digits, spec) -> None:
    X, _ = digits
    (m,) = train_models(X, digits[1], [np.arange(100)], seeds=[0], model=spec, train=TrainSpec(epochs=1, engine="loop"))
    m.save(tmp_path / "m.safetensors")
    m2 = MLPParams.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(m.predict_proba(X[:50]), m2.predict_proba(X[:50]))
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(DataError, match="cannot read model weights.*delete the file"):
        MLPParams.load(tmp_path / "bad.safetensors")


def test_module_conversion_matches_forward(digits, spec) -> None:
    import torch

    X, _ = digits
    module = build_module(spec)
    p = params_from_module(module, spec)
    with torch.no_grad():
        expect = torch.softmax(module(torch.from_numpy(X[:20])).double(), 1).numpy()
    np.testing.assert_allclose(p.predict_proba(X[:20]), expect, atol=1e-6)


def test_bad_training_input(digits, spec) -> None:
    X, y = digits
    with pytest.raises(DataError, match=r"shape \(n_samples, 64\)"):
        train_models(X[:, :10], y, [np.arange(10)], seeds=[0], model=spec, train=LOOP)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train_models(Xn, y, [np.arange(10)], seeds=[0], model=spec, train=LOOP)
    with pytest.raises(DataError, match="labels must be integers"):
        train_models(X, y + 5, [np.arange(10)], seeds=[0], model=spec, train=LOOP)
    with pytest.raises(DataError, match=r"train_sets\[0\]"):
        train_models(X, y, [np.array([5000])], seeds=[0], model=spec, train=LOOP)
    with pytest.raises(ValueError, match="one seed per training set"):
        train_models(X, y, [np.arange(10)], seeds=[0, 1], model=spec, train=LOOP)


def test_spec_validation() -> None:
    with pytest.raises(ConfigError, match="arch must be one of 'simple', 'dense', 'dropout'; got 'huge'"):
        ModelSpec.from_arch("huge", n_features=4, n_classes=2)
    with pytest.raises(ConfigError, match="dropout must be a number in"):
        ModelSpec(n_features=4, n_classes=2, dropout=1.0)
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        TrainSpec(epochs=0)
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainSpec(precision="f16")
    assert spec_hash(TrainSpec()) == spec_hash(TrainSpec())
    assert spec_hash(TrainSpec()) != spec_hash(TrainSpec(epochs=29))


def test_a_model_is_read_only_and_its_outputs_on_frozen_records_are_computed_once(digits, spec, monkeypatch) -> None:
    X, y = digits
    m1, m2 = train_models(X, y, [np.arange(300), np.arange(300, 600)], seeds=[0, 1], model=spec,
                          train=TrainSpec(epochs=1, engine="loop"))  # fmt: skip
    with pytest.raises(ValueError, match="read-only"):
        m1.weights[0][0, 0] = 1.0
    calls = []
    real = MLPParams._logits
    monkeypatch.setattr(MLPParams, "_logits", lambda self, X: calls.append(1) or real(self, X))
    frozen = X[600:900].copy()
    frozen.flags.writeable = False
    P = m1.predict_proba(frozen)
    np.testing.assert_array_equal(m1.predict_proba(frozen), P)
    assert m1.accuracy(frozen, y[600:900]) == float(np.mean(P.argmax(axis=1) == y[600:900]))
    assert len(calls) == 1
    out = m1.logits(frozen)
    out[:] = 0.0  # the caller's own copy
    assert np.abs(m1.logits(frozen)).max() > 0
    writeable = X[600:900].copy()
    np.testing.assert_array_equal(m1.predict_proba(writeable), P)
    m1.predict_proba(writeable)
    assert len(calls) == 3  # records that may change are computed every time
    assert not np.allclose(m2.predict_proba(frozen), P)  # another model, its own outputs
    assert len(calls) == 4

"""Known answers for the plain training loop (``train_one``) and its dropout.

The batched engine is an independent implementation of the same recipe (its own forward and
backward pass, its own dropout masks), so the loop is checked against it. With dropout the two draw
different masks, so they must agree in distribution (``tests/training/test_batched.py`` checks that
without dropout they give the same model from the same seed). Dropout is a regulariser that shows in
the confidence: on 400 digits (64-64-10, 15 epochs, dropout 0.3) both engines give a mean test
confidence of 0.83-0.84 against 0.87 without dropout. Measured wrong loops: masks not rescaled by
1 / keep give 0.88, masks drawn with the drop rate as keep probability 0.68, one mask shared by the
whole batch 0.80, dropout never applied 0.87.
"""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

DROPOUT = 0.3
SPEC = ModelSpec(n_features=64, n_classes=10, hidden=(64,), dropout=DROPOUT, name="known")
NO_DROPOUT = ModelSpec(n_features=64, n_classes=10, hidden=(64,), name="known")


def _recipe(engine: str, epochs: int = 15) -> TrainSpec:
    return TrainSpec(epochs=epochs, batch_size=32, lr=3e-3, precision="f32", engine=engine)


def _summary(models: list[MLPParams], X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean accuracy and mean confidence (top probability) of the models on (X, y)."""
    acc, conf = [], []
    for m in models:
        P = m.predict_proba(X)
        acc.append(float(np.mean(P.argmax(axis=1) == y)))
        conf.append(float(np.mean(P.max(axis=1))))
    return float(np.mean(acc)), float(np.mean(conf))


def _numpy_forward(m: MLPParams, X: np.ndarray) -> np.ndarray:
    """Softmax of the MLP without any dropout: ndarray of shape (n_samples, n_classes)."""
    h = X.astype(np.float64)
    for i, (w, b) in enumerate(zip(m.weights, m.biases, strict=True)):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if i < len(m.weights) - 1:
            h = np.maximum(h, 0.0)
    h -= h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data(digits_split):
    X, y, pool, test = digits_split
    return X, y, pool[:400], test


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_dropout_changes_training_from_the_same_seed(data, engine: str) -> None:
    X, y, train_idx, _ = data
    (with_dropout,) = train_models(X, y, [train_idx], seeds=[7], model=SPEC, train=_recipe(engine, epochs=2))
    (without,) = train_models(X, y, [train_idx], seeds=[7], model=NO_DROPOUT, train=_recipe(engine, epochs=2))
    (again,) = train_models(X, y, [train_idx], seeds=[7], model=SPEC, train=_recipe(engine, epochs=2))
    for w_drop, w_plain, w_again in zip(with_dropout.weights, without.weights, again.weights, strict=True):
        assert not np.allclose(w_drop, w_plain, atol=1e-4)  # the masks changed the updates
        np.testing.assert_array_equal(w_drop, w_again)  # and they come from the seed alone


def test_dropout_is_off_at_inference(data) -> None:
    X, y, train_idx, test = data
    (m,) = train_models(X, y, [train_idx], seeds=[1], model=SPEC, train=_recipe("loop", epochs=3))
    first = m.predict_proba(X[test])
    np.testing.assert_array_equal(first, m.predict_proba(X[test]))  # deterministic
    np.testing.assert_allclose(first, _numpy_forward(m, X[test]), atol=1e-5)  # no mask, no rescaling
    twice = m.predict_proba(np.repeat(X[test[:5]], 2, axis=0))
    np.testing.assert_allclose(twice[0::2], twice[1::2], atol=1e-6)  # a record twice in one batch: one answer


def test_loop_and_batched_engine_agree_with_dropout(data) -> None:
    """Different masks, same distribution: accuracy and confidence agree over several seeds.

    Seed-to-seed spread of the mean confidence is about 0.008, so the means of 4 and 8 models
    differ by about 0.005; the wrong loops of the module docstring are 0.03 to 0.15 away.
    """
    X, y, train_idx, test = data
    loop = train_models(X, y, [train_idx] * 4, seeds=[0, 1, 2, 3], model=SPEC, train=_recipe("loop"))
    batched = train_models(X, y, [train_idx] * 8, seeds=list(range(8)), model=SPEC, train=_recipe("batched"))
    plain = train_models(X, y, [train_idx] * 4, seeds=[0, 1, 2, 3], model=NO_DROPOUT, train=_recipe("batched"))
    acc_loop, conf_loop = _summary(loop, X[test], y[test])
    acc_batched, conf_batched = _summary(batched, X[test], y[test])
    acc_plain, conf_plain = _summary(plain, X[test], y[test])
    assert abs(acc_loop - acc_batched) < 0.015, (acc_loop, acc_batched)
    assert abs(conf_loop - conf_batched) < 0.015, (conf_loop, conf_batched)
    # dropout regularises both: clearly less confident than without it, and still accurate
    assert conf_loop < conf_plain - 0.02 and conf_batched < conf_plain - 0.02, (conf_loop, conf_batched, conf_plain)
    assert acc_loop > acc_plain - 0.02 and acc_loop > 0.9

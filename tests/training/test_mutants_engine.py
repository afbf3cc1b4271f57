"""Stacked-path details that mutation testing showed no test pinned: one dropout stream per hidden layer,
and the step blocks that the dropout memory cap shortens to a single step."""

from __future__ import annotations

import threading

import numpy as np

from miaudit.training.batched import train_batched
from miaudit.training.engine import stacked
from miaudit.training.specs import ModelSpec, TrainSpec


def test_each_hidden_layer_draws_its_dropout_masks_from_its_own_stream(monkeypatch) -> None:
    # module docstring: masks come from torch_generator(seed, "dropout", layer), one stream per layer
    asked: list[tuple] = []
    real = stacked.torch_generator

    def recording(seed, *keys):
        asked.append((seed, *keys))
        return real(seed, *keys)

    monkeypatch.setattr(stacked, "torch_generator", recording)
    rng = np.random.default_rng(0)
    X = rng.random((40, 6), dtype=np.float32)
    y = np.arange(40) % 3
    spec = ModelSpec(n_features=6, n_classes=3, hidden=(8, 8, 8), dropout=0.2)
    train = TrainSpec(epochs=1, batch_size=16, precision="f32", engine="batched")
    train_batched(X, y, [np.arange(30), np.arange(10, 40)], seeds=[4, 9], model=spec, train=train)
    dropout = sorted(k for k in asked if "dropout" in k)
    assert dropout == [(s, "dropout", layer) for s in (4, 9) for layer in range(3)]


def test_a_single_step_block_never_runs_past_a_models_last_step() -> None:
    # batch 2048 x 1100 hidden units: the dropout memory cap allows one step per block; 3 steps in all
    rng = np.random.default_rng(1)
    X = rng.random((2048, 4), dtype=np.float32)
    y = rng.integers(0, 3, 2048)
    spec = ModelSpec(n_features=4, n_classes=3, hidden=(1100,), dropout=0.5)
    train = TrainSpec(epochs=3, batch_size=2048, precision="f32", engine="batched")
    out: list = []

    def work() -> None:
        out.append(train_batched(X, y, [np.arange(2048)], seeds=[3], model=spec, train=train))
        out.append(train_batched(X, y, [np.arange(2048)], seeds=[3], model=spec, train=train))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert len(out) == 2, "training did not finish: the step blocks overran the models' last step"
    (a,), (b,) = out
    for u, v in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert np.isfinite(u).all()
        np.testing.assert_array_equal(u, v)


def test_the_dropout_masks_drawn_are_the_ones_applied(monkeypatch) -> None:
    # another dropout stream (the same initialisation and batches) must give another model: the masks drawn
    # from torch_generator(seed, "dropout", layer) are applied, not only drawn
    rng = np.random.default_rng(2)
    X = rng.random((64, 6), dtype=np.float32)
    y = np.arange(64) % 3
    spec = ModelSpec(n_features=6, n_classes=3, hidden=(16,), dropout=0.5)
    train = TrainSpec(epochs=2, batch_size=16, precision="f32", engine="batched")
    (a,) = train_batched(X, y, [np.arange(64)], seeds=[4], model=spec, train=train)
    real = stacked.torch_generator

    def other_dropout_stream(seed, *keys):
        return real(seed + 1, *keys) if keys and keys[0] == "dropout" else real(seed, *keys)

    monkeypatch.setattr(stacked, "torch_generator", other_dropout_stream)
    (b,) = train_batched(X, y, [np.arange(64)], seeds=[4], model=spec, train=train)
    assert max(float(np.abs(u - v).max()) for u, v in zip(a.weights, b.weights, strict=True)) > 1e-3

"""Fixtures for the training tests: a digits split, a small network and short recipes."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.training.specs import ModelSpec, TrainSpec


@pytest.fixture(scope="session")
def digits_split(digits) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, pool, test): a fixed shuffle of digits, 1,200 records to train from, 597 to test on."""
    X, y = digits
    perm = np.random.default_rng(12345).permutation(len(X))
    return X, y, perm[:1200], perm[1200:]


@pytest.fixture(scope="session")
def small_spec() -> ModelSpec:
    """64-32-10: small enough that a model trains in milliseconds."""
    return ModelSpec(n_features=64, n_classes=10, hidden=(32,), name="small")


@pytest.fixture(scope="session")
def fast_train() -> TrainSpec:
    """A few epochs: enough to tell models apart, not to converge."""
    return TrainSpec(epochs=3, batch_size=32, lr=3e-3, precision="f32", engine="batched")


@pytest.fixture(scope="session")
def converging_train() -> TrainSpec:
    """Reaches > 0.9 test accuracy on digits with 600 training records."""
    return TrainSpec(epochs=15, batch_size=32, lr=3e-3, precision="f32", engine="batched")


def _subsets(pool: np.ndarray, sizes: list[int], *, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(pool, size, replace=False) for size in sizes]


@pytest.fixture(scope="session")
def subsets():
    """``subsets(pool, sizes, seed=0)``: random subsets of ``pool`` with the given sizes."""
    return _subsets

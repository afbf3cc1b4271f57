"""Shared fixtures: small real data (scikit-learn digits) and seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits: X float32 (1797, 64) in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def fmnist_available() -> bool:
    from pathlib import Path

    return Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()

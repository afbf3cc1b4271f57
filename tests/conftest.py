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


@pytest.fixture(scope="session")
def memorising_target(fmnist_available):
    """A target that memorises 300 Fashion-MNIST images (simple MLP, 80 epochs), and the attacker's knowledge.

    Returns (dataset, split, target MLPParams, AttackerKnowledge); split.target_out holds 900 records the
    target never saw. Shared by the attacks' known-answer tests.
    """
    if not fmnist_available:
        pytest.skip("Fashion-MNIST is not installed (run scripts/setup.sh)")
    from miaudit.attacks import AttackerKnowledge
    from miaudit.data import load_dataset, make_split
    from miaudit.training.specs import ModelSpec, TrainSpec
    from miaudit.training.trainer import train_models

    ds = load_dataset("fashion-mnist")
    split = make_split(
        ds.y, target_size=300, target_test_size=900, n_shadows=0, shadow_train_size=0, shadow_test_size=0, seed=11
    )
    spec = ModelSpec.from_arch("simple", n_features=784, n_classes=10)
    train = TrainSpec(epochs=80)
    (target,) = train_models(ds.X, ds.y, [split.target_in], seeds=[5], model=spec, train=train)
    knowledge = AttackerKnowledge(
        X=ds.X[split.population], y=ds.y[split.population], n_classes=10, model=spec, train=train
    )
    return ds, split, target, knowledge

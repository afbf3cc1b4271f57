"""Shared fixtures: small real data (scikit-learn digits), Fashion-MNIST where the library finds it, seeds.

In CI (environment variable ``CI=true``, set by ``.ci/run``) a missing dataset or browser is a
failure, not a skip: the set-up script installs both, so a skip there would hide a broken set-up.
Skips for hardware (AMX) or a missing C compiler stay skips and say so in their reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

#: CI runs (``.ci/run`` sets ``CI=true``) turn skips for missing data or browsers into failures
IN_CI = os.environ.get("CI") == "true"

#: skip reasons that name something the set-up script installs
_INSTALLABLE = re.compile(r"fashion-mnist|chromium", re.IGNORECASE)
_INSTALL_HINT = (
    "In CI the set-up must provide it: run scripts/setup.sh (apt-get install dataset-fashion-mnist chromium), "
    "or `miaudit data fetch` / MIAUDIT_DATA_DIR for Fashion-MNIST."
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """In CI, a test skipped because Fashion-MNIST or chromium is missing fails instead."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _INSTALLABLE.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true) for something missing: {reason}\n{_INSTALL_HINT}"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's cache of trained models: each gets a fresh one by default.

    The engine's path follows the fixed rules (``MIAUDIT_TUNING=off``): timing paths in every fresh cache
    would cost seconds per test; tests/training/test_tuning.py turns tuning on where it tests it.
    """
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("default-cache")))
    monkeypatch.setenv("MIAUDIT_TUNING", "off")


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits: X float32 (1797, 64) in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def _fashion_mnist_missing() -> str | None:
    """None where the library finds Fashion-MNIST; otherwise its message listing every place searched."""
    from miaudit.data import locate_fashion_mnist
    from miaudit.errors import DataError

    try:
        locate_fashion_mnist()  # the library's own search: $MIAUDIT_DATA_DIR, the user cache, Debian's folder
    except DataError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def fmnist_available() -> bool:
    """Whether Fashion-MNIST is where ``load_dataset("fashion-mnist")`` looks.

    In CI a missing dataset fails every test that asks, with the places searched and how to install it.
    """
    missing = _fashion_mnist_missing()
    if missing is not None and IN_CI:
        pytest.fail(f"Fashion-MNIST is required in CI (CI=true) but missing.\n{missing}", pytrace=False)
    return missing is None


@pytest.fixture(scope="session")
def memorising_target(fmnist_available):
    """A target that memorises 300 Fashion-MNIST images (simple MLP, 80 epochs), and the attacker's knowledge.

    Returns (dataset, split, target MLPParams, AttackerKnowledge); split.target_out holds 900 records the
    target never saw. Shared by the attacks' known-answer tests (tests/attacks/test_known_answers.py).
    """
    if not fmnist_available:
        pytest.skip(
            "Fashion-MNIST not found where miaudit looks ($MIAUDIT_DATA_DIR, the user cache, "
            "/usr/share/datasets/fashion-mnist): run scripts/setup.sh or `miaudit data fetch`"
        )
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

"""Fixtures for the data tests: a tiny fake Fashion-MNIST and an isolated search path."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from miaudit.data import fashion_mnist as fm
from miaudit.data.idx import write_idx

N_TRAIN, N_TEST, SIDE = 30, 10, 4


def fake_arrays() -> dict[str, np.ndarray]:
    """Deterministic tiny stand-ins for the four official files (every class present)."""
    rng = np.random.default_rng(1234)
    return {
        fm.TRAIN_IMAGES: rng.integers(0, 256, size=(N_TRAIN, SIDE, SIDE), dtype=np.uint8),
        fm.TRAIN_LABELS: (np.arange(N_TRAIN) % 10).astype(np.uint8),
        fm.TEST_IMAGES: rng.integers(0, 256, size=(N_TEST, SIDE, SIDE), dtype=np.uint8),
        fm.TEST_LABELS: (np.arange(N_TEST) % 10).astype(np.uint8),
    }


def write_fake_fmnist(directory: Path, *, compress: bool = True) -> Path:
    """Write the fake files into ``directory`` (official .gz names, or decompressed names)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in fake_arrays().items():
        target = directory / (name if compress else name.removesuffix(".gz"))
        write_idx(target, array, compress=compress)
    return directory


def decompressed_sha256(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).hexdigest()


@dataclass
class Places:
    """The isolated search path: every implicit place starts empty."""

    tmp: Path
    cache: Path  # the fashion-mnist dir inside $MIAUDIT_CACHE_DIR
    system: Path
    env_dir: Path  # a dir to point $MIAUDIT_DATA_DIR at (the variable is unset by default)


@pytest.fixture
def fake_checksums(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point SHA256 and SHAPES at the fake data; return the fake checksums."""
    ref = write_fake_fmnist(tmp_path_factory.mktemp("reference"))
    sums = {name: decompressed_sha256(ref / name) for name in fm.FILES}
    monkeypatch.setattr(fm, "SHA256", sums)
    monkeypatch.setattr(fm, "SHAPES", {name: a.shape for name, a in fake_arrays().items()})
    return sums


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    """Isolate the search path from the machine: no env var, a temp cache root, a temp SYSTEM_DIR."""
    monkeypatch.delenv(fm.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(fm.CACHE_DIR_ENV, str(tmp_path / "cache-root"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    return Places(
        tmp=tmp_path,
        cache=tmp_path / "cache-root" / "fashion-mnist",
        system=tmp_path / "system",
        env_dir=tmp_path / "env",
    )


@pytest.fixture
def fake_dir(places: Places, fake_checksums: dict[str, str]) -> Path:
    """A valid fake Fashion-MNIST directory outside the search path."""
    return write_fake_fmnist(places.tmp / "explicit")


@pytest.fixture
def fake_writer():
    """The function that writes a fake Fashion-MNIST directory (see :func:`write_fake_fmnist`)."""
    return write_fake_fmnist


@pytest.fixture
def fake_data() -> dict[str, np.ndarray]:
    """The arrays inside the fake files, by official name."""
    return fake_arrays()


@pytest.fixture
def fake_sizes() -> tuple[int, int, int]:
    """(n_train, n_test, side) of the fake data."""
    return N_TRAIN, N_TEST, SIDE

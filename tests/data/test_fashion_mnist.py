from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from miaudit.data import fashion_mnist as fm
from miaudit.data.idx import write_idx
from miaudit.errors import ChecksumError, DataError

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_SHA256 = dict(fm.SHA256)
N_TRAIN, N_TEST, SIDE = 30, 10, 4  # the fake data of conftest.py


def test_fake_sizes(fake_sizes: tuple[int, int, int]) -> None:
    assert fake_sizes == (N_TRAIN, N_TEST, SIDE)


def test_constants() -> None:
    assert len(fm.FILES) == 4 and set(fm.FILES) == set(fm.SHA256) == set(fm.SHAPES)
    assert len(fm.CLASS_NAMES) == 10 and fm.CLASS_NAMES[0] == "T-shirt/top" and fm.CLASS_NAMES[9] == "Ankle boot"
    assert fm.DEFAULT_URL in fm.MIRRORS and fm.SYSTEM_DIR == REAL_DIR


def test_load_fake(fake_dir: Path, fake_data: dict[str, np.ndarray]) -> None:
    ds = fm.load_fashion_mnist(fake_dir)
    assert ds.X.shape == (N_TRAIN + N_TEST, SIDE * SIDE) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.n_classes == 10 and ds.class_names == fm.CLASS_NAMES
    expected = np.concatenate([fake_data[fm.TRAIN_IMAGES], fake_data[fm.TEST_IMAGES]]).reshape(len(ds.X), -1)
    np.testing.assert_array_equal(ds.X, expected.astype(np.float32) / 255)  # train first, then test
    np.testing.assert_array_equal(ds.y, np.concatenate([fake_data[fm.TRAIN_LABELS], fake_data[fm.TEST_LABELS]]))
    assert ds.source == str(fake_dir.resolve())
    assert not ds.X.flags.writeable  # cached arrays are protected


def test_load_is_cached_and_invalidated_by_file_changes(fake_dir: Path, fake_checksums: dict[str, str]) -> None:
    first = fm.load_fashion_mnist(fake_dir)
    assert fm.load_fashion_mnist(fake_dir) is first
    assert fm.load_fashion_mnist(str(fake_dir) + "/") is first
    # rewriting a file (new size/mtime) is noticed: here it no longer matches the checksum
    labels = fake_dir / fm.TEST_LABELS
    write_idx(labels, np.zeros(N_TEST, np.uint8))
    os.utime(labels, ns=(1, 1))
    with pytest.raises(ChecksumError):
        fm.load_fashion_mnist(fake_dir)


def test_decompressed_files_accepted(places, fake_checksums, fake_writer) -> None:
    raw_dir = fake_writer(places.tmp / "raw", compress=False)
    assert not list(raw_dir.glob("*.gz"))
    assert fm.load_fashion_mnist(raw_dir).n_samples == N_TRAIN + N_TEST


def test_wrong_checksum(fake_dir: Path, fake_checksums: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    name = fm.TRAIN_LABELS
    actual = fake_checksums[name]
    monkeypatch.setitem(fm.SHA256, name, "0" * 64)
    pattern = (
        rf"(?s){re.escape(name)}.*sha256 of the decompressed contents is {actual}, "
        rf"expected {'0' * 64}.*miaudit data fetch.*dataset-fashion-mnist"
    )
    with pytest.raises(ChecksumError, match=pattern):
        fm.load_fashion_mnist(fake_dir)
    assert fm.load_fashion_mnist(fake_dir, verify=False).n_samples == N_TRAIN + N_TEST


def test_wrong_shape(fake_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fm.SHAPES, fm.TEST_IMAGES, (10000, 28, 28))
    with pytest.raises(
        DataError,
        match=rf"(?s){re.escape(fm.TEST_IMAGES)}.*expected an array of shape "
        r"\(10000, 28, 28\).*got shape \(10, 4, 4\).*miaudit data fetch",
    ):
        fm.load_fashion_mnist(fake_dir)


def test_labels_out_of_range(fake_dir: Path) -> None:
    write_idx(fake_dir / fm.TRAIN_LABELS, np.full(N_TRAIN, 10, np.uint8))
    with pytest.raises(DataError, match=rf"{re.escape(fm.TRAIN_LABELS)}: labels must lie in 0..9, found 10"):
        fm.load_fashion_mnist(fake_dir, verify=False)


def test_mismatched_counts(fake_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx(fake_dir / fm.TEST_LABELS, np.zeros(N_TEST - 1, np.uint8))
    monkeypatch.setitem(fm.SHAPES, fm.TEST_LABELS, (N_TEST - 1,))
    with pytest.raises(DataError, match=r"has 10 images but t10k-labels-idx1-ubyte.gz has 9 labels"):
        fm.load_fashion_mnist(fake_dir, verify=False)


def test_corrupt_file_names_file_and_fix(fake_dir: Path) -> None:
    path = fake_dir / fm.TEST_IMAGES
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=rf"(?s){re.escape(fm.TEST_IMAGES)}.*corrupt gzip.*miaudit data fetch"):
        fm.load_fashion_mnist(fake_dir, verify=False)


# ------------------------------------------------------------------------------------------------
# search path


def test_nothing_found_lists_every_place(places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fm.DATA_DIR_ENV, str(places.env_dir))
    with pytest.raises(DataError) as info:
        fm.locate_fashion_mnist()
    message = str(info.value)
    for place in (places.env_dir, places.cache, places.system):
        assert str(place) in message
    assert message.index(str(places.env_dir)) < message.index(str(places.cache)) < message.index(str(places.system))
    assert "miaudit data fetch" in message and "apt-get install dataset-fashion-mnist" in message
    assert "MIAUDIT_DATA_DIR" in message and "--data-dir" in message


def test_explicit_dir_missing_files_does_not_fall_back(places, fake_checksums, fake_writer) -> None:
    fake_writer(places.system)  # a valid fallback exists...
    partial = fake_writer(places.tmp / "partial")
    (partial / fm.TEST_LABELS).unlink()
    with pytest.raises(
        DataError,
        match=rf"(?s)given data directory.*{re.escape(str(partial))}.*"
        rf"missing {re.escape(fm.TEST_LABELS)}.*miaudit data fetch",
    ):
        fm.locate_fashion_mnist(partial)  # ...but is not used
    with pytest.raises(DataError, match="directory does not exist"):
        fm.load_fashion_mnist(places.tmp / "nowhere")


def test_search_order(places, fake_checksums, fake_writer, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = fake_writer(places.tmp / "explicit")
    fake_writer(places.system)
    assert fm.locate_fashion_mnist() == places.system.resolve()
    fake_writer(places.cache)
    assert fm.locate_fashion_mnist() == places.cache.resolve()
    monkeypatch.setenv(fm.DATA_DIR_ENV, str(fake_writer(places.env_dir)))
    assert fm.locate_fashion_mnist() == places.env_dir.resolve()
    assert fm.locate_fashion_mnist(explicit) == explicit.resolve()
    assert fm.load_fashion_mnist().source == str(places.env_dir.resolve())


def test_invalid_env_dir_falls_through_with_warning(
    places, fake_checksums, fake_writer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_writer(places.system)
    monkeypatch.setenv(fm.DATA_DIR_ENV, str(places.env_dir))
    with caplog.at_level(logging.WARNING, logger=fm.__name__):
        assert fm.locate_fashion_mnist() == places.system.resolve()
    assert "MIAUDIT_DATA_DIR" in caplog.text and "looking further" in caplog.text


def test_cache_dir_env(places, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fm.default_cache_dir() == places.cache
    monkeypatch.delenv(fm.CACHE_DIR_ENV)
    assert fm.default_cache_dir().name == "fashion-mnist" and "miaudit" in str(fm.default_cache_dir())


def test_info(places, fake_checksums, fake_writer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_writer(places.cache)
    info = fm.fashion_mnist_info()
    assert isinstance(info, fm.FashionMNISTInfo)
    assert info.directory == str(places.cache.resolve())
    assert [s.path for s in info.searched] == [str(places.cache), str(places.system)]
    assert [s.used for s in info.searched] == [True, False]
    assert [s.found for s in info.searched] == [True, False]
    assert info.searched[1].missing == fm.FILES
    assert (info.n_train, info.n_test, info.n_total) == (N_TRAIN, N_TEST, N_TRAIN + N_TEST)
    assert [c.count for c in info.records_per_class] == [4] * 10
    assert [c.label for c in info.records_per_class] == list(range(10))
    assert info.records_per_class[9].name == "Ankle boot"
    assert info.checksums_ok is True
    assert [f.name for f in info.files] == list(fm.FILES)
    assert all(f.sha256_ok and f.size_bytes == Path(f.path).stat().st_size > 0 for f in info.files)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.checksums_ok = False  # type: ignore[misc]
    monkeypatch.setitem(fm.SHA256, fm.TEST_IMAGES, "f" * 64)
    info = fm.fashion_mnist_info()  # mismatches are reported, not raised
    assert [f.sha256_ok for f in info.files] == [f.name != fm.TEST_IMAGES for f in info.files]
    assert info.checksums_ok is False
    unchecked = fm.fashion_mnist_info(verify=False)
    assert unchecked.checksums_ok is None and all(f.sha256_ok is None for f in unchecked.files)


def test_info_to_dict_is_json(places, fake_checksums, fake_writer) -> None:
    fake_writer(places.cache)
    info = fm.fashion_mnist_info()
    d = json.loads(json.dumps(info.to_dict()))
    assert d["dataset"] == "fashion-mnist" and d["directory"] == info.directory
    assert d["n_records"] == {"train": N_TRAIN, "test": N_TEST, "total": N_TRAIN + N_TEST}
    assert d["records_per_class"][9] == {"label": 9, "name": "Ankle boot", "count": 4}
    assert list(d["files"]) == list(fm.FILES)
    assert d["files"][fm.TRAIN_LABELS] == {
        "path": str(places.cache / fm.TRAIN_LABELS),
        "size_bytes": (places.cache / fm.TRAIN_LABELS).stat().st_size,
        "sha256_ok": True,
    }
    assert d["searched"][1]["missing"] == list(fm.FILES) and d["searched"][0]["used"] is True
    assert d["checksums_ok"] is True


def test_info_nothing_found(places) -> None:
    with pytest.raises(DataError, match="Fashion-MNIST not found"):
        fm.fashion_mnist_info()


def test_real_data(fmnist_available: bool) -> None:
    if not fmnist_available:  # in CI this fixture fails instead
        pytest.skip("real Fashion-MNIST not found where the library looks (apt-get install dataset-fashion-mnist)")
    real = fm.locate_fashion_mnist()  # wherever the library finds it, not one fixed folder
    assert fm.SHA256 == OFFICIAL_SHA256
    ds = fm.load_fashion_mnist(real)  # verify=True: all four checksums match
    assert ds.X.shape == (70000, 784) and ds.y.shape == (70000,)
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert float(ds.X.min()) == 0.0 and float(ds.X.max()) == 1.0
    assert np.bincount(ds.y).tolist() == [7000] * 10
    info = fm.fashion_mnist_info(real)  # hashes were memoised by the load
    assert info.checksums_ok is True and info.n_total == 70000
    assert [c.count for c in info.records_per_class] == [7000] * 10

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from miaudit.data import DATASETS, Dataset, load_arrays, load_dataset
from miaudit.errors import ChecksumError, ConfigError, DataError


def _ds(**kw) -> Dataset:
    args = {
        "name": "toy",
        "X": np.zeros((4, 2), np.float32),
        "y": np.array([0, 1, 2, 1]),
        "n_classes": 3,
        "class_names": ("a", "b", "c"),
        "source": "test",
    }
    return Dataset(**(args | kw))


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.X.shape == (1797, 64) and ds.n_samples == 1797 and ds.n_features == 64
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert ds.n_classes == 10 and ds.class_names[3] == "3" and ds.source == "scikit-learn digits"
    assert load_dataset(" Digits ") is ds  # names are normalised; the load is cached


def test_subset_classes() -> None:
    ds = load_dataset("digits")
    sub = ds.subset_classes(3)
    assert sub.n_classes == 3 and sub.class_names == ("0", "1", "2")
    assert set(np.unique(sub.y)) == {0, 1, 2} and sub.n_samples == int((ds.y < 3).sum())
    np.testing.assert_array_equal(sub.X, ds.X[ds.y < 3])
    assert ds.subset_classes(10) is ds
    assert load_dataset("digits", classes=3).n_samples == sub.n_samples


@pytest.mark.parametrize(
    ("n", "error", "pattern"),
    [
        (1, ConfigError, "between 2 and 10 for dataset 'digits', got 1"),
        (11, ConfigError, "between 2 and 10 for dataset 'digits', got 11"),
        (2.0, ConfigError, "n_classes must be an int"),
    ],
)
def test_subset_classes_errors(n: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        load_dataset("digits").subset_classes(n)  # type: ignore[arg-type]


def test_unknown_name() -> None:
    assert DATASETS == ("fashion-mnist", "digits")
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar10'; allowed names are fashion-mnist, digits"):
        load_dataset("cifar10")
    with pytest.raises(ConfigError, match="dataset name must be a str, one of fashion-mnist, digits"):
        load_dataset(None)  # type: ignore[arg-type]


def test_fashion_mnist_by_name(fake_dir: Path) -> None:
    ds = load_dataset("fashion_mnist", data_dir=fake_dir, classes=2)
    assert ds.name == "fashion-mnist" and ds.n_classes == 2 and set(np.unique(ds.y)) == {0, 1}
    assert ds.class_names == ("T-shirt/top", "Trouser")


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"X": np.zeros((4, 2), np.float64)}, "X must have dtype float32, got float64"),
        (
            {"X": np.zeros(4, np.float32)},
            r"X must be an ndarray of shape \(n_samples, n_features\), got ndim 1",
        ),
        ({"y": np.array([0, 1, 2, 1], np.int32)}, "y must have dtype int64"),
        ({"y": np.array([0, 1, 2])}, "X has 4 rows but y has 3 labels"),
        ({"y": np.array([0, 1, 3, 1])}, r"labels must lie in 0..2, got min 0 and max 3"),
        ({"X": np.full((4, 2), np.nan, np.float32)}, "NaN or infinite"),
        (
            {"X": np.full((4, 2), 2, np.float32)},
            r"X values must lie in \[0, 1\], got min 2 and max 2; rescale",
        ),
        ({"class_names": ("a", "b")}, "class_names has 2 names but n_classes is 3"),
        ({"n_classes": 1, "class_names": ("a",)}, "n_classes must be at least 2"),
        ({"X": np.zeros((0, 2), np.float32), "y": np.zeros(0, np.int64)}, "empty dataset"),
    ],
)
def test_dataset_validation(kw: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        _ds(**kw)


def test_load_npz(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    X = np.random.default_rng(0).random((20, 3, 3))
    np.savez(path, X=X, y=np.arange(20) % 4, class_names=np.array(["w", "x", "y", "z"]))
    ds = load_arrays(path)
    assert ds.name == "mine" and ds.X.shape == (20, 9) and ds.X.dtype == np.float32
    assert ds.n_classes == 4 and ds.class_names == ("w", "x", "y", "z") and ds.source == str(path)
    np.testing.assert_allclose(ds.X, X.reshape(20, 9), rtol=1e-6)


def test_load_csv_with_label_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("f1,label,f2\n0.1,1,0.2\n0.3,0,0.4\n0.5,2.0,0.6\n")
    ds = load_arrays(path, name="custom")
    assert ds.name == "custom" and ds.y.tolist() == [1, 0, 2]
    np.testing.assert_allclose(ds.X, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], rtol=1e-6)


def test_load_csv_without_header_uses_last_column(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("0.1,0.2,1\n0.3,0.4,0\n")
    ds = load_arrays(path)
    assert ds.y.tolist() == [1, 0] and ds.X.shape == (2, 2)


def test_scale(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("a,b,target\n0,5,0\n255,5,1\n51,5,1\n")  # no "label" header: last column
    with pytest.raises(DataError, match=r"features must lie in \[0, 1\], got min 0 and max 255.*scale=True"):
        load_arrays(path)
    ds = load_arrays(path, scale=True)
    np.testing.assert_allclose(ds.X, [[0, 0], [1, 0], [0.2, 0]], rtol=1e-6)


def test_missing_classes_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gap.npz"
    np.savez(path, X=np.zeros((3, 2)), y=np.array([0, 2, 2]))
    with caplog.at_level(logging.WARNING):
        assert load_arrays(path).n_classes == 3
    assert "classes [1] have no records" in caplog.text


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda t: _npz(t, X=np.zeros((3, 2))), r"bad.npz: missing array\(s\) y; found \['X'\].*np.savez"),
        (lambda t: _npz(t, X=np.zeros((3, 2)), y=np.zeros(4)), "X has 3 records but y has 4 labels"),
        (
            lambda t: _npz(t, X=np.full((2, 2), np.nan), y=np.array([0, 1])),
            r"NaN or infinite.*record 0, feature 0",
        ),
        (
            lambda t: _npz(t, X=np.zeros((2, 2)), y=np.array([0.0, 1.5])),
            "labels must be integers.*record 1 has 1.5",
        ),
        (
            lambda t: _npz(t, X=np.zeros((2, 2)), y=np.array([0, -1])),
            "labels must be integers 0..n_classes-1, got -1",
        ),
        (lambda t: _npz(t, X=np.zeros((2, 2)), y=np.array([np.nan, 1])), "label of record 0 is nan"),
        (lambda t: _npz(t, X=np.zeros((2, 2)), y=np.array([0, 0])), "need at least 2 classes"),
        (
            lambda t: _npz(t, X=np.zeros(2), y=np.array([0, 1])),
            r"X must have shape \(n_samples, n_features\)",
        ),
        (
            lambda t: _npz(t, X=np.zeros((2, 2)), y=np.array([0, 1]), class_names=np.array(["a"])),
            "class_names has 1 names but labels run 0..1",
        ),
        (
            lambda t: _csv(t, "a,label\n0.1,cat\n0.2,dog\n"),
            r"record 0 \(line 2\) has 'cat' in column 1; map class names",
        ),
        (lambda t: _csv(t, "a,label\n0.1,1\n0.2\n"), "line 3 has 1 fields, expected 2"),
        (lambda t: _csv(t, "a,label\nx,1\n0.2,0\n"), "non-numeric feature value"),
        (lambda t: _csv(t, "a,label\nnan,1\n0.2,0\n"), "NaN or infinite"),
        (lambda t: _csv(t, ""), "the CSV file is empty"),
        (lambda t: _csv(t, "a,label\n"), "has a header but no records"),
        (lambda t: _csv(t, "1\n0\n"), "need at least one feature column and a label column"),
        (lambda t: t / "absent.npz", "absent.npz: file does not exist"),
        (
            lambda t: (t / "x.json").write_text("{}") and t / "x.json",
            r"unsupported file type '.json'; use .npz",
        ),
        (lambda t: (t / "junk.npz").write_bytes(b"not a zip") and t / "junk.npz", "cannot read as .npz"),
    ],
)
def test_load_arrays_errors(tmp_path: Path, make, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_arrays(make(tmp_path))


# --------------------------------------------------------------------------------------------------
# The in-process memo of Fashion-MNIST must notice a file rewritten on disk


def _rewrite_same_size(path: Path, *, keep_mtime: bool) -> None:
    """Give the (decompressed) IDX file other pixel values, same name and same number of bytes."""
    old = path.read_bytes()
    header = 4 + 4 * old[3]  # magic (4 bytes, the last one the number of dimensions), then the sizes
    stat = path.stat()
    new = old[:header] + bytes(255 - b for b in old[header:])
    assert len(new) == len(old) and new != old
    path.write_bytes(new)
    if keep_mtime:  # as `cp -p`, `rsync -t` or `tar x` leave it
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.fixture
def raw_fmnist(places, fake_checksums, fake_writer) -> Path:
    """Decompressed fake Fashion-MNIST files: a rewrite with other content keeps the size exactly."""
    return fake_writer(places.tmp / "raw", compress=False)


def test_fashion_mnist_memo_notices_a_rewritten_file(raw_fmnist: Path) -> None:
    from miaudit.data import fashion_mnist as fm

    images = raw_fmnist / fm.TRAIN_IMAGES.removesuffix(".gz")
    first = load_dataset("fashion-mnist", data_dir=raw_fmnist, verify=False)
    assert load_dataset("fashion-mnist", data_dir=raw_fmnist, verify=False) is first  # memoised
    assert fm.fashion_mnist_info(raw_fmnist).checksums_ok is True  # digests memoised too
    before = first.X.copy()
    _rewrite_same_size(images, keep_mtime=False)
    again = load_dataset("fashion-mnist", data_dir=raw_fmnist, verify=False)
    n_train = fm.SHAPES[fm.TRAIN_IMAGES][0]
    np.testing.assert_allclose(again.X[:n_train], 1.0 - before[:n_train], atol=1e-6)  # the new pixels
    np.testing.assert_array_equal(again.X[n_train:], before[n_train:])  # the test images are unchanged
    info = fm.fashion_mnist_info(raw_fmnist)
    ok = {f.name: f.sha256_ok for f in info.files}
    assert ok == {name: name != fm.TRAIN_IMAGES for name in fm.FILES} and info.checksums_ok is False
    with pytest.raises(ChecksumError, match="sha256 of the decompressed contents"):
        load_dataset("fashion-mnist", data_dir=raw_fmnist)


def test_fashion_mnist_memo_notices_a_rewrite_that_keeps_the_mtime(raw_fmnist: Path) -> None:
    from miaudit.data import fashion_mnist as fm

    images = raw_fmnist / fm.TRAIN_IMAGES.removesuffix(".gz")
    before = load_dataset("fashion-mnist", data_dir=raw_fmnist, verify=False).X.copy()
    _rewrite_same_size(images, keep_mtime=True)
    with pytest.raises(ChecksumError, match="sha256 of the decompressed contents"):
        load_dataset("fashion-mnist", data_dir=raw_fmnist)
    again = load_dataset("fashion-mnist", data_dir=raw_fmnist, verify=False)
    assert not np.array_equal(again.X, before)

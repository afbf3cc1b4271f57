"""Datasets: a validated container and loaders by name or from a user's own files.

Every loader returns a :class:`~miaudit.data.base.Dataset` (re-exported here): features as float32 in
[0, 1], labels as int64 in ``0 .. n_classes - 1``. Datasets are chosen by name through a small registry
(:data:`DATASETS`).
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from miaudit.data.base import Dataset
from miaudit.data.fashion_mnist import load_fashion_mnist
from miaudit.errors import ConfigError, DataError

__all__ = ["DATASETS", "Dataset", "load_arrays", "load_dataset", "load_digits"]

logger = logging.getLogger(__name__)


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False


@functools.cache
def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, bundled with scikit-learn (no download).

    Returns
    -------
    Dataset
        1797 records, X an ndarray of shape (1797, 64) scaled from 0..16 to [0, 1], 10 classes.
        Cached in-process; the arrays are read-only.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    _readonly(X, y)
    return Dataset(
        name="digits",
        X=X,
        y=y,
        n_classes=10,
        class_names=tuple(str(c) for c in range(10)),
        source="scikit-learn digits",
    )


def _load_fashion_mnist(data_dir: str | Path | None, verify: bool) -> Dataset:
    return load_fashion_mnist(data_dir, verify=verify)


def _load_digits(data_dir: str | Path | None, verify: bool) -> Dataset:
    if data_dir is not None:
        logger.debug("digits is bundled with scikit-learn; ignoring data_dir=%s", data_dir)
    return load_digits()


_LOADERS: dict[str, Callable[[str | Path | None, bool], Dataset]] = {
    "fashion-mnist": _load_fashion_mnist,
    "digits": _load_digits,
}

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    classes: int | None = None,
    verify: bool = True,
) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (``"fashion-mnist"``, ``"digits"``); case and ``_`` vs ``-`` are ignored.
    data_dir : str or Path, optional
        Directory holding the files (Fashion-MNIST only; see
        :func:`miaudit.data.fashion_mnist.locate_fashion_mnist` for the search order without it).
    classes : int, optional
        Keep only the first ``classes`` classes (see :meth:`Dataset.subset_classes`).
    verify : bool, default=True
        Check the files' sha256 against the official ones.

    Returns
    -------
    Dataset

    Raises
    ------
    ConfigError
        If ``name`` is unknown or ``classes`` is out of range.
    DataError
        If the data is missing or corrupt.
    """
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a str, one of {', '.join(DATASETS)}; got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key not in _LOADERS:
        raise ConfigError(
            f"unknown dataset {name!r}; allowed names are {', '.join(DATASETS)} "
            "(for your own data use load_arrays(path) with a .npz or .csv file)"
        )
    dataset = _LOADERS[key](data_dir, verify)
    if classes is not None:
        dataset = dataset.subset_classes(classes)
    return dataset


# --------------------------------------------------------------------------------------------------
# A user's own data


def _labels_to_int(values: np.ndarray, where: str) -> np.ndarray:
    """Validate labels (numeric, finite, integral, >= 0) and return them as int64."""
    if values.dtype.kind in "iub":
        labels = values.astype(np.int64)
    elif values.dtype.kind == "f":
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{where}: label of record {bad} is {values[bad]}; every record needs a label")
        if not np.array_equal(values, np.round(values)):
            bad = int(np.flatnonzero(values != np.round(values))[0])
            raise DataError(f"{where}: labels must be integers 0..n_classes-1, record {bad} has {values[bad]:g}")
        labels = values.astype(np.int64)
    else:
        raise DataError(
            f"{where}: labels must be integers 0..n_classes-1, got dtype {values.dtype}; "
            "map class names to integers first"
        )
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: labels must be integers 0..n_classes-1, got {int(labels.min())}")
    return labels


def _features(values: np.ndarray, where: str, scale: bool) -> np.ndarray:
    if values.dtype.kind not in "iubf":
        raise DataError(f"{where}: features must be numeric, got dtype {values.dtype}")
    if values.ndim < 2:
        raise DataError(
            f"{where}: X must have shape (n_samples, n_features) (or (n_samples, ...) to be flattened), "
            f"got shape {values.shape}"
        )
    X = values.reshape(len(values), -1).astype(np.float64)
    if not np.isfinite(X).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(X))[0])
        raise DataError(
            f"{where}: X contains NaN or infinite values (first at record {row}, feature {col}); remove or impute them"
        )
    if scale and X.size:
        lo, hi = X.min(axis=0), X.max(axis=0)
        X = (X - lo) / np.where(hi > lo, hi - lo, 1.0)
    elif X.size and (X.min() < 0 or X.max() > 1):
        raise DataError(
            f"{where}: features must lie in [0, 1], got min {X.min():g} and max {X.max():g}; "
            "rescale them (for 8-bit images divide by 255) or pass scale=True to min-max scale each feature"
        )
    return np.clip(X, 0.0, 1.0).astype(np.float32)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in ("X", "y") if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; found {sorted(keys) or 'none'}. "
                    "Save your data with np.savez(path, X=features, y=labels)"
                )
            X, y = npz["X"], npz["y"]
            names = tuple(str(n) for n in npz["class_names"]) if "class_names" in keys else None
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read as .npz ({exc}); save your data with np.savez(path, X=features, y=labels) "
            "(object arrays are not accepted)"
        ) from exc
    if y.ndim != 1:
        raise DataError(f"{path}: y must have shape (n_samples,), got {y.shape}")
    return X, y, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: the CSV file is empty; it needs one row per record and a label column")
    first = rows[0][1]
    header = None if all(_is_number(v) for v in first) else [v.strip() for v in first]
    body = rows[1:] if header is not None else rows
    width = len(first)
    if width < 2:
        raise DataError(f"{path}: need at least one feature column and a label column, got {width} column(s)")
    for line, row in body:
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} fields, expected {width} like the first line")
    if not body:
        raise DataError(f"{path}: the CSV file has a header but no records")
    label_col = header.index("label") if header is not None and "label" in header else width - 1
    cells = np.char.strip(np.asarray([row for _, row in body], dtype=str))
    label_cells = [str(v) for v in cells[:, label_col]]
    try:
        X = np.delete(cells, label_col, axis=1).astype(np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric feature value ({exc}); every feature must be a number") from exc
    for i, value in enumerate(label_cells):
        if not _is_number(value):
            raise DataError(
                f"{path}: labels must be integers 0..n_classes-1, record {i} (line {body[i][0]}) has "
                f"{value!r} in column {label_col}; map class names to integers first"
            )
    return X, np.asarray(label_cells, dtype=np.float64), None


def load_arrays(
    path: str | Path,
    *,
    name: str | None = None,
    scale: bool = False,
) -> Dataset:
    """Load a user's own labelled data from a .npz or .csv file.

    Parameters
    ----------
    path : str or Path
        ``.npz``: arrays ``X`` (shape (n_samples, n_features), or (n_samples, ...) which is flattened)
        and ``y`` (shape (n_samples,)), optionally ``class_names``. ``.csv``: one record per line,
        all numeric; the label is the column named ``label`` if the first line is a header with that
        name, otherwise the last column.
    name : str, optional
        Dataset name; defaults to the file's stem.
    scale : bool, default=False
        Min-max scale each feature to [0, 1]. Without it, features outside [0, 1] are an error.

    Returns
    -------
    Dataset
        ``n_classes`` is ``max(y) + 1``.

    Raises
    ------
    DataError
        For a missing file or array, an unsupported suffix, NaN or infinite values, non-integer or
        negative labels, mismatched lengths, or features outside [0, 1] without ``scale``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file does not exist; pass a .npz or .csv file with features and labels")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        X_raw, y_raw, names = _read_npz(path)
    elif suffix == ".csv":
        X_raw, y_raw, names = _read_csv(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .npz (arrays X and y) or .csv")
    where = str(path)
    if len(X_raw) != len(y_raw):
        raise DataError(f"{where}: X has {len(X_raw)} records but y has {len(y_raw)} labels; they must match")
    if len(y_raw) == 0:
        raise DataError(f"{where}: no records")
    y = _labels_to_int(np.asarray(y_raw), where)
    X = _features(np.asarray(X_raw), where, scale)
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise DataError(f"{where}: need at least 2 classes, all labels are {int(y.max())}")
    empty = np.flatnonzero(np.bincount(y, minlength=n_classes) == 0)
    if empty.size:
        logger.warning("%s: classes %s have no records (labels run 0..%d)", where, empty.tolist(), n_classes - 1)
    if names is None:
        names = tuple(str(c) for c in range(n_classes))
    elif len(names) != n_classes:
        raise DataError(
            f"{where}: class_names has {len(names)} names but labels run 0..{n_classes - 1}; "
            f"give exactly {n_classes} names"
        )
    return Dataset(name=name or path.stem, X=X, y=y, n_classes=n_classes, class_names=names, source=where)

"""A user's own data for an audit: CSV, Parquet, NPZ, IDX files and image folders, read into one :class:`Table`.

:func:`read_table` chooses the reader by the file's suffix (a directory is an image folder, read by
:mod:`miaudit.data.images`, as are NPZ and IDX files). Table features are kept as stored (the audited model
expects its own inputs); images and uint8 IDX files are scaled to [0, 1]. Every record has a string id (an
id column's value, else its row number) that member lists and messages use; members and content identity
live in :mod:`miaudit.data.membership`.

Every problem with a file is a :class:`~miaudit.errors.DataError` that names the file, the problem and the
fix; a wrong combination of options is a :class:`~miaudit.errors.ConfigError`. Parquet needs the ``audit``
extra (pyarrow), imported only when a Parquet file is read.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._extras import require_extra
from miaudit.data.images import Records, is_idx_path, read_idx_pair, read_image_folder, read_npz
from miaudit.errors import ConfigError, DataError

__all__ = ["TABLE_SUFFIXES", "Table", "encode_labels", "read_table"]

logger = logging.getLogger(__name__)

#: File suffixes :func:`read_table` reads (besides IDX names such as ``train-images-idx3-ubyte.gz`` and folders).
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq", ".npz", ".idx")
_DEFAULT_ID = "id"
_CHUNK_ROWS = 4096


def _few(values: Sequence[Any] | np.ndarray, n: int = 5) -> str:
    """The first ``n`` values, quoted, and how many more: ``'a', 'b' and 3 more``."""
    shown = ", ".join(repr(str(v)) for v in list(values[:n]))
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def _text(value: Any) -> str:
    """A cell as text, stripped: None and NaN become "", integral floats "3" (not "3.0"), bytes are decoded."""
    if value is None:
        return ""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace").strip()
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            return ""
        return str(int(number)) if number.is_integer() and abs(number) < 2**63 else repr(number)
    text = str(value).strip()
    while text.endswith("\x00"):  # numpy strings drop trailing NULs: drop them here, so ids stay as checked
        text = text.rstrip("\x00").rstrip()
    return text


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (a list inside stays one element, never a second axis)."""
    return np.fromiter(values, dtype=object, count=len(values))


@dataclass(frozen=True, eq=False)
class Table:
    """A user's labelled records, as read by :func:`read_table`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        float32 features, finite; records of images or IDX files are flattened in C order.
    labels : ndarray of shape (n_samples,)
        Raw labels as read: int64 if all are integers, else str objects (see :func:`encode_labels`).
    ids : ndarray of shape (n_samples,)
        Record ids as numpy strings, unique: the id column's values, else row numbers ``"0", "1", ...``.
    feature_names : tuple of str
        One name per feature (``"x0", "x1", ...`` for arrays and images).
    record_shape : tuple of int or None
        The shape of one record before flattening, e.g. ``(28, 28)``; None for plain tables.
    source : str
        Where the records came from (the path), for messages.
    extra_columns : mapping of str to ndarray of shape (n_samples,)
        Columns kept out of the features (``read_table(exclude_columns=...)``), as read.
    """

    X: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    feature_names: tuple[str, ...]
    record_shape: tuple[int, ...] | None
    source: str
    extra_columns: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X = self.X
        if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != np.float32:
            raise ValueError(f"Table.X must be a float32 ndarray of shape (n_samples, n_features), got {X!r:.80}")
        n = X.shape[0]
        for name, column in (("labels", self.labels), ("ids", self.ids), *self.extra_columns.items()):
            if not isinstance(column, np.ndarray) or column.shape != (n,):
                got = column.shape if isinstance(column, np.ndarray) else type(column).__name__
                raise ValueError(f"Table.{name} must be an ndarray of shape ({n},), got {got}")
        if len(self.feature_names) != X.shape[1]:
            raise ValueError(f"Table has {X.shape[1]} features but {len(self.feature_names)} feature_names")
        if self.record_shape is not None and int(np.prod(self.record_shape)) != X.shape[1]:
            raise ValueError(f"Table.record_shape {self.record_shape} does not hold {X.shape[1]} features")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, mask_or_index: np.ndarray | Sequence[int] | Sequence[bool]) -> Table:
        """The records selected by a boolean mask of shape (n_samples,) or by integer indices (in that order).

        Raises
        ------
        ValueError
            If the mask has the wrong length or an index is out of range.
        TypeError
            If the selection is neither boolean nor integer.
        """
        index = np.asarray(mask_or_index)
        if index.size == 0:
            index = index.astype(np.intp).reshape(0)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"mask must have shape ({len(self)},), got {index.shape}")
        elif index.dtype.kind in "iu":
            if index.ndim != 1 or (index.size and (index.min() < -len(self) or index.max() >= len(self))):
                raise ValueError(f"indices must be a 1-D array in -{len(self)}..{len(self) - 1}")
        else:
            raise TypeError(f"subset takes a boolean mask or integer indices, got dtype {index.dtype}")
        return Table(
            X=self.X[index],
            labels=self.labels[index],
            ids=self.ids[index],
            feature_names=self.feature_names,
            record_shape=self.record_shape,
            source=self.source,
            extra_columns={name: column[index] for name, column in self.extra_columns.items()},
        )


# --------------------------------------------------------------------------------------------------
# Tables: which column plays which part, and the two readers (CSV, Parquet)


@dataclass(frozen=True)
class _Columns:
    label: str
    id: str | None
    features: tuple[str, ...]
    extra: tuple[str, ...]


@dataclass
class _Parts:
    """What a table reader found: features as float64 (NaN where a cell is empty), raw kept columns."""

    X: np.ndarray
    kept: dict[str, np.ndarray]
    not_numeric: dict[str, tuple[int, str]]  # feature column -> (first bad row, its value)


def _select_columns(
    names: list[str],
    *,
    where: str,
    label_column: str,
    id_column: str | None,
    feature_columns: Sequence[str] | None,
    exclude_columns: Sequence[str],
) -> _Columns:
    present = f"the columns present are {_few(names, 12)}"
    dups = sorted(name for name, count in Counter(names).items() if count > 1)
    if dups:
        raise DataError(f"{where}: the header names columns more than once ({_few(dups)}); give each column one name")
    if "" in names:
        raise DataError(f"{where}: column {names.index('') + 1} has no name in the header; name every column")
    if label_column not in names:
        hint = ""
        if all(_is_number(n) for n in names):
            hint = "; the first line must be a header naming the columns"
        elif len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
            hint = "; the file seems not to be comma-separated: save it with ',' between fields"
        raise DataError(f"{where}: no label column {label_column!r} ({present}); pass --label-column NAME{hint}")
    if id_column is not None and id_column not in names:
        if id_column != _DEFAULT_ID:
            raise DataError(
                f"{where}: no id column {id_column!r} ({present}); pass the right --id-column, or none to use "
                "row numbers as ids"
            )
        id_column = None
    roles = {label_column: "label", **({id_column: "id"} if id_column else {})}
    for name in exclude_columns:
        if name not in names:
            raise DataError(f"{where}: no column {name!r} ({present})")
        if name in roles:
            raise ConfigError(f"column {name!r} is the {roles[name]} column; it cannot also be kept apart")
    if feature_columns is None:
        features = tuple(n for n in names if n not in roles and n not in exclude_columns)
    else:
        features = tuple(feature_columns)
        missing = [n for n in features if n not in names]
        if missing:
            raise DataError(f"{where}: no feature column(s) {_few(missing)} ({present}); check --feature-columns")
        clash = [n for n in features if n in roles or n in exclude_columns]
        if clash:
            raise ConfigError(f"--feature-columns names {_few(clash)}, the label, id or member column; leave it out")
        if len(set(features)) != len(features):
            raise ConfigError(f"--feature-columns names a column twice: {_few(features, 12)}")
    if not features:
        raise DataError(f"{where}: no feature columns besides the label and id columns ({present})")
    return _Columns(label_column, id_column, features, tuple(exclude_columns))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_floats(cells: Sequence[str]) -> tuple[np.ndarray, int | None]:
    """Cells as float64 (empty cells NaN) and the index of the first non-numeric cell, or None."""
    values = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        if cell.strip():
            try:
                values[i] = float(cell)
            except ValueError:
                return values, i
    return values, None


class _CsvColumns:
    """Collects a CSV file's rows chunk by chunk: features as float64 (NaN for empty cells), kept columns raw."""

    def __init__(self, names: list[str], cols: _Columns) -> None:
        index = {name: i for i, name in enumerate(names)}
        self.cols, self.n_rows = cols, 0
        self.positions = [index[name] for name in cols.features]
        self.kept_idx = {n: index[n] for n in (cols.label, *([cols.id] if cols.id else []), *cols.extra)}
        self.kept: dict[str, list[str]] = {n: [] for n in self.kept_idx}
        self.blocks: list[np.ndarray] = []
        self.not_numeric: dict[str, tuple[int, str]] = {}

    def add(self, chunk: list[list[str]]) -> None:
        """Convert one chunk of rows (each as long as the header)."""
        n, d = len(chunk), len(self.positions)
        pick = operator.itemgetter(*self.positions) if d > 1 else lambda row: (row[self.positions[0]],)
        try:  # the fast path: every feature cell of the chunk is a number
            cells = itertools.chain.from_iterable(map(pick, chunk))
            block = np.fromiter(map(float, cells), dtype=np.float64, count=n * d).reshape(n, d)
        except ValueError:  # find the empty cells (NaN) and the first non-numeric one of each column
            block = np.full((n, d), np.nan)
            for j, (name, position) in enumerate(zip(self.cols.features, self.positions, strict=True)):
                if name not in self.not_numeric:
                    column = [row[position] for row in chunk]
                    block[:, j], bad = _parse_floats(column)
                    if bad is not None:
                        self.not_numeric[name] = (self.n_rows + bad, column[bad])
        for name, position in self.kept_idx.items():
            self.kept[name].extend(row[position] for row in chunk)
        self.blocks.append(block)
        self.n_rows += n

    def parts(self) -> _Parts:
        X = np.concatenate(self.blocks) if len(self.blocks) > 1 else self.blocks[0]
        return _Parts(X=X, kept={n: _objects(v) for n, v in self.kept.items()}, not_numeric=self.not_numeric)


def _read_csv(path: Path, select: dict[str, Any]) -> tuple[_Parts, _Columns]:
    where = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)
            if header is None:
                raise DataError(
                    f"{where}: the file is empty; write a header line naming the columns, then one line per record"
                )
            names = [h.strip() for h in header]
            cols = _select_columns(names, where=where, **select)
            collected, chunk = _CsvColumns(names, cols), []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(names):
                    raise DataError(
                        f"{where}: line {reader.line_num} has {len(row)} fields but the header has {len(names)}; "
                        "every line needs one field per column"
                    )
                chunk.append(row)
                if len(chunk) == _CHUNK_ROWS:
                    collected.add(chunk)
                    chunk = []
            if chunk:
                collected.add(chunk)
    except (OSError, csv.Error) as exc:
        raise DataError(f"{where}: cannot read as CSV ({type(exc).__name__}: {exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc}); save the CSV file as UTF-8") from exc
    if collected.n_rows == 0:
        raise DataError(f"{where}: the CSV file has a header but no records")
    return collected.parts(), cols


def _read_parquet(path: Path, select: dict[str, Any]) -> tuple[_Parts, _Columns]:
    pa = require_extra("pyarrow", "audit")
    pq = require_extra("pyarrow.parquet", "audit")
    where = str(path)
    try:
        table = pq.ParquetFile(path).read()
        names = [str(n) for n in table.column_names]
        cols = _select_columns(names, where=where, **select)
        if table.num_rows == 0:
            raise DataError(f"{where}: the Parquet file has columns but no records")
        X = np.full((table.num_rows, len(cols.features)), np.nan)
        not_numeric: dict[str, tuple[int, str]] = {}
        for j, name in enumerate(cols.features):
            column = table.column(name)
            kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
            numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)
            if not any(check(kind) for check in numeric):
                first = column.slice(0, 1).to_pylist()[0]
                not_numeric[name] = (0, f"{first} (type {column.type})")
                continue
            values = column.cast(kind).cast(pa.float64(), safe=False).fill_null(float("nan"))
            X[:, j] = values.to_numpy()
        kept_names = (cols.label, *([cols.id] if cols.id else []), *cols.extra)
        kept = {n: _objects(table.column(n).to_pylist()) for n in kept_names}
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise DataError(f"{where}: cannot read as Parquet ({type(exc).__name__}: {exc}); check the file") from exc
    return _Parts(X=X, kept=kept, not_numeric=not_numeric), cols


# --------------------------------------------------------------------------------------------------
# Labels, ids and the checks every reader's output goes through


def _as_integers(texts: Sequence[str]) -> np.ndarray | None:
    """``texts`` as int64 if every one is an integer ("3", "-1", "3.0"), else None."""
    try:
        return np.asarray([int(t) for t in texts], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        values = np.asarray([float(t) for t in texts], dtype=np.float64)
    except ValueError:
        return None
    if (
        values.size
        and np.isfinite(values).all()
        and (values == np.round(values)).all()
        and np.abs(values).max() < 2**63
    ):
        return values.astype(np.int64)
    return None


def _labels_from(values: np.ndarray, *, where: str, ids: np.ndarray) -> np.ndarray:
    """Raw labels: int64 if all are integers, else str objects; a record without a label is a DataError."""
    if values.dtype.kind in "biu" and not (values.dtype.kind == "u" and values.size and values.max() >= 2**63):
        return values.astype(np.int64)
    if values.dtype.kind not in "biufOSU":
        raise DataError(f"{where}: labels of dtype {values.dtype} are not read; store them as integers or text")
    texts = [_text(v) for v in values]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise DataError(
            f"{where}: {len(empty)} records have no label (first: record {str(ids[empty[0]])!r}); label every record"
        )
    integers = _as_integers(texts)
    return integers if integers is not None else _objects(texts)


def _ids_from(values: np.ndarray, *, where: str, column: str) -> np.ndarray:
    """Record ids as numpy strings; empty or repeated ids are a DataError."""
    texts = [_text(v) for v in values]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise DataError(f"{where}: {len(empty)} records have no id in column {column!r} (first: row {empty[0]})")
    ids = np.asarray(texts, dtype=str)
    unique, counts = np.unique(ids, return_counts=True)
    repeated = unique[counts > 1]
    if repeated.size:
        raise DataError(
            f"{where}: {repeated.size} ids appear more than once in column {column!r} ({_few(repeated)}); "
            "ids must be unique: fix the column, or read the data without it (row numbers become the ids)"
        )
    return ids


def _row_numbers(n: int) -> np.ndarray:
    return np.arange(n).astype(str)


def _finish(
    *,
    where: str,
    X: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    feature_names: tuple[str, ...],
    record_shape: tuple[int, ...] | None,
    not_numeric: Mapping[str, tuple[int, str]] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
) -> Table:
    """Check the parts a reader found and build the Table (features to float32, finite)."""
    for name in feature_names:
        if not_numeric and name in not_numeric:
            row, value = not_numeric[name]
            raise DataError(
                f"{where}: feature column {name!r} is not numeric (record {str(ids[row])!r} holds {value!r:.60}); "
                "encode it as numbers first, or pass --feature-columns to choose the numeric feature columns"
            )
    labels = _labels_from(labels, where=where, ids=ids)
    with np.errstate(over="ignore", invalid="ignore"):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
    bad = ~np.isfinite(X32)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: {int(bad.sum())} feature values are empty, NaN or infinite (or beyond float32's range); the "
            f"first is record {str(ids[row])!r}, feature {feature_names[col]!r}: remove or impute them"
        )
    return Table(
        X=X32,
        labels=labels,
        ids=ids,
        feature_names=feature_names,
        record_shape=record_shape,
        source=where,
        extra_columns=dict(extra or {}),
    )


def _from_records(records: Records, where: str) -> Table:
    n = len(records.X)
    if n == 0:
        raise DataError(f"{where}: no records")
    if records.X.shape[1] == 0:
        raise DataError(f"{where}: records have no features (shape {records.record_shape})")
    ids = _row_numbers(n) if records.ids is None else _ids_from(records.ids, where=where, column="ids")
    names = tuple(f"x{i}" for i in range(records.X.shape[1]))
    return _finish(
        where=where, X=records.X, labels=records.labels, ids=ids, feature_names=names, record_shape=records.record_shape
    )


def read_table(
    path: str | Path,
    *,
    label_column: str = "label",
    id_column: str | None = _DEFAULT_ID,
    feature_columns: Sequence[str] | None = None,
    labels_path: str | Path | None = None,
    exclude_columns: Sequence[str] = (),
) -> Table:
    """Read a user's labelled records from a table, an array file, an IDX pair or an image folder.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (a header line, comma-separated, UTF-8), ``.parquet``/``.pq`` (needs pyarrow), ``.npz``
        (arrays ``X``, ``y``, optional ``ids``), an IDX images file (``.idx``, ``*-idx3-ubyte``, maybe
        ``.gz``; with ``labels_path``) or a folder with one subfolder of images per class.
    label_column : str, default="label"
        The label column of a CSV or Parquet file.
    id_column : str or None, default="id"
        The column of record ids. When the default ``"id"`` is absent, row numbers are the ids; a column
        named otherwise must exist. None: always row numbers.
    feature_columns : sequence of str, optional
        The feature columns, in this order. Default: every column but the label, id and excluded ones
        (all must be numeric).
    labels_path : str or Path, optional
        The IDX labels file that goes with an IDX images file (only for IDX).
    exclude_columns : sequence of str, default=()
        Columns kept out of the features and stored in ``Table.extra_columns`` (e.g. a member column).

    Returns
    -------
    Table

    Raises
    ------
    DataError
        For a missing, empty, damaged or unsupported file; a missing label (or named id) column, listing
        the columns present; a non-numeric feature column; repeated or empty ids; unlabelled records;
        NaN or infinite features (the count and the first record's id).
    ConfigError
        If an option does not apply to the file's format (e.g. ``labels_path`` for a CSV file).
    """
    path = Path(path).expanduser()
    where = str(path)
    if not path.exists():
        raise DataError(f"{where}: does not exist; pass a .csv, .parquet, .npz or IDX file, or a folder of images")
    suffix = path.suffix.lower()
    if path.is_file() and suffix in (".csv", ".parquet", ".pq"):
        if labels_path is not None:
            raise ConfigError(f"labels_path (--labels) is for IDX files; the labels of {where} are its label column")
        select = {
            "label_column": label_column,
            "id_column": id_column,
            "feature_columns": feature_columns,
            "exclude_columns": tuple(exclude_columns),
        }
        parts, cols = (_read_csv if suffix == ".csv" else _read_parquet)(path, select)
        n = len(parts.X)
        ids = _row_numbers(n) if cols.id is None else _ids_from(parts.kept[cols.id], where=where, column=cols.id)
        return _finish(
            where=where,
            X=parts.X,
            labels=parts.kept[cols.label],
            ids=ids,
            feature_names=cols.features,
            record_shape=None,
            not_numeric=parts.not_numeric,
            extra={name: parts.kept[name] for name in cols.extra},
        )
    kind = "a folder of images" if path.is_dir() else "an IDX file" if is_idx_path(path) else suffix
    if path.is_file() and suffix != ".npz" and not is_idx_path(path):
        raise DataError(
            f"{where}: unsupported file type {path.suffix!r}; pass a .csv, .parquet, .npz or IDX file, "
            "or a folder with one subfolder of images per class"
        )
    options = {
        "--label-column": label_column != "label",
        "--id-column": id_column not in (None, _DEFAULT_ID),
        "--feature-columns": feature_columns is not None,
        "a member column": bool(exclude_columns),
        "--labels": labels_path is not None and kind != "an IDX file",
    }
    given = [name for name, set_ in options.items() if set_]
    if given:
        raise ConfigError(
            f"{', '.join(given)} do(es) not apply to {kind} ({where}): the column options are for CSV and Parquet "
            "files, --labels for IDX files"
        )
    if path.is_dir():
        records = read_image_folder(path)
    elif suffix == ".npz":
        records = read_npz(path)
    else:
        records = read_idx_pair(path, labels_path)
    return _from_records(records, where)


# --------------------------------------------------------------------------------------------------
# Labels as class indices


def encode_labels(labels: np.ndarray, classes: Sequence[Any] | np.ndarray | None) -> np.ndarray:
    """Raw labels as class indices: each label's position in ``classes``, or the label itself.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        ``Table.labels``: int64 or str objects.
    classes : sequence, optional
        The model's classes in output order (for a scikit-learn model its ``classes_``). Numeric classes
        are compared as numbers (the label "3" is class 3), others as text. None: the labels must be
        class indices already (integers >= 0, or text of them).

    Returns
    -------
    ndarray of shape (n_samples,)
        int64 class indices.

    Raises
    ------
    DataError
        If a label is not among ``classes`` (naming a few, their count and the classes), if ``classes`` repeats
        a class, or, without ``classes``, if a label is not an integer >= 0.

    >>> encode_labels(np.array(["cat", "dog", "cat"], dtype=object), ["cat", "dog"]).tolist()
    [0, 1, 0]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n_samples,), got {labels.shape}")
    if classes is None:
        if labels.dtype.kind in "biu":
            indices: np.ndarray | None = labels.astype(np.int64)
        else:
            indices = _as_integers([_text(v) for v in labels]) if labels.size else np.zeros(0, np.int64)
        if indices is None:
            odd = sorted({str(v) for v in labels.tolist() if _as_integers([_text(v)]) is None})
            raise DataError(
                f"labels are not class indices 0, 1, ... (e.g. {_few(odd)}); pass the model's classes (for a "
                "scikit-learn model its classes_) so that each label maps to its index"
            )
        if indices.size and indices.min() < 0:
            raise DataError(
                f"labels must be class indices 0, 1, ..., got {int(indices.min())}; pass the model's classes (for a "
                "scikit-learn model its classes_) so that each label maps to its index"
            )
        return indices
    cls = np.asarray(classes)
    if cls.ndim != 1 or cls.size == 0:
        raise ValueError(f"classes must be a non-empty sequence, got shape {cls.shape}")
    numeric = cls.dtype.kind in "biuf"
    keys: list[Any] = cls.astype(np.float64).tolist() if numeric else [_text(c) for c in cls.tolist()]
    if len(set(keys)) != len(keys):
        raise DataError(f"the model's classes repeat a class: {_few(cls.tolist(), 12)}")
    lookup = {key: i for i, key in enumerate(keys)}
    key: Any = _float_or_none if numeric else _text
    indices = np.asarray([lookup.get(key(v), -1) for v in labels.tolist()], dtype=np.int64)
    unknown = indices < 0
    if unknown.any():
        odd = sorted({str(v) for v in labels[unknown].tolist()})
        raise DataError(
            f"{int(unknown.sum())} records have labels that are not among the model's classes "
            f"({_few(odd)}); the classes are {_few(cls.tolist(), 12)}: check the label column and the model"
        )
    return indices


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(_text(value)) if isinstance(value, str | bytes) else float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number

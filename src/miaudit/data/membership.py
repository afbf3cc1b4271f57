"""Which records of a user's data the audited model trained on, and which records two sets share.

Members are named by id (:func:`read_member_ids`, then :func:`member_mask`) or by a 1/0 column of the data
file. Records are identified by content with :func:`record_digests` (the sha256 of their float32 bytes), so
:func:`check_disjoint` finds a record that appears in two sets even under different ids: an attacker's
population must not hold the target's training records.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._extras import require_extra
from miaudit.data.tables import _DEFAULT_ID, Table, _few, _objects, _row_numbers, _text
from miaudit.errors import ConfigError, DataError

__all__ = ["check_disjoint", "member_mask", "read_member_ids", "record_digests"]

_TRUE, _FALSE = frozenset({"1", "true", "yes", "t", "y"}), frozenset({"0", "false", "no", "f", "n"})


def read_member_ids(path: str | Path, *, id_column: str = _DEFAULT_ID) -> np.ndarray:
    """The ids of the target's training records, from a CSV file or a text file with one id per line.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` file: its column ``id_column`` (a header is then required), or its only column (a first
        line equal to ``id_column`` is taken as a header). Any other file: one id per line, blank lines
        skipped, a first line equal to ``id_column`` taken as a header.
    id_column : str, default="id"
        The id column of a CSV file with several columns.

    Returns
    -------
    ndarray of shape (n_ids,)
        Record ids as numpy strings, stripped, in file order.

    Raises
    ------
    DataError
        If the file is missing, unreadable, not UTF-8, has no ids, or a several-column CSV lacks ``id_column``.
    """
    path = Path(path).expanduser()
    where = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if path.suffix.lower() == ".csv":
                rows = [[_text(cell) for cell in row] for row in csv.reader(f) if row]
            else:
                rows = [[text] for text in map(_text, f.read().splitlines()) if text]
    except FileNotFoundError:
        raise DataError(f"{where}: does not exist; pass a file of member ids, one per line") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc}); save the member ids as UTF-8 text") from exc
    except (OSError, csv.Error) as exc:
        raise DataError(f"{where}: cannot read the member ids ({type(exc).__name__}: {exc})") from exc
    if rows and len(rows[0]) > 1:
        if id_column not in rows[0]:
            raise DataError(
                f"{where}: no id column {id_column!r} in the header (the columns present are {_few(rows[0], 12)}); "
                "pass the right id column, or write one id per line"
            )
        col = rows[0].index(id_column)
        short = next((i for i, row in enumerate(rows) if len(row) <= col), None)
        if short is not None:
            raise DataError(f"{where}: row {short + 1} has no field for column {id_column!r}")
        ids = [row[col] for row in rows[1:]]
    else:
        ids = [row[0] for row in rows]
        if ids and ids[0] == id_column:
            ids = ids[1:]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(f"{where}: no member ids; write the ids of the model's training records, one per line")
    return np.asarray(ids, dtype=str)


def _read_column(path: Path, name: str) -> np.ndarray:
    """One column of a CSV or Parquet file, raw, for a member column kept in another file."""
    where = str(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        pa = require_extra("pyarrow", "audit")
        pq = require_extra("pyarrow.parquet", "audit")
        try:
            table = pq.ParquetFile(path).read()
            if name not in table.column_names:
                raise DataError(f"{where}: no column {name!r} (the columns present are {_few(table.column_names, 12)})")
            return _objects(table.column(name).to_pylist())
        except DataError:
            raise
        except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
            raise DataError(f"{where}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{where}: cannot read as CSV ({type(exc).__name__}: {exc})") from exc
    header = [h.strip() for h in rows[0]] if rows else []
    if name not in header:
        raise DataError(f"{where}: no column {name!r} (the columns present are {_few(header, 12)})")
    col = header.index(name)
    return _objects([row[col] if col < len(row) else "" for row in rows[1:]])


def _membership(values: np.ndarray, *, where: str, column: str, ids: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "b":
        return values.astype(bool)
    texts = [_text(v).lower() for v in values.tolist()]
    bad = [i for i, t in enumerate(texts) if t not in _TRUE and t not in _FALSE]
    if bad:
        raise DataError(
            f"{where}: member column {column!r} must hold 1/0 or true/false; {len(bad)} records hold something else "
            f"(first: record {str(ids[bad[0]])!r} holds {str(values[bad[0]])!r:.40})"
        )
    return np.asarray([t in _TRUE for t in texts], dtype=bool)


def member_mask(
    table: Table,
    *,
    member_ids: np.ndarray | Sequence[Any] | None = None,
    member_column: str | None = None,
    path_for_column: str | Path | None = None,
) -> np.ndarray:
    """Which records of ``table`` the target trained on, from a list of ids or a boolean column.

    Parameters
    ----------
    table : Table
    member_ids : array-like of shape (n_members,), optional
        Ids of the training records (e.g. from :func:`read_member_ids`); each must be an id of ``table``.
    member_column : str, optional
        A 1/0 or true/false column: ``table.extra_columns[member_column]`` (read the table with
        ``exclude_columns=(member_column,)``), else that column of ``path_for_column``, row by row.
    path_for_column : str or Path, optional
        A CSV or Parquet file with the member column and one row per record of ``table``, in order.

    Returns
    -------
    ndarray of shape (n_samples,)
        bool, True for members.

    Raises
    ------
    ConfigError
        Unless exactly one of ``member_ids`` and ``member_column`` is given.
    DataError
        If member ids are not in the table (naming a few and the count), the column is missing, among the
        features or holds other values, or the records are all members or all non-members.
    """
    where = table.source
    if (member_ids is None) == (member_column is None):
        raise ConfigError("give the members either as a list of ids or as a member column, exactly one of them")
    if member_ids is not None:
        texts = [_text(v) for v in np.asarray(member_ids, dtype=object).reshape(-1).tolist()]
        if not all(texts):
            raise DataError(f"{texts.count('')} member ids are empty; name each member by its id")
        wanted = np.unique(np.asarray(texts, dtype=str))
        absent = np.setdiff1d(wanted, table.ids)
        if absent.size:
            raise DataError(
                f"{absent.size} of {wanted.size} member ids are not ids of {where} ({_few(absent)}); ids are the "
                "data's id column, or row numbers 0..n-1 without one: check the member list and --id-column"
            )
        mask = np.isin(table.ids, wanted)
    else:
        assert member_column is not None
        if member_column in table.extra_columns:
            values = table.extra_columns[member_column]
        elif member_column in table.feature_names:
            raise DataError(
                f"{where}: member column {member_column!r} is among the features; read the data keeping it apart "
                f"(exclude_columns=({member_column!r},)), or the model would see who is a member"
            )
        elif path_for_column is not None:
            values = _read_column(Path(path_for_column), member_column)
            if len(values) != len(table):
                raise DataError(
                    f"{path_for_column}: {len(values)} rows but {where} has {len(table)} records; the member "
                    "column's file needs one row per record, in the same order"
                )
        else:
            raise DataError(
                f"{where}: no member column {member_column!r} was kept; read the data with "
                f"exclude_columns=({member_column!r},)"
            )
        mask = _membership(np.asarray(values), where=where, column=member_column, ids=table.ids)
    if mask.all() or not mask.any():
        state = "every record is a member" if mask.all() else "no record is a member"
        raise DataError(
            f"{where}: {state}; an audit needs both the model's training records (members) and records of the "
            "same kind it did not train on (non-members)"
        )
    return mask


def record_digests(X: np.ndarray | Table) -> np.ndarray:
    """The sha256 of each record's float32 bytes (-0.0 counted as 0.0): records equal in content, equal digests.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...) or Table
        Records; each is flattened and converted to float32.

    Returns
    -------
    ndarray of shape (n_samples,)
        64-character hex digests (numpy strings).

    >>> d = record_digests(np.array([[1.0, -0.0], [1.0, 0.0], [2.0, 0.0]]))
    >>> bool(d[0] == d[1]), bool(d[0] == d[2])
    (True, False)
    """
    X = X.X if isinstance(X, Table) else np.asarray(X)
    if X.ndim < 1:
        raise ValueError(f"records must have shape (n_samples, ...), got a scalar {X!r}")
    flat = np.ascontiguousarray(X.reshape(len(X), -1) if len(X) else X.reshape(0, 0), dtype=np.float32)
    flat = flat + np.float32(0.0)  # -0.0 + 0.0 is 0.0: the two zeros hash alike
    return np.asarray([hashlib.sha256(row.tobytes()).hexdigest() for row in flat], dtype="<U64")


def check_disjoint(a: Table | np.ndarray, b: Table | np.ndarray, *, what_a: str, what_b: str) -> None:
    """Raise if a record of ``a`` also appears in ``b``, compared by content (ids are ignored).

    Parameters
    ----------
    a, b : Table or ndarray of shape (n_samples, ...)
    what_a, what_b : str
        What the sets are, for the message (e.g. ``"population"`` and ``"members"``).

    Raises
    ------
    DataError
        "N records of the population also appear among the members (first ids: ...); ...: remove them". For
        arrays the ids are row numbers.
    """
    X_a = a.X if isinstance(a, Table) else np.asarray(a)
    X_b = b.X if isinstance(b, Table) else np.asarray(b)
    width_a, width_b = int(np.prod(X_a.shape[1:])), int(np.prod(X_b.shape[1:]))
    if len(X_a) and len(X_b) and width_a != width_b:
        raise DataError(f"the {what_a} has {width_a} features per record but the {what_b} has {width_b}")
    shared = np.isin(record_digests(X_a), record_digests(X_b))
    if shared.any():
        ids = a.ids if isinstance(a, Table) else _row_numbers(len(X_a))
        raise DataError(
            f"{int(shared.sum())} records of the {what_a} also appear among the {what_b} (first ids: "
            f"{_few(ids[shared])}); an attacker population must be disjoint from the target's training set: "
            f"remove them from the {what_a}"
        )

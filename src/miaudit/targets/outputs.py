"""What a model outputs: probabilities or logits, and per-record outputs stored without a model.

A torch or ONNX model ends either in a softmax (it outputs probabilities) or before it (logits). The output
kind ``"auto"`` decides from the outputs themselves (:func:`detect_output_kind`): rows that are all
non-negative and sum to 1 within 1e-3 are probabilities, anything else is logits, which get a softmax in
float64 (:func:`to_probabilities`). A module that already ends in a softmax is thus never softmaxed twice.

Without a model at all, :func:`load_outputs` reads per-record outputs (probabilities, logits or losses keyed by
record id) from CSV, Parquet or NPZ for the threshold attacks.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, DataError, TargetError
from miaudit.targets.base import check_probabilities

__all__ = [
    "OUTPUT_KINDS",
    "RECORD_OUTPUT_KINDS",
    "OutputKind",
    "RecordOutputs",
    "check_output_kind",
    "detect_output_kind",
    "load_outputs",
    "softmax",
    "to_probabilities",
]

logger = logging.getLogger(__name__)

#: what a model's raw outputs are: decided from them ("auto"), or said by the user
OutputKind = Literal["auto", "probabilities", "logits"]
OUTPUT_KINDS: tuple[str, ...] = ("auto", "probabilities", "logits")
#: what stored per-record outputs may be
RECORD_OUTPUT_KINDS: tuple[str, ...] = ("auto", "probabilities", "logits", "loss")
#: tolerance of a probability row's sum in :func:`detect_output_kind`
PROBABILITY_ATOL = 1e-3


def check_output_kind(kind: str, *, allowed: tuple[str, ...] = OUTPUT_KINDS) -> str:
    """Return ``kind`` if it is one of ``allowed``; ConfigError naming the allowed values otherwise."""
    if kind not in allowed:
        raise ConfigError(f"output_kind must be one of {', '.join(allowed)}; got {kind!r}")
    return kind


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits.

    Parameters
    ----------
    z : ndarray of shape (n_samples, n_classes)

    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(6).tolist()
    [[0.25, 0.75]]
    """
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def detect_output_kind(raw: np.ndarray, *, atol: float = PROBABILITY_ATOL) -> Literal["probabilities", "logits"]:
    """ "probabilities" if every row of ``raw`` is non-negative and sums to 1 within ``atol``, else "logits".

    Parameters
    ----------
    raw : ndarray of shape (n_samples, n_classes)
        A model's raw outputs on one batch.

    >>> detect_output_kind(np.array([[0.2, 0.8]])), detect_output_kind(np.array([[-1.0, 2.0]]))
    ('probabilities', 'logits')
    """
    raw = np.asarray(raw, dtype=np.float64)
    ok = raw.ndim == 2 and len(raw) > 0 and bool((raw >= 0).all())
    return "probabilities" if ok and np.allclose(raw.sum(axis=1), 1.0, rtol=0.0, atol=atol) else "logits"


def to_probabilities(raw: np.ndarray, kind: Literal["probabilities", "logits"]) -> np.ndarray:
    """ndarray of shape (n_samples, n_classes), float64: ``raw`` as probabilities (softmax of logits)."""
    return softmax(raw) if kind == "logits" else np.asarray(raw, dtype=np.float64)


def resolve_output_kind(requested: str, raw: np.ndarray, *, name: str) -> Literal["probabilities", "logits"]:
    """The kind of ``raw`` outputs: ``requested`` unless "auto"; warns when "logits" meets probabilities."""
    detected = detect_output_kind(raw)
    if requested == "auto":
        logger.info("%s: the outputs look like %s (output kind auto)", name, detected)
        return detected
    if requested == "logits" and detected == "probabilities":
        logger.warning(
            "%s: output kind 'logits' was given but the outputs look like probabilities (rows of non-negative "
            "values summing to 1); a softmax over them flattens them. Use output kind 'auto' or 'probabilities'",
            name,
        )
    return "logits" if requested == "logits" else "probabilities"


# ------------------------------------------------------------------------------ stored per-record outputs
@dataclass(frozen=True, eq=False)
class RecordOutputs:
    """A model's outputs on records, keyed by record id, without the model.

    Attributes
    ----------
    ids : ndarray of shape (n_samples,), str
        The records' ids (unique).
    values : ndarray of shape (n_samples, n_classes) or (n_samples,), float64
        Probabilities or logits per class, or one loss per record.
    kind : "probabilities", "logits" or "loss"
    columns : tuple of str
        The class columns' names in the file (empty for losses).
    source : str
        Where they were read from.
    """

    ids: np.ndarray
    values: np.ndarray
    kind: Literal["probabilities", "logits", "loss"]
    columns: tuple[str, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_classes(self) -> int | None:
        """The number of classes (None for losses)."""
        return None if self.kind == "loss" else int(self.values.shape[1])

    def probabilities(self) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): the probabilities (a softmax of logits)."""
        if self.kind == "loss":
            raise ConfigError(f"{self.source} holds losses, not class outputs; use a loss-based attack")
        return to_probabilities(self.values, self.kind)

    def align(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """The values of the records ``ids``, in that order: ndarray of shape (len(ids), ...).

        Raises DataError naming up to five ids that have no output.
        """
        want = np.asarray(ids).astype(str)
        index = {key: i for i, key in enumerate(self.ids.tolist())}
        missing = [key for key in want.tolist() if key not in index]
        if missing:
            raise DataError(
                f"{self.source}: no output for {len(missing)} of {len(want)} records (ids {', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}); the outputs must cover every record of the data"
            )
        return self.values[[index[key] for key in want.tolist()]]


def _read_csv(path: Path, id_column: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: the file is empty; write a header (id column, one column per class or loss)")
        rows = [row for row in reader if row]
    if id_column not in header:
        raise DataError(f"{path}: no id column {id_column!r} in the header {header}; name it or pass id_column")
    if any(len(row) != len(header) for row in rows):
        bad = next(i for i, row in enumerate(rows) if len(row) != len(header))
        raise DataError(f"{path}: row {bad + 2} has a different number of fields than the header ({len(header)})")
    table = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    ids = np.asarray(table[header.index(id_column)], dtype=str)
    columns: dict[str, np.ndarray] = {}
    for name, values in zip(header, table, strict=True):
        if name == id_column:
            continue
        try:
            columns[name] = np.asarray(values, dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: column {name!r} has a value that is not a number ({exc})") from exc
    return ids, columns


def _read_parquet(path: Path, id_column: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    pq = require_extra("pyarrow.parquet", "audit")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and OSError subclasses for unreadable files
        raise DataError(f"{path}: not a readable Parquet file ({exc}); write it again with pandas or pyarrow") from exc
    if id_column not in table.column_names:
        raise DataError(f"{path}: no id column {id_column!r} among {table.column_names}; name it or pass id_column")
    ids = np.asarray(table.column(id_column).to_pylist()).astype(str)
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name == id_column:
            continue
        try:
            columns[name] = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: column {name!r} is not numeric ({exc})") from exc
    return ids, columns


def _read_npz(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        raise DataError(
            f"{path}: holds object arrays, which would need pickle; save ids as strings (np.asarray(ids, dtype=str))"
        ) from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable NPZ file ({exc}); save it with numpy.savez") from exc
    if "ids" not in arrays:
        raise DataError(f"{path}: no array 'ids' (found {sorted(arrays)}); save ids=..., and probabilities/logits/loss")
    kinds = [k for k in ("probabilities", "logits", "loss") if k in arrays]
    if len(kinds) != 1:
        raise DataError(
            f"{path}: needs exactly one of the arrays probabilities, logits or loss beside ids; found {sorted(arrays)}"
        )
    return arrays["ids"].astype(str), {f"__{kinds[0]}__": np.asarray(arrays[kinds[0]], dtype=np.float64)}


def load_outputs(path: str | Path, *, kind: str = "auto", id_column: str = "id") -> RecordOutputs:
    """Read a model's per-record outputs from CSV, Parquet or NPZ.

    Parameters
    ----------
    path : str or Path
        ``.csv`` or ``.parquet``: an id column and either one column per class (probabilities or logits) or a
        single ``loss`` column. ``.npz``: arrays ``ids`` of shape (n_samples,) and one of ``probabilities``
        or ``logits`` of shape (n_samples, n_classes) or ``loss`` of shape (n_samples,).
    kind : {"auto", "probabilities", "logits", "loss"}
        What the values are. "auto": a ``loss`` column/array is a loss; class columns are probabilities if
        every row is non-negative and sums to 1 within 1e-3, else logits.
    id_column : str
        The id column of CSV and Parquet files.

    Returns
    -------
    RecordOutputs

    Raises
    ------
    DataError
        If the file is missing or unreadable, has no ids, duplicate ids, no value columns, non-finite values,
        or values that contradict ``kind`` (probabilities that are negative or do not sum to 1).
    ConfigError
        If ``kind`` or the suffix is not accepted.
    """
    check_output_kind(kind, allowed=RECORD_OUTPUT_KINDS)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no outputs file at {path}; give the path of a .csv, .parquet or .npz file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        ids, columns = _read_csv(path, id_column)
    elif suffix in (".parquet", ".pq"):
        ids, columns = _read_parquet(path, id_column)
    elif suffix == ".npz":
        ids, columns = _read_npz(path)
    else:
        raise ConfigError(f"cannot read outputs from {path.name}: the accepted suffixes are .csv, .parquet, .npz")
    stored = next((k for k in ("probabilities", "logits", "loss") if f"__{k}__" in columns), None)
    names: tuple[str, ...] = ()
    if stored is not None:  # NPZ: the array's name says the kind
        values, found = columns[f"__{stored}__"], stored
        if values.ndim == 2:
            names = tuple(str(c) for c in range(values.shape[1]))
    elif "loss" in columns:
        if len(columns) != 1:
            others = sorted(set(columns) - {"loss"})
            raise DataError(f"{path}: a loss column goes alone beside the ids; found also {others}")
        values, found = columns["loss"], "loss"
    else:
        if not columns:
            raise DataError(f"{path}: no value columns beside {id_column!r}; add one column per class or a loss column")
        names = tuple(columns)
        values, found = np.stack([columns[name] for name in names], axis=1), "auto"
    if kind != "auto" and found != "auto" and kind != found:
        raise DataError(f"{path}: holds {found} values but kind={kind!r} was asked; pass kind={found!r} or 'auto'")
    return _validated(path, ids, values, found if kind == "auto" else kind, names)


def _validated(path: Path, ids: np.ndarray, values: np.ndarray, kind: str, names: tuple[str, ...]) -> RecordOutputs:
    want_ndim = 1 if kind == "loss" else 2
    if values.ndim != want_ndim or len(values) != len(ids):
        shape = "(n_samples,)" if kind == "loss" else "(n_samples, n_classes)"
        raise DataError(f"{path}: {kind} values of shape {values.shape} for {len(ids)} ids; expected {shape}")
    if len(ids) == 0:
        raise DataError(f"{path}: holds no records")
    if len(np.unique(ids)) != len(ids):
        uniq, counts = np.unique(ids, return_counts=True)
        raise DataError(
            f"{path}: duplicate record ids ({', '.join(uniq[counts > 1][:5].tolist())}); ids must be unique"
        )
    if not np.isfinite(values).all():
        raise DataError(f"{path}: {int((~np.isfinite(values)).sum())} NaN or infinite values; fix the outputs")
    if kind == "auto":
        kind = detect_output_kind(values)
        logger.info("%s: the outputs look like %s", path, kind)
    elif kind == "probabilities" and detect_output_kind(values) != "probabilities":
        try:  # defended answers (top-k, rounded, labels) are probabilities too
            check_probabilities(values, n_samples=len(values))
        except TargetError as exc:
            raise DataError(f"{path}: kind 'probabilities' but {exc}") from exc
    return RecordOutputs(ids=ids, values=values, kind=kind, columns=names, source=str(path))  # type: ignore[arg-type]

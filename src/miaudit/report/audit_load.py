"""Read an audit directory (``miaudit audit --out DIR``) into typed records.

The format is ``docs/audit-format.md``: ``audit.json`` (configuration, data, target, each attack's
metrics with intervals, slices and verdicts), ``records.parquet`` or ``records.csv`` (one row per
evaluated record and attack) and ``exposed.npz`` (the most exposed members' features). The reader is
strict about what a report needs and tolerant of anything extra; every problem is a
:class:`~.records.ReportError` naming the file, the key, column or row, and the fix. An audit whose
status is ``running`` or ``interrupted`` is read when its ``attacks`` section holds at least one
attack (the report then says it is incomplete); without one it is an error.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit.report.records import STATUSES, Interval, ReportError

__all__ = [
    "AUDIT_FILE",
    "AUDIT_FORMATS",
    "RECORD_COLUMNS",
    "AttackResult",
    "AuditData",
    "AuditRecords",
    "DataInfo",
    "ExposedSet",
    "SliceRow",
    "TargetInfo",
    "Verdict",
    "load_audit",
    "read_exposed",
    "read_records",
]

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
AUDIT_FORMATS = (1,)
RECORD_COLUMNS = ("id", "label", "class_index", "member", "predicted", "correct", "attack", "score", "rank",
                  "likelihood_ratio", "flagged_fpr_0.01", "flagged_fpr_0.001")  # fmt: skip
_MAKE = "miaudit audit --model PATH --data PATH --members PATH --out DIR"
_RERUN = "rerun the audit command (`miaudit audit ... --out DIR`) to write it again"
_TRUE, _FALSE = frozenset({"true", "1", "1.0"}), frozenset({"false", "0", "0.0"})


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class DataInfo:
    """``audit.json``'s ``data``: what was audited. ``record_shape`` is None for tables."""

    source: str
    n_records: int
    n_members: int
    n_nonmembers: int
    n_population: int | None = None
    population_source: str = ""
    n_features: int | None = None
    n_classes: int | None = None
    classes: tuple[str, ...] = ()
    record_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        """Two dimensions, or three with 1 or 3 channels (first or last): drawn as pictures."""
        shape = self.record_shape
        if shape is None:
            return False
        return len(shape) == 2 or (len(shape) == 3 and (shape[0] in (1, 3) or shape[-1] in (1, 3)))


@dataclass(frozen=True)
class TargetInfo:
    """``audit.json``'s ``target``: the model audited and its accuracy (NaN where not stored)."""

    source: str
    family: str
    description: str
    output_kind: str
    answers: str
    member_accuracy: float
    nonmember_accuracy: float
    generalization_gap: float


@dataclass(frozen=True)
class SliceRow:
    """One slice of one attack's records: ``kind`` is ``"class"`` or ``"prediction"``; AUC/TPR NaN if undefined."""

    kind: str
    key: str
    n_members: int
    n_nonmembers: int
    auc: float
    tpr_at_1: float

    @property
    def n(self) -> int:
        """Records in the slice, members and non-members."""
        return self.n_members + self.n_nonmembers


@dataclass(frozen=True)
class AttackResult:
    """One attack of ``audit.json``: metrics with bootstrap intervals (NaN bounds where none was stored)."""

    name: str
    n_members: int
    n_nonmembers: int
    auc: Interval
    tpr_at_1: Interval
    tpr_at_01: Interval
    flagged_at_1: int | None = None
    flagged_at_01: int | None = None
    queries: int | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    verdict: str = ""
    threshold: float = math.nan
    params: Mapping[str, Any] = field(default_factory=dict)
    slices: tuple[SliceRow, ...] = ()

    @property
    def time_s(self) -> float:
        """Seconds spent fitting and scoring (the sum of ``timings``); NaN when none were stored."""
        return float(sum(self.timings.values())) if self.timings else math.nan

    @property
    def strength(self) -> tuple[float, float]:
        """The sort key of "strongest": TPR at 0.1% FPR, then AUC (NaN counts as lowest)."""
        return tuple(v if math.isfinite(v) else -math.inf for v in (self.tpr_at_01.mean, self.auc.mean))  # type: ignore[return-value]


@dataclass(frozen=True)
class Verdict:
    """``audit.json``'s ``verdict``: whether it leaks, the sentence, and the attack it rests on."""

    leaks: bool
    text: str
    attack: str = ""


@dataclass(frozen=True)
class AuditRecords:
    """``records.parquet``/``records.csv``: every column an ndarray of shape (n_rows,), rows in file order."""

    source: str
    id: NDArray[np.str_]
    label: NDArray[np.str_]
    class_index: NDArray[np.int64]
    member: NDArray[np.bool_]
    predicted: NDArray[np.int64]
    correct: NDArray[np.bool_]
    attack: NDArray[np.str_]
    score: NDArray[np.float64]
    rank: NDArray[np.int64]
    likelihood_ratio: NDArray[np.float64]
    flagged_at_1: NDArray[np.bool_]
    flagged_at_01: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.id.size)

    @property
    def attacks(self) -> tuple[str, ...]:
        """The attacks present, in the order of the file."""
        return tuple(dict.fromkeys(self.attack.tolist()))

    def of_attack(self, name: str) -> AuditRecords:
        """The rows of one attack."""
        keep = self.attack == name
        return AuditRecords(self.source, *(getattr(self, c)[keep] for c in _FIELDS))


_FIELDS = ("id", "label", "class_index", "member", "predicted", "correct", "attack", "score", "rank",
           "likelihood_ratio", "flagged_at_1", "flagged_at_01")  # fmt: skip


@dataclass(frozen=True)
class ExposedSet:
    """``exposed.npz`` of one attack: ids and scores (shape (n,)), features ``X`` of shape (n, n_features)."""

    attack: str
    ids: tuple[str, ...]
    X: NDArray[np.float32]
    scores: NDArray[np.float64]


@dataclass(frozen=True)
class AuditData:
    """Everything an audit directory holds for its report. ``records`` is None only for an incomplete audit."""

    path: Path
    format: int
    status: str
    data: DataInfo
    target: TargetInfo
    attacks: tuple[AttackResult, ...]
    verdict: Verdict | None
    records: AuditRecords | None
    exposed: Mapping[str, ExposedSet]
    error: str = ""
    command: str = ""
    created: str = ""
    finished: str = ""
    seed: int | None = None
    shadows: Mapping[str, Any] = field(default_factory=dict)
    queries: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    hardware: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    #: the check of a differential-privacy claim (``--dp-epsilon``): ``text``, ``epsilon_lb``, ``consistent``...
    privacy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether the audit finished (status ``complete``)."""
        return self.status == "complete"

    def strongest(self) -> AttackResult | None:
        """The attack with the highest TPR at 0.1% FPR, then AUC; None without attacks."""
        return max(self.attacks, key=lambda a: a.strength, default=None)


# ------------------------------------------------------------------------------- JSON values
def _obj(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> dict[str, Any]:
    value = raw.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        got = "nothing" if key not in raw else type(value).__name__
        raise ReportError(f"{where}: {key!r} must be a JSON object; got {got}: {_RERUN}")
    return value


def _float(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where}: {value!r} is not a number; {_RERUN}")
    return float(value)


def _int(value: Any, where: str, *, required: bool = False) -> int | None:
    number = _float(value, where)
    if math.isnan(number):
        if required:
            raise ReportError(f"{where} is missing; a whole number is required: {_RERUN}")
        return None
    if not number.is_integer():
        raise ReportError(f"{where}: {value!r} is not a whole number; {_RERUN}")
    return int(number)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value)


def _interval(point: Any, bounds: Any, where: str) -> Interval:
    mean = _float(point, where)
    if bounds is None:
        return Interval(mean)
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ReportError(f"{where}: the interval must be a list [low, high]; got {bounds!r}: {_RERUN}")
    return Interval(mean, _float(bounds[0], where), _float(bounds[1], where))


def _data(raw: dict[str, Any], where: str) -> DataInfo:
    shape = raw.get("record_shape")
    if shape is not None and (
        not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise ReportError(f"{where}: 'record_shape' must be a list of positive whole numbers or null; got {shape!r}")
    names = raw.get("feature_names") or ()
    return DataInfo(
        source=_text(raw, "source"),
        n_records=_int(raw.get("n_records"), f"{where} 'n_records'", required=True) or 0,
        n_members=_int(raw.get("n_members"), f"{where} 'n_members'", required=True) or 0,
        n_nonmembers=_int(raw.get("n_nonmembers"), f"{where} 'n_nonmembers'", required=True) or 0,
        n_population=_int(raw.get("n_population"), f"{where} 'n_population'"),
        population_source=_text(raw, "population_source"),
        n_features=_int(raw.get("n_features"), f"{where} 'n_features'"),
        n_classes=_int(raw.get("n_classes"), f"{where} 'n_classes'"),
        classes=tuple(str(c) for c in raw.get("classes") or ()),
        record_shape=tuple(shape) if shape is not None else None,
        feature_names=tuple(str(n) for n in names),
    )


def _target(raw: dict[str, Any], where: str) -> TargetInfo:
    return TargetInfo(
        source=_text(raw, "source"),
        family=_text(raw, "family"),
        description=_text(raw, "description"),
        output_kind=_text(raw, "output_kind"),
        answers=_text(raw, "answers") or "probabilities",
        member_accuracy=_float(raw.get("member_accuracy"), f"{where} 'member_accuracy'"),
        nonmember_accuracy=_float(raw.get("nonmember_accuracy"), f"{where} 'nonmember_accuracy'"),
        generalization_gap=_float(raw.get("generalization_gap"), f"{where} 'generalization_gap'"),
    )


def _slices(raw: dict[str, Any], where: str) -> tuple[SliceRow, ...]:
    out = []
    for kind in ("class", "prediction"):
        for key, s in _obj(raw, kind, where, required=False).items():
            at = f"{where} slice {kind} {key!r}"
            if not isinstance(s, dict):
                raise ReportError(f"{at} must be a JSON object; got {type(s).__name__}: {_RERUN}")
            out.append(
                SliceRow(
                    kind=kind,
                    key=str(key),
                    n_members=_int(s.get("n_members"), f"{at} 'n_members'") or 0,
                    n_nonmembers=_int(s.get("n_nonmembers"), f"{at} 'n_nonmembers'") or 0,
                    auc=_float(s.get("auc"), f"{at} 'auc'"),
                    tpr_at_1=_float(s.get("tpr_at_fpr_0.01"), f"{at} 'tpr_at_fpr_0.01'"),
                )
            )
    return tuple(out)


def _attack(name: str, raw: Any, where: str) -> AttackResult:
    at = f"{where} attack {name!r}"
    if not isinstance(raw, dict):
        raise ReportError(f"{at} must be a JSON object; got {type(raw).__name__}: {_RERUN}")
    metrics = _obj(raw, "metrics", at)
    missing = [k for k in ("auc", "tpr_at_fpr", "n_members", "n_nonmembers") if k not in metrics]
    if missing:
        raise ReportError(f"{at}: 'metrics' lacks the key(s) {', '.join(map(repr, missing))}: {_RERUN}")
    tpr = _obj(metrics, "tpr_at_fpr", f"{at} metrics")
    intervals = _obj(raw, "intervals", at, required=False)
    tpr_iv = _obj(intervals, "tpr_at_fpr", f"{at} intervals", required=False)
    flagged = _obj(raw, "flagged", at, required=False)
    timings = _obj(raw, "timings", at, required=False)
    return AttackResult(
        name=name,
        n_members=_int(metrics["n_members"], f"{at} 'n_members'", required=True) or 0,
        n_nonmembers=_int(metrics["n_nonmembers"], f"{at} 'n_nonmembers'", required=True) or 0,
        auc=_interval(metrics["auc"], intervals.get("auc"), f"{at} 'auc'"),
        tpr_at_1=_interval(tpr.get("0.01"), tpr_iv.get("0.01"), f"{at} 'tpr_at_fpr' '0.01'"),
        tpr_at_01=_interval(tpr.get("0.001"), tpr_iv.get("0.001"), f"{at} 'tpr_at_fpr' '0.001'"),
        flagged_at_1=_int(flagged.get("0.01"), f"{at} 'flagged' '0.01'"),
        flagged_at_01=_int(flagged.get("0.001"), f"{at} 'flagged' '0.001'"),
        queries=_int(raw.get("queries"), f"{at} 'queries'"),
        timings={str(k): _float(v, f"{at} timings {k!r}") for k, v in timings.items()},
        verdict=_text(raw, "verdict"),
        threshold=_float(raw.get("threshold"), f"{at} 'threshold'"),
        params=_obj(raw, "params", at, required=False),
        slices=_slices(_obj(raw, "slices", at, required=False), at),
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(
            f"{path.name} is missing in {path.parent}: this is not an audit directory; run `{_MAKE}` first, "
            "or pass the folder it wrote"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}): {_RERUN}") from None
    if not isinstance(raw, dict):
        raise ReportError(f"{path} must hold a JSON object; got {type(raw).__name__}: {_RERUN}")
    return raw


# ------------------------------------------------------------------------------- per record
def _column(values: list[Any], name: str, where: str, kind: str) -> NDArray[Any]:
    """One column as an ndarray of ``kind`` text, int, float or bool; empty cells only in likelihood_ratio (NaN)."""

    def bad(i: int, v: Any, what: str) -> ReportError:
        return ReportError(f"{where}, column {name!r}, row {i + 1}: {v!r} is not {what}; {_RERUN}")

    if kind == "text":
        return np.array(["" if v is None else str(v) for v in values], dtype=np.str_)
    if kind == "bool":
        text = np.char.lower(np.char.strip(np.array(["" if v is None else str(v) for v in values], dtype=np.str_)))
        true, false = np.isin(text, list(_TRUE)), np.isin(text, list(_FALSE))
        if not (true | false).all():
            i = int(np.flatnonzero(~(true | false))[0])
            raise bad(i, values[i], "true or false")
        return true
    empty = name == "likelihood_ratio"
    cells = [math.nan if empty and (v is None or v == "") else v for v in values]
    try:
        numbers = np.array(cells, dtype=np.float64)
    except (TypeError, ValueError):
        i = next(i for i, v in enumerate(cells) if not _is_number(v))
        raise bad(i, cells[i], "a number") from None
    finite = np.isfinite(numbers) | (empty & np.isnan(numbers))
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise bad(i, cells[i], "a finite number")
    if kind == "int":
        whole = numbers == np.round(numbers)
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise bad(i, cells[i], "a whole number")
        return numbers.astype(np.int64)
    return numbers


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool)


_KINDS = {"id": "text", "label": "text", "attack": "text", "class_index": "int", "predicted": "int", "rank": "int",
          "member": "bool", "correct": "bool", "flagged_fpr_0.01": "bool", "flagged_fpr_0.001": "bool",
          "score": "float", "likelihood_ratio": "float"}  # fmt: skip


def _read_table(path: Path) -> dict[str, list[Any]]:
    if path.suffix == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ReportError(f"{path} is not a readable CSV file ({exc}): {_RERUN}") from None
        if header is None:
            raise ReportError(f"{path} is empty: {_RERUN}")
        for i, row in enumerate(rows):
            if len(row) != len(header):
                raise ReportError(f"{path}, row {i + 1}: {len(row)} cells for {len(header)} columns: {_RERUN}")
        return {name: [row[j] for row in rows] for j, name in enumerate(header)}
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ReportError(
            f"{path} needs pyarrow to be read: install the audit extra (pip install 'miaudit[audit]'), or keep "
            "records.csv beside it"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise ReportError(f"{path} is not a readable Parquet file ({exc}): {_RERUN}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def read_records(path: Path) -> AuditRecords:
    """Read ``records.parquet`` or ``records.csv`` (chosen by ``path``'s suffix) and check every column."""
    columns = _read_table(path)
    missing = [c for c in RECORD_COLUMNS if c not in columns]
    if missing:
        raise ReportError(
            f"{path.name} in {path.parent} lacks the column(s) {', '.join(map(repr, missing))} "
            f"(found: {', '.join(columns) or 'none'}): it was not written by a compatible miaudit; {_RERUN}"
        )
    if not columns["id"]:
        raise ReportError(f"{path.name} in {path.parent} has no rows: the audit scored no record; {_RERUN}")
    where = f"{path.name} in {path.parent}"
    values = {c: _column(columns[c], c, where, _KINDS[c]) for c in RECORD_COLUMNS}
    return AuditRecords(path.name, *(values[c] for c in RECORD_COLUMNS))


def _records(path: Path) -> AuditRecords | None:
    parquet, text = path / "records.parquet", path / "records.csv"
    if parquet.is_file():
        try:
            return read_records(parquet)
        except ReportError as exc:
            if not text.is_file():
                raise
            logger.warning("%s; reading records.csv instead", exc)
    return read_records(text) if text.is_file() else None


def read_exposed(path: Path, attacks: tuple[str, ...], record_shape: tuple[int, ...] | None) -> dict[str, ExposedSet]:
    """Read ``exposed.npz`` (never unpickling): the most exposed members of each attack found in it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} is not a readable .npz file of plain arrays ({exc}): {_RERUN}") from None
    stored = arrays.get("record_shape")
    if stored is not None:
        shape = tuple(int(d) for d in np.asarray(stored).ravel()) or None
        if shape != record_shape:
            raise ReportError(
                f"{path}: record_shape {shape} differs from audit.json's data.record_shape {record_shape}: {_RERUN}"
            )
    out = {}
    for name in attacks:
        if f"ids_{name}" not in arrays:
            continue
        ids = np.asarray(arrays[f"ids_{name}"]).ravel()
        x, scores = arrays.get(f"X_{name}"), arrays.get(f"scores_{name}")
        if x is None or scores is None or x.ndim != 2 or x.shape[0] != ids.size or np.size(scores) != ids.size:
            raise ReportError(
                f"{path}: ids_{name} needs X_{name} of shape (n, n_features) and scores_{name} of shape (n,) with "
                f"n = {ids.size}; got {None if x is None else x.shape} and {None if scores is None else scores.shape}"
                f": {_RERUN}"
            )
        if record_shape is not None and int(np.prod(record_shape)) != x.shape[1]:
            raise ReportError(f"{path}: X_{name} has {x.shape[1]} features, record_shape {record_shape}: {_RERUN}")
        out[name] = ExposedSet(name, tuple(map(str, ids)), x.astype(np.float32), np.asarray(scores, np.float64))
    return out


def _check_records(records: AuditRecords, attacks: tuple[AttackResult, ...], complete: bool) -> None:
    for a in attacks:
        mine = records.member[records.attack == a.name]
        if mine.size == 0 and not complete:
            continue
        if mine.all() or not mine.any():
            what = "no row" if mine.size == 0 else "only " + ("members" if mine.all() else "non-members")
            raise ReportError(
                f"{records.source}: attack {a.name!r} of audit.json has {what} there; its ROC needs members and "
                f"non-members: {_RERUN}"
            )


def load_audit(audit_dir: Path | str) -> AuditData:
    """Read an audit directory (``docs/audit-format.md``).

    Parameters
    ----------
    audit_dir : path
        The folder written by ``miaudit audit --out DIR``; ``DIR/audit.json`` is accepted too.

    Raises
    ------
    ReportError
        ``audit.json`` missing or not valid JSON, an unknown format, a key, column or array missing
        or malformed, or an audit that is running or was interrupted before any attack finished.
    """
    path = Path(audit_dir)
    if path.name == AUDIT_FILE and path.is_file():
        path = path.parent
    where = path / AUDIT_FILE
    raw = _read_json(where)
    fmt = raw.get("format")
    if fmt not in AUDIT_FORMATS or isinstance(fmt, bool):
        raise ReportError(f"{where} has format {fmt!r}; this miaudit reads format 1: upgrade miaudit, or {_RERUN}")
    if raw.get("kind", "audit") != "audit":
        raise ReportError(f"{where}: 'kind' is {raw.get('kind')!r}, not 'audit': {_RERUN}")
    status = raw.get("status")
    if status not in STATUSES:
        raise ReportError(f"{where}: 'status' is {status!r}; allowed: {', '.join(map(repr, STATUSES))}: {_RERUN}")
    attacks_raw = _obj(raw, "attacks", str(where), required=status != "complete")
    if status != "complete" and not attacks_raw:
        state = "is still running" if status == "running" else "was interrupted"
        error = f" ({raw['error']})" if raw.get("error") else ""
        raise ReportError(
            f"the audit in {path} {state}{error} before any attack finished (status {status!r}), so there is "
            f"nothing to report yet: wait for it to finish, or rerun `{raw.get('command') or _MAKE}`"
        )
    if not attacks_raw:
        raise ReportError(f"{where}: 'attacks' is empty, so there is nothing to report: {_RERUN}")
    data = _data(_obj(raw, "data", str(where)), f"{where} data")
    attacks = tuple(_attack(str(k), v, str(where)) for k, v in attacks_raw.items())
    verdict_raw = raw.get("verdict")
    verdict = None
    if isinstance(verdict_raw, dict) and verdict_raw.get("text"):
        verdict = Verdict(bool(verdict_raw.get("leaks")), str(verdict_raw["text"]), _text(verdict_raw, "attack"))
    elif status == "complete":
        raise ReportError(f"{where}: 'verdict' must be an object with 'leaks' and 'text': {_RERUN}")
    records = _records(path)
    if records is None and status == "complete":
        raise ReportError(f"records.csv and records.parquet are both missing in {path}: {_RERUN}")
    if records is not None:
        _check_records(records, attacks, status == "complete")
    exposed_path = path / "exposed.npz"
    names = tuple(a.name for a in attacks)
    exposed = read_exposed(exposed_path, names, data.record_shape) if exposed_path.is_file() else {}
    free: Callable[[str], dict[str, Any]] = lambda key: _obj(raw, key, str(where), required=False)  # noqa: E731
    return AuditData(
        path=path,
        format=int(fmt),
        status=str(status),
        data=data,
        target=_target(_obj(raw, "target", str(where)), f"{where} target"),
        attacks=attacks,
        verdict=verdict,
        records=records,
        exposed=exposed,
        error=_text(raw, "error"),
        command=_text(raw, "command"),
        created=_text(raw, "created"),
        finished=_text(raw, "finished"),
        seed=_int(raw.get("seed"), f"{where} 'seed'"),
        shadows=free("shadows"),
        queries=free("queries"),
        timings=free("timings"),
        versions=free("versions"),
        hardware=free("hardware"),
        config=free("config"),
        privacy=free("privacy"),
    )

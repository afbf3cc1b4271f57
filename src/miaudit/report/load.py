"""Read a run directory (``miaudit reproduce``, ``compare --out``, ``attack --out``) into typed records.

The reader is strict about what a report needs (files, columns, keys, value types) and tolerant of
anything extra (new columns and new manifest keys are ignored). Every problem is a
:class:`~.records.ReportError` naming the file, the line or key, and what to do about it. Format 2
is read in full; format 1 (``miaudit reproduce`` before the ``attack`` column) is read with every
row's attack taken as ``shokri``. Nothing here computes attacks or trains models: the format is
described in ``docs/run-format.md``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from miaudit.report.records import (
    KINDS,
    RERUN,
    SETTING_COLUMNS,
    STATUSES,
    VERDICTS,
    Finding,
    Interval,
    Manifest,
    ReportError,
    ResultRow,
    ScoreSet,
    StudyInfo,
    SummaryRow,
)
from miaudit.report.setting_info import SETTINGS_FILE, SettingInfo, read_settings

__all__ = [
    "FORMATS_READ",
    "RESULTS_COLUMNS",
    "SUMMARY_COLUMNS",
    "RunData",
    "load_run",
    "read_findings",
    "read_manifest",
    "read_results",
    "read_scores",
    "read_summary",
]

#: Run-directory formats this reader understands.
FORMATS_READ = (1, 2)
_FORMAT1_ATTACK = "shokri"  # format 1 had no attack column: every row was the shadow-model attack
RESULTS_COLUMNS = ("study", "setting_id", "seed", *SETTING_COLUMNS, "metric", "value")
SUMMARY_COLUMNS = ("study", "setting_id", *SETTING_COLUMNS, "metric", "mean", "low", "high", "std", "n", "paper")
_MAKE = "miaudit reproduce --out DIR`, `miaudit compare --out DIR` or `miaudit attack --out DIR"


@dataclass(frozen=True)
class RunData:
    """Everything a run directory holds for a report (the cache excluded).

    ``score_files`` maps each setting id to its ``scores/<setting_id>.npz``; the scores are read
    when asked for, by :meth:`scores`. ``settings`` holds ``settings.json`` (each setting in full:
    its label, recipe and output policy), empty for runs written before that file existed.
    """

    path: Path
    manifest: Manifest
    results: tuple[ResultRow, ...]
    summary: tuple[SummaryRow, ...]
    findings: tuple[Finding, ...]
    score_files: Mapping[str, Path]
    settings: Mapping[str, SettingInfo] = field(default_factory=dict)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds of the run, as listed in the manifest."""
        return self.manifest.seeds

    @property
    def kind(self) -> str:
        """The command that wrote the run: ``reproduce``, ``compare`` or ``attack``."""
        return self.manifest.kind

    @property
    def studies(self) -> list[str]:
        """The study ids present in ``summary.csv``, in numeric order where they are numbers."""
        return sorted({r.study for r in self.summary}, key=_study_key)

    def study_info(self, study: str) -> StudyInfo:
        """The manifest's title, paper reference and description of ``study`` (its id as title if none)."""
        return self.manifest.study(study) or StudyInfo(id=study, title=f"Study {study}")

    def label(self, setting_id: str) -> str | None:
        """The setting's ``label`` in ``settings.json`` (an arm's name, e.g. ``"DP eps 4"``), or None."""
        info = self.settings.get(setting_id)
        return info.label if info is not None else None

    def scores(self, setting_id: str) -> ScoreSet:
        """The stored scores of a setting, read from ``scores/<setting_id>.npz``."""
        path = self.score_files.get(setting_id)
        if path is None:
            raise ReportError(
                f"scores/{setting_id}.npz is missing in {self.path}: the run was interrupted before "
                f"it stored the scores of setting {setting_id!r}; {RERUN}"
            )
        return read_scores(path, setting_id)


def _study_key(study: str) -> tuple[int, str]:
    return (int(study), "") if study.isdigit() else (10**9, study)


# -------------------------------------------------------------------------------- low level
def _read_json(path: Path, fix: str) -> Any:
    """The parsed JSON of ``path``; a ReportError naming the file and ``fix`` otherwise."""
    if not path.is_file():
        raise ReportError(f"{path.name} is missing in {path.parent}: {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}): {fix}") from None


def _json_float(value: Any, where: str) -> float:
    """A JSON number as a float; ``null`` (no value, no interval) as NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where}: {value!r} is not a number; {RERUN}")
    return float(value)


def _json_int(value: Any, where: str) -> int | None:
    number = _json_float(value, where)
    if math.isnan(number):
        return None
    if not number.is_integer():
        raise ReportError(f"{where}: {value!r} is not a whole number; {RERUN}")
    return int(number)


def _number(text: str, where: str, *, allow_empty: bool) -> float:
    text = text.strip()
    if text == "" or text.lower() in {"nan", "none", "null"}:
        if allow_empty:
            return math.nan
        raise ReportError(f"{where} is empty; a number is required: {RERUN}")
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{where}: {text!r} is not a number; {RERUN}") from None


def _integer(text: str, where: str, *, allow_empty: bool) -> int | None:
    value = _number(text, where, allow_empty=allow_empty)
    if math.isnan(value):
        return None
    if not value.is_integer():
        raise ReportError(f"{where}: {text!r} is not a whole number; {RERUN}")
    return int(value)


def _read_csv(path: Path, required: Sequence[str], *, fmt: int) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as ``(line_number, {column: text})``, after checking the header.

    A format-1 file may lack the ``attack`` column: its rows get ``shokri``.
    """
    if not path.is_file():
        raise ReportError(
            f"{path.name} is missing in {path.parent}: the run was interrupted before writing it; {RERUN}"
        )
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header and not (fmt == 1 and c == "attack")]
        if missing:
            raise ReportError(
                f"{path.name} in {path.parent} lacks the column(s) {', '.join(map(repr, missing))} "
                f"(found: {', '.join(header) or 'no header'}); it was not written by a miaudit that writes "
                f"format {fmt}: run `{_MAKE}` again with this version"
            )
        reader.fieldnames = header
        rows = [(reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}) for row in reader]
    if not rows:
        raise ReportError(f"{path.name} in {path.parent} has a header but no rows: {RERUN}")
    if "attack" not in header:
        for _, row in rows:
            row["attack"] = _FORMAT1_ATTACK
    return rows


class _Setting(NamedTuple):
    """The setting columns of one CSV row, parsed."""

    attack: str
    attack_model: str
    n_shadows: int | None
    target_size: int | None
    classes: int | None
    arch: str
    shadow_arch: str


def _setting_fields(row: dict[str, str], where: str) -> dict[str, Any]:
    """The setting columns of ``row`` as keyword arguments of a row record."""

    def whole(name: str) -> int | None:
        return _integer(row[name], f"{where}, column {name!r}", allow_empty=True)

    setting = _Setting(
        attack=_key_text(row, "attack", where),
        attack_model=row["attack_model"].strip(),
        n_shadows=whole("n_shadows"),
        target_size=whole("target_size"),
        classes=whole("classes"),
        arch=row["arch"].strip(),
        shadow_arch=row["shadow_arch"].strip(),
    )
    return setting._asdict()


def _key_text(row: dict[str, str], name: str, where: str) -> str:
    text = row[name].strip()
    if not text:
        raise ReportError(f"{where}, column {name!r} is empty; {RERUN}")
    return text


# ------------------------------------------------------------------------------------ files
def read_results(path: Path, *, fmt: int = 2) -> tuple[ResultRow, ...]:
    """Parse ``results.csv`` (see ``docs/run-format.md``); extra columns are ignored."""
    out = []
    for line, row in _read_csv(path, RESULTS_COLUMNS, fmt=fmt):
        where = f"{path.name} line {line}"
        out.append(
            ResultRow(
                study=_key_text(row, "study", where),
                setting_id=_key_text(row, "setting_id", where),
                seed=_integer(row["seed"], f"{where}, column 'seed'", allow_empty=False) or 0,
                metric=_key_text(row, "metric", where),
                value=_number(row["value"], f"{where}, column 'value'", allow_empty=False),
                **_setting_fields(row, where),
            )
        )
    return tuple(out)


def read_summary(path: Path, *, fmt: int = 2) -> tuple[SummaryRow, ...]:
    """Parse ``summary.csv`` (see ``docs/run-format.md``); extra columns are ignored."""
    out = []
    for line, row in _read_csv(path, SUMMARY_COLUMNS, fmt=fmt):
        where = f"{path.name} line {line}"
        paper = _number(row["paper"], f"{where}, column 'paper'", allow_empty=True)
        out.append(
            SummaryRow(
                study=_key_text(row, "study", where),
                setting_id=_key_text(row, "setting_id", where),
                metric=_key_text(row, "metric", where),
                mean=_number(row["mean"], f"{where}, column 'mean'", allow_empty=False),
                low=_number(row["low"], f"{where}, column 'low'", allow_empty=True),
                high=_number(row["high"], f"{where}, column 'high'", allow_empty=True),
                std=_number(row["std"], f"{where}, column 'std'", allow_empty=True),
                n=_integer(row["n"], f"{where}, column 'n'", allow_empty=False) or 0,
                paper=None if math.isnan(paper) else paper,
                **_setting_fields(row, where),
            )
        )
    return tuple(out)


def read_findings(path: Path) -> tuple[Finding, ...]:
    """Parse ``findings.json``: a list (possibly empty) of findings with ``id``, ``study``, ``claim``, ``verdict``."""
    data = _read_json(path, f"the run was interrupted before writing it; {RERUN}")
    if not isinstance(data, list):
        raise ReportError(f"{path} must hold a JSON list of findings; got {type(data).__name__}: {RERUN}")
    out = []
    for i, item in enumerate(data):
        where = f"{path.name} item {i}"
        if not isinstance(item, dict):
            raise ReportError(f"{where} must be an object; got {type(item).__name__}: {RERUN}")
        missing = [k for k in ("id", "study", "claim", "verdict") if k not in item]
        if missing:
            raise ReportError(f"{where} lacks the key(s) {', '.join(map(repr, missing))}: {RERUN}")
        if item["verdict"] not in VERDICTS:
            raise ReportError(
                f"{where} has verdict {item['verdict']!r}; allowed: {', '.join(map(repr, VERDICTS))}: {RERUN}"
            )
        out.append(
            Finding(
                id=str(item["id"]),
                study=str(item["study"]),
                claim=str(item["claim"]),
                verdict=str(item["verdict"]),
                paper_ref=str(item.get("paper_ref") or ""),
                metric=str(item.get("metric") or ""),
                comparison=str(item.get("comparison") or ""),
                difference=_json_float(item.get("difference"), f"{where}, key 'difference'"),
                low=_json_float(item.get("low"), f"{where}, key 'low'"),
                high=_json_float(item.get("high"), f"{where}, key 'high'"),
                p_value=_json_float(item.get("p_value"), f"{where}, key 'p_value'"),
                n=_json_int(item.get("n"), f"{where}, key 'n'") or 0,
                margin=_json_float(item.get("margin"), f"{where}, key 'margin'"),
                seeds_needed=_json_int(item.get("seeds_needed"), f"{where}, key 'seeds_needed'"),
                sentence=str(item.get("sentence") or ""),
                **_auc_side(item.get("auc"), f"{where}, key 'auc'"),
            )
        )
    return tuple(out)


def _auc_side(record: Any, where: str) -> dict[str, Any]:
    """The AUC version of a finding (optional): its difference, interval and verdict."""
    if not isinstance(record, dict) or record.get("difference") is None:
        return {}
    verdict = str(record.get("verdict") or "")
    return {
        "auc": Interval(
            mean=_json_float(record.get("difference"), f"{where}.difference"),
            low=_json_float(record.get("low"), f"{where}.low"),
            high=_json_float(record.get("high"), f"{where}.high"),
            n=_json_int(record.get("n"), f"{where}.n") or 0,
        ),
        "auc_verdict": verdict if verdict in VERDICTS else "",
    }


def _scores_array(values: Any, where: str) -> NDArray[np.float64]:
    """Membership scores as an ndarray of shape (n_records,), float64, all finite."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReportError(f"{where} must hold numbers; got dtype {np.asarray(values).dtype}: {RERUN}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ReportError(f"{where} must be a non-empty 1-d array of scores; got shape {arr.shape}: {RERUN}")
    if not np.all(np.isfinite(arr)):
        raise ReportError(f"{where} holds NaN or infinite scores; the attack that wrote them failed: {RERUN}")
    return arr


def read_scores(path: Path, label: str) -> ScoreSet:
    """The scores of ``scores/<setting_id>.npz``: arrays ``member_seed<S>`` and ``nonmember_seed<S>``."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} is not a readable .npz file ({exc}); {RERUN}") from None
    seeds = sorted(
        {n.removeprefix("member_seed") for n in arrays if n.startswith("member_seed")}
        | {n.removeprefix("nonmember_seed") for n in arrays if n.startswith("nonmember_seed")},
        key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s),
    )
    if not seeds:
        raise ReportError(
            f"{path} holds no arrays named member_seed<S>/nonmember_seed<S> (found: "
            f"{', '.join(arrays) or 'nothing'}); {RERUN}"
        )
    by_seed = {}
    for s in seeds:
        pair = []
        for side in ("member", "nonmember"):
            key = f"{side}_seed{s}"
            if key not in arrays:
                raise ReportError(f"{path} lacks the array {key!r} (the other side of seed {s}); {RERUN}")
            pair.append(_scores_array(arrays[key], f"{path.name}: {key}"))
        by_seed[s] = (pair[0], pair[1])
    return ScoreSet(label=label, by_seed=by_seed)


# --------------------------------------------------------------------------------- manifest
def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else str(value)


def _studies(raw: Any, where: Path) -> tuple[StudyInfo, ...]:
    if not isinstance(raw, dict):
        raise ReportError(
            f"{where}: 'studies' must be an object of study id -> {{title, paper_ref, description}}; got "
            f"{type(raw).__name__}: {RERUN}"
        )
    out = []
    for sid, rec in raw.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("title"), str) or not rec["title"].strip():
            raise ReportError(
                f"{where}: studies.{sid} must be an object with a non-empty 'title'; got {rec!r}: {RERUN}"
            )
        out.append(StudyInfo(str(sid), rec["title"], _text(rec, "paper_ref"), _text(rec, "description")))
    return tuple(out)


def read_manifest(path: Path, *, allow_incomplete: bool = False) -> Manifest:
    """Parse and check ``manifest.json`` of the run directory ``path``.

    Raises
    ------
    ReportError
        Not an object, a required key missing, an unknown format, kind or status, no seeds, or a
        run that is not complete (unless ``allow_incomplete``).
    """
    where = path / "manifest.json"
    raw = _read_json(where, f"this is not a run directory; run `{_MAKE}` first")
    if not isinstance(raw, dict):
        raise ReportError(f"{where} must hold a JSON object; got {type(raw).__name__}: {RERUN}")
    fmt = raw.get("format")
    if fmt not in FORMATS_READ or isinstance(fmt, bool):
        raise ReportError(
            f"{where} has format {fmt!r}; this miaudit reads formats {' and '.join(map(str, FORMATS_READ))}: "
            f"upgrade miaudit, or rerun `{_MAKE}` with this version to write the run again"
        )
    required = ("status", "seeds", "kind", "studies") if fmt == 2 else ("status", "seeds")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ReportError(
            f"{where} lacks the key(s) {', '.join(map(repr, missing))} that format {fmt} requires: it was "
            f"not written by a compatible miaudit; rerun `{_MAKE}` with this version"
        )
    kind = str(raw.get("kind", "reproduce"))
    if kind not in KINDS:
        raise ReportError(f"{where}: 'kind' is {kind!r}; allowed: {', '.join(map(repr, KINDS))}: {RERUN}")
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ReportError(f"{where}: 'seeds' must be a non-empty list of whole numbers; got {seeds!r}: {RERUN}")
    status = raw["status"]
    if status not in STATUSES:
        raise ReportError(f"{where}: 'status' is {status!r}; allowed: {', '.join(map(repr, STATUSES))}: {RERUN}")
    if status != "complete" and not allow_incomplete:
        command = raw.get("command") or f"miaudit {kind}"
        state = "is still running or was killed" if status == "running" else "was interrupted"
        raise ReportError(
            f"the run in {path} {state} (manifest status {status!r}, not 'complete'): rerun the same "
            f"command (`{command}`) to resume it; it reuses everything already computed"
        )

    def free(key: str) -> dict[str, Any]:
        value = raw.get(key)
        return dict(value) if isinstance(value, dict) else {}

    return Manifest(
        format=int(fmt),
        kind=kind,
        status=str(status),
        seeds=tuple(seeds),
        studies=_studies(raw["studies"], where) if "studies" in raw else (),
        command=_text(raw, "command"),
        created=_text(raw, "created"),
        finished=_text(raw, "finished"),
        config=free("config"),
        versions=free("versions"),
        hardware=free("hardware"),
        timings=free("timings"),
    )


# ----------------------------------------------------------------------------------- loader
def load_run(run_dir: Path | str, *, allow_incomplete: bool = False) -> RunData:
    """Read a run directory.

    Parameters
    ----------
    run_dir : path
        The folder written by ``miaudit reproduce --out``, ``miaudit compare --out`` or
        ``miaudit attack --out``.
    allow_incomplete : bool, default=False
        Read a run whose manifest status is not ``complete`` (for a preview of a running study).

    Raises
    ------
    ReportError
        Naming the missing file, column or key and the command that fixes it; a ``.json`` file
        instead of a run directory.
    """
    path = Path(run_dir)
    if path.suffix.lower() == ".json" and not path.is_dir():
        raise ReportError(
            f"{path} is a JSON file, and reports are built from run directories: pass a run directory "
            f"(written by `{_MAKE}`) instead"
        )
    if not path.exists():
        raise ReportError(f"run directory {path} does not exist: run `{_MAKE}` first, or pass the folder it wrote")
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory: pass the folder written by `{_MAKE}`")
    manifest = read_manifest(path, allow_incomplete=allow_incomplete)
    results = read_results(path / "results.csv", fmt=manifest.format)
    summary = read_summary(path / "summary.csv", fmt=manifest.format)
    findings = read_findings(path / "findings.json")
    scores_dir = path / "scores"
    if not scores_dir.is_dir():
        raise ReportError(
            f"scores/ is missing in {path}: the run was interrupted before storing membership scores; {RERUN}"
        )
    score_files = {p.stem: p for p in sorted(scores_dir.glob("*.npz")) if not p.name.startswith(".")}
    if not score_files:
        raise ReportError(f"scores/ in {path} holds no .npz files: {RERUN}")
    settings = read_settings(path / SETTINGS_FILE)
    return RunData(path, manifest, results, summary, findings, score_files, settings)

"""Read a ``miaudit reproduce`` run directory: manifest, results, summary, findings and scores.

The readers are strict about what a report needs (files, columns, keys, value types) and tolerant
about anything extra (new columns, new manifest keys are ignored). Every problem is a
:class:`~.records.ReportError` naming the file, the line or key, and what to do about it. Nothing
here computes attacks or trains models: the format is described in ``docs/run-format.md``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.report.load_records import load_compare, read_json, scores_array, to_float
from miaudit.report.records import (
    RERUN,
    SETTING_COLUMNS,
    VERDICTS,
    CompareData,
    Finding,
    Interval,
    ReportError,
    ResultRow,
    ScoreSet,
    SummaryRow,
)

__all__ = [
    "RESULTS_COLUMNS",
    "SUMMARY_COLUMNS",
    "RunData",
    "load_run",
    "read_findings",
    "read_results",
    "read_summary",
]

SUPPORTED_FORMAT = 1
_INT_COLUMNS = ("n_shadows", "target_size", "classes")
RESULTS_COLUMNS = ("study", "setting_id", "seed", *SETTING_COLUMNS, "metric", "value")
SUMMARY_COLUMNS = ("study", "setting_id", *SETTING_COLUMNS, "metric", "mean", "low", "high", "std", "n", "paper")


@dataclass(frozen=True)
class RunData:
    """Everything a ``miaudit reproduce`` run directory holds for a report (the cache excluded)."""

    path: Path
    manifest: dict[str, Any]
    results: tuple[ResultRow, ...]
    summary: tuple[SummaryRow, ...]
    findings: tuple[Finding, ...]
    score_files: dict[str, Path]
    compare: CompareData | None = None

    @property
    def seeds(self) -> list[Any]:
        """The seeds of the run, as listed in the manifest."""
        return list(self.manifest.get("seeds", []))

    @property
    def studies(self) -> list[str]:
        """The study ids present in ``summary.csv``, in numeric order where they are numbers."""
        return sorted({r.study for r in self.summary}, key=_study_key)

    def scores(self, setting_id: str) -> ScoreSet:
        """The stored scores of a setting, read from ``scores/<setting_id>.npz``."""
        path = self.score_files.get(setting_id)
        if path is None:
            raise ReportError(
                f"scores/{setting_id}.npz is missing in {self.path}: the run was interrupted before "
                f"it stored the scores of setting {setting_id!r}; {RERUN}"
            )
        return _read_npz(path, setting_id)


def _study_key(study: str) -> tuple[int, str]:
    return (int(study), "") if study.isdigit() else (10**9, study)


# -------------------------------------------------------------------------------- low level
def _number(text: str, where: str, *, allow_empty: bool) -> float:
    text = text.strip()
    if text == "" or text.lower() in {"nan", "none", "null"}:
        if allow_empty:
            return math.nan
        raise ReportError(f"{where} is empty; a number is required. {RERUN.capitalize()}")
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{where}: {text!r} is not a number. {RERUN.capitalize()}") from None


def _integer(text: str, where: str, *, allow_empty: bool) -> int | None:
    value = _number(text, where, allow_empty=allow_empty)
    if math.isnan(value):
        return None
    if not value.is_integer():
        raise ReportError(f"{where}: {text!r} is not a whole number. {RERUN.capitalize()}")
    return int(value)


def _read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as ``(line_number, {column: text})``, after checking the header."""
    if not path.is_file():
        raise ReportError(
            f"{path.name} is missing in {path.parent}: the run was interrupted before writing it; {RERUN}"
        )
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ReportError(
                f"{path.name} in {path.parent} lacks the column(s) {', '.join(map(repr, missing))} "
                f"(found: {', '.join(header) or 'no header'}); it was not written by a compatible "
                f"`miaudit reproduce`: run it again with `--out {path.parent}`"
            )
        reader.fieldnames = header
        rows = [(reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}) for row in reader]
    if not rows:
        raise ReportError(f"{path.name} in {path.parent} has a header but no rows: {RERUN}")
    return rows


def _setting_fields(row: dict[str, str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SETTING_COLUMNS:
        if name in _INT_COLUMNS:
            out[name] = _integer(row[name], f"{where}, column {name!r}", allow_empty=True)
        else:
            out[name] = row[name].strip()
    return out


def _key_text(row: dict[str, str], name: str, where: str) -> str:
    text = row[name].strip()
    if not text:
        raise ReportError(f"{where}, column {name!r} is empty. {RERUN.capitalize()}")
    return text


# ------------------------------------------------------------------------------------ files
def read_results(path: Path) -> tuple[ResultRow, ...]:
    """Parse ``results.csv`` (see ``docs/run-format.md``); extra columns are ignored."""
    out = []
    for line, row in _read_csv(path, RESULTS_COLUMNS):
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


def read_summary(path: Path) -> tuple[SummaryRow, ...]:
    """Parse ``summary.csv`` (see ``docs/run-format.md``); extra columns are ignored."""
    out = []
    for line, row in _read_csv(path, SUMMARY_COLUMNS):
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
    """Parse ``findings.json``: a list of findings with ``id``, ``study``, ``claim`` and ``verdict``."""
    data = read_json(path, "the findings", f"the run was interrupted before writing it; {RERUN}")
    if not isinstance(data, list):
        raise ReportError(f"{path} must hold a JSON list of findings; got {type(data).__name__}. {RERUN}")
    out = []
    for i, item in enumerate(data):
        where = f"{path.name} item {i}"
        if not isinstance(item, dict):
            raise ReportError(f"{where} must be an object; got {type(item).__name__}. {RERUN}")
        missing = [k for k in ("id", "study", "claim", "verdict") if k not in item]
        if missing:
            raise ReportError(f"{where} lacks the key(s) {', '.join(map(repr, missing))}. {RERUN}")
        if item["verdict"] not in VERDICTS:
            raise ReportError(
                f"{where} has verdict {item['verdict']!r}; allowed: {', '.join(map(repr, VERDICTS))}. {RERUN}"
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
                difference=to_float(item.get("difference"), f"{where}, key 'difference'"),
                low=to_float(item.get("low"), f"{where}, key 'low'"),
                high=to_float(item.get("high"), f"{where}, key 'high'"),
                p_value=to_float(item.get("p_value"), f"{where}, key 'p_value'"),
                n=int(to_float(item.get("n", 0), f"{where}, key 'n'") or 0),
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
            mean=to_float(record.get("difference"), f"{where}.difference"),
            low=to_float(record.get("low"), f"{where}.low"),
            high=to_float(record.get("high"), f"{where}.high"),
            n=int(to_float(record.get("n", 0), f"{where}.n") or 0),
        ),
        "auc_verdict": verdict if verdict in VERDICTS else "",
    }


def _read_npz(path: Path, label: str) -> ScoreSet:
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
            pair.append(scores_array(arrays[key], f"{path.name}: {key}"))
        by_seed[s] = (pair[0], pair[1])
    return ScoreSet(label=label, by_seed=by_seed)


# ----------------------------------------------------------------------------------- loaders
def load_run(run_dir: Path | str, *, allow_incomplete: bool = False) -> RunData:
    """Read a ``miaudit reproduce`` run directory.

    Parameters
    ----------
    run_dir : path
        The folder given to ``miaudit reproduce --out``.
    allow_incomplete : bool, default=False
        Read a run whose manifest status is not ``complete`` (for a preview of a running study).

    Raises
    ------
    ReportError
        Naming the missing file, column or key and the command that fixes it.
    """
    path = Path(run_dir)
    make = f"run `miaudit reproduce --out {path}` first"
    if not path.exists():
        raise ReportError(f"run directory {path} does not exist: {make}, or pass the folder it wrote")
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory: pass the folder written by `miaudit reproduce --out`")
    manifest = read_json(path / "manifest.json", "the run's manifest", f"this is not a run directory; {make}")
    _check_manifest(manifest, path, allow_incomplete=allow_incomplete)
    results = read_results(path / "results.csv")
    summary = read_summary(path / "summary.csv")
    findings = read_findings(path / "findings.json")
    scores_dir = path / "scores"
    if not scores_dir.is_dir():
        raise ReportError(
            f"scores/ is missing in {path}: the run was interrupted before storing membership scores; {RERUN}"
        )
    score_files = {p.stem: p for p in sorted(scores_dir.glob("*.npz")) if not p.name.startswith(".")}
    if not score_files:
        raise ReportError(f"scores/ in {path} holds no .npz files: {RERUN}")
    compare_path = path / "compare.json"
    compare = load_compare(compare_path) if compare_path.exists() else None
    return RunData(path, manifest, results, summary, findings, score_files, compare)


def _check_manifest(manifest: Any, path: Path, *, allow_incomplete: bool) -> None:
    where = path / "manifest.json"
    if not isinstance(manifest, dict):
        raise ReportError(f"{where} must hold a JSON object; got {type(manifest).__name__}")
    missing = [k for k in ("format", "status", "seeds", "config") if k not in manifest]
    if missing:
        raise ReportError(
            f"{where} lacks the key(s) {', '.join(map(repr, missing))}: it was not written by a compatible "
            f"`miaudit reproduce`; run it again with `--out {path}`"
        )
    if manifest["format"] != SUPPORTED_FORMAT:
        raise ReportError(
            f"{where} has format {manifest['format']!r}; this miaudit reads format {SUPPORTED_FORMAT}: "
            "upgrade miaudit, or rebuild the run with this version's `miaudit reproduce`"
        )
    if not isinstance(manifest["seeds"], list) or not manifest["seeds"]:
        raise ReportError(f"{where}: 'seeds' must be a non-empty list; got {manifest['seeds']!r}")
    status = manifest["status"]
    if status != "complete" and not allow_incomplete:
        command = manifest.get("command") or "miaudit reproduce"
        state = "is still running or was killed" if status == "running" else "was interrupted"
        raise ReportError(
            f"the run in {path} {state} (manifest status {status!r}, not 'complete'): rerun the same "
            f"command (`{command}`) to resume it; it reuses everything already computed"
        )

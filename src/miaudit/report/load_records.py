"""Read the JSON records of ``miaudit compare --json`` and ``miaudit attack --json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miaudit.report.records import AttackRecord, CompareData, Interval, ReportError, ScoreSet

__all__ = ["load_attack_record", "load_compare", "read_json", "scores_array", "sniff_json", "to_float"]


def read_json(path: Path, what: str, fix: str) -> Any:
    """The parsed JSON of ``path``; a ReportError naming ``what`` it holds and the ``fix`` otherwise."""
    if not path.is_file():
        raise ReportError(f"{path.name} is missing in {path.parent}: {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}); {what}: {fix}") from None


def to_float(value: Any, where: str) -> float:
    """A JSON number as a float; ``null`` (no interval, one seed) as NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(
            f"{where}: {value!r} is not a number; the file was not written by a compatible miaudit: "
            "write it again with the command that made it"
        )
    return float(value)


def scores_array(values: Any, where: str) -> NDArray[np.float64]:
    """Membership scores as an ndarray of shape (n_records,), float64, all finite."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReportError(f"{where} must be a list of numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ReportError(f"{where} must be a non-empty 1-d list of scores; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ReportError(f"{where} holds NaN or infinite scores; the attack that wrote them failed")
    return arr


def _interval(record: Any, where: str) -> Interval:
    if isinstance(record, int | float) and not isinstance(record, bool):
        return Interval(float(record))
    if not isinstance(record, dict) or "mean" not in record:
        raise ReportError(f"{where} must be an object with at least 'mean'; got {record!r}")
    return Interval(
        mean=to_float(record["mean"], f"{where}.mean"),
        low=to_float(record.get("low"), f"{where}.low"),
        high=to_float(record.get("high"), f"{where}.high"),
        std=to_float(record.get("std"), f"{where}.std"),
        n=int(to_float(record.get("n", 1), f"{where}.n")),
    )


def _scores_pair(record: Any, where: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if not isinstance(record, dict) or not {"member", "nonmember"} <= set(record):
        raise ReportError(f"{where} must be an object with 'member' and 'nonmember' score lists")
    return (
        scores_array(record["member"], f"{where}.member"),
        scores_array(record["nonmember"], f"{where}.nonmember"),
    )


def load_compare(path: Path | str) -> CompareData:
    """Read the JSON record of ``miaudit compare --json``."""
    path = Path(path)
    fix = "write it again with `miaudit compare --json PATH`"
    data = read_json(path, "the comparison record", fix)
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold a JSON object; {fix}")
    missing = [k for k in ("attacks", "scores") if k not in data]
    if missing:
        raise ReportError(f"{path} lacks the key(s) {', '.join(map(repr, missing))}; {fix}")
    attacks = data["attacks"]
    if not isinstance(attacks, dict) or not attacks:
        raise ReportError(f"{path}: 'attacks' must be a non-empty object of attack name -> metrics; {fix}")
    metrics: dict[str, dict[str, Interval]] = {}
    for name, record in attacks.items():
        where = f"{path.name}: attacks.{name}"
        if not isinstance(record, dict) or "auc" not in record:
            raise ReportError(f"{where} lacks 'auc'; {fix}")
        flat: dict[str, Interval] = {"auc": _interval(record["auc"], f"{where}.auc")}
        for key, value in record.items():
            if key == "auc":
                continue
            if key == "tpr_at_fpr" and isinstance(value, dict):
                for level, rec in value.items():
                    flat[f"tpr_at_fpr_{level}"] = _interval(rec, f"{where}.tpr_at_fpr.{level}")
            elif (isinstance(value, dict) and "mean" in value) or isinstance(value, int | float):
                flat[key] = _interval(value, f"{where}.{key}")
        metrics[str(name)] = flat
    raw_scores = data["scores"]
    if not isinstance(raw_scores, dict):
        raise ReportError(f"{path}: 'scores' must be an object of attack -> seed -> scores; {fix}")
    scores = {}
    for name, per_seed in raw_scores.items():
        if not isinstance(per_seed, dict) or not per_seed:
            raise ReportError(f"{path.name}: scores.{name} must map each seed to its scores; {fix}")
        scores[str(name)] = ScoreSet(
            label=str(name),
            by_seed={str(s): _scores_pair(rec, f"{path.name}: scores.{name}.{s}") for s, rec in per_seed.items()},
        )
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    seeds = data.get("seeds") if isinstance(data.get("seeds"), list) else []
    raw_target = data.get("target") if isinstance(data.get("target"), dict) else {}
    target = {
        str(k): _interval(v, f"{path.name}: target.{k}")
        for k, v in (raw_target or {}).items()
        if isinstance(v, dict) and "mean" in v
    }
    return CompareData(path, dict(config or {}), list(seeds or []), metrics, scores, target)


def load_attack_record(path: Path | str) -> AttackRecord:
    """Read the JSON record of ``miaudit attack --json PATH``."""
    path = Path(path)
    fix = "write it again with `miaudit attack --json PATH`"
    data = read_json(path, "the attack record", fix)
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold a JSON object; {fix}")
    missing = [k for k in ("config", "target", "metrics", "scores") if k not in data]
    if missing:
        raise ReportError(f"{path} lacks the key(s) {', '.join(map(repr, missing))}; {fix}")
    metrics = data["metrics"]
    need = [k for k in ("auc", "accuracy", "tpr_at_fpr") if not isinstance(metrics, dict) or k not in metrics]
    if need:
        raise ReportError(f"{path}: 'metrics' lacks {', '.join(map(repr, need))}; {fix}")
    seed = str(data["config"].get("seed", 0)) if isinstance(data["config"], dict) else "0"
    pair = _scores_pair(data["scores"], f"{path.name}: scores")
    known = {"config", "target", "metrics", "timings", "versions", "scores"}
    return AttackRecord(
        path=path,
        config=dict(data["config"]) if isinstance(data["config"], dict) else {},
        target=dict(data["target"]) if isinstance(data["target"], dict) else {},
        metrics=dict(metrics),
        timings=dict(data.get("timings") or {}),
        versions=dict(data.get("versions") or {}),
        scores=ScoreSet(label=path.stem, by_seed={seed: pair}),
        extra={k: v for k, v in data.items() if k not in known},
    )


def sniff_json(path: Path) -> str:
    """Which record a JSON file holds: ``"compare"`` or ``"attack"``."""
    data = read_json(path, "a result record", "pass a run directory, `compare --json` or `attack --json` output")
    if isinstance(data, dict) and "attacks" in data:
        return "compare"
    if isinstance(data, dict) and "metrics" in data:
        return "attack"
    raise ReportError(
        f"{path} is neither a `miaudit attack --json` record (keys config, target, metrics, scores) nor a "
        "`miaudit compare --json` record (keys attacks, scores): pass a run directory or one of those files"
    )

"""``miaudit reproduce``: run the studies, write the run directory, return where it is."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.studies.cache import Cache
from miaudit.studies.findings import compute_findings
from miaudit.studies.pipeline import versions
from miaudit.studies.runner import StageProgress, StudyRunner
from miaudit.studies.store import (
    RESULT_COLUMNS,
    SUMMARY_COLUMNS,
    result_rows,
    summarize,
    write_csv,
    write_json,
    write_scores,
)
from miaudit.studies.study import ReproduceConfig

__all__ = ["hardware", "reproduce"]

logger = logging.getLogger(__name__)


def hardware() -> dict[str, Any]:
    """CPU model, cores, memory, whether the CPU has native bf16 units, and the engine's compiled kernels."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    from miaudit.training.hardware import native_bf16
    from miaudit.training.native import native_status

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "bf16_native": bool(native_bf16()),
        # which compiled kernels trained the models (results agree across settings to float rounding)
        "native_kernels": native_status(),
    }


def reproduce(
    config: ReproduceConfig,
    out: str | Path,
    *,
    cache_dir: str | Path | None = None,
    data_dir: str | None = None,
    engine: str = "auto",
    precision: str = "auto",
    command: str = "",
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Run every study of ``config`` for every seed and write the run directory ``out``.

    Returns the manifest (also written to ``out/manifest.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(Path(cache_dir) if cache_dir else out / "cache")
    t0 = time.perf_counter()
    manifest: dict[str, Any] = {
        "format": 1,
        "status": "running",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": config.model_dump(mode="json"),
        "seeds": config.seed_list,
        "versions": versions(),
        "hardware": hardware(),
        "engine": {"engine": engine, "precision": precision},
        "studies": {
            s.id: {"title": s.title, "paper_ref": s.paper_ref, "description": s.description} for s in config.studies
        },
        "cache": str(cache.root),
    }
    write_json(out / "manifest.json", manifest)
    runner = StudyRunner(config, cache=cache, data_dir=data_dir, engine=engine, precision=precision, progress=progress)
    results = runner.run()

    rows = []
    scores: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for r in results:
        rows.extend(result_rows(r.setting, r.seed, r.metrics, r.target))
        scores[r.setting.setting_id][r.seed] = (r.member_scores, r.nonmember_scores)
    write_csv(out / "results.csv", rows, RESULT_COLUMNS)
    write_csv(out / "summary.csv", summarize(rows), SUMMARY_COLUMNS)
    write_scores(out / "scores", scores)
    findings = compute_findings(rows)
    write_json(out / "findings.json", findings)
    manifest.update(
        status="complete",
        finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        timings={"total_s": round(time.perf_counter() - t0, 3), **runner.stats.to_dict()},
    )
    write_json(out / "manifest.json", manifest)
    return manifest

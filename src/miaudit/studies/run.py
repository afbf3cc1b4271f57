"""Run studies and write the run directory: what ``attack --out``, ``compare`` and ``reproduce`` share.

A command is a list of studies and a :class:`~miaudit.studies.schema.RunSpec`. ``reproduce`` runs the
shipped study files; ``compare`` is the study whose grid is the attack (:func:`compare_study`);
``attack`` is a study of one setting (:func:`attack_study`). All of them go through one
:class:`~miaudit.studies.experiment.Experiment` and one cache, and write the format of
``docs/run-format.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.errors import ConfigError
from miaudit.studies.cache import Cache
from miaudit.studies.experiment import Evaluation, Experiment, StageProgress
from miaudit.studies.findings import compute_findings
from miaudit.studies.records import ResultRow, SummaryRow
from miaudit.studies.schema import DEFAULT_CACHE_ENV, RunSpec, Setting, StudyConfig, known_attacks, parse_config
from miaudit.studies.store import (
    RESULT_COLUMNS,
    RUN_FORMAT,
    SUMMARY_COLUMNS,
    result_rows,
    summarize,
    write_csv,
    write_json,
    write_scores,
)

__all__ = [
    "RunResult",
    "attack_record",
    "attack_study",
    "compare_study",
    "default_cache_dir",
    "expand_attacks",
    "hardware",
    "run_studies",
    "versions",
]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """The cache every command shares: ``$MIAUDIT_CACHE_DIR``, else the user's cache folder."""
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("miaudit")) / "experiments"


def versions() -> dict[str, str]:
    """Versions of Python, miaudit and the numerical libraries, and the platform."""
    import sklearn
    import torch

    from miaudit import __version__

    return {
        "miaudit": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }


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


def expand_attacks(names: Sequence[str] | str) -> tuple[str, ...]:
    """Attack names from a list or a comma-separated string; ``all`` is every registered attack.

    >>> expand_attacks("loss, lira")
    ('loss', 'lira')
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    known = known_attacks()
    out: list[str] = []
    for n in names:
        for name in known if n == "all" else [n]:
            if name not in known:
                raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(known)} (or all)")
            if name not in out:
                out.append(name)
    if not out:
        raise ConfigError("no attack given; name at least one (or all)")
    return tuple(out)


def _base(setting: Setting) -> dict[str, Any]:
    return setting.model_dump(exclude={"study"}, exclude_defaults=True)


def attack_study(setting: Setting) -> StudyConfig:
    """One setting as a study (id ``attack``): what ``miaudit attack`` runs."""
    base = _base(setting)
    return parse_config(StudyConfig, {"id": "attack", "title": f"The {setting.attack} attack", "base": base})


def compare_study(base: Setting, attacks: Sequence[str] | str) -> StudyConfig:
    """Several attacks on the same targets, as a study (id ``compare``) whose grid is the attack."""
    names = expand_attacks(attacks)
    fields = {k: v for k, v in _base(base).items() if k != "attack"}
    return parse_config(
        StudyConfig,
        {
            "id": "compare",
            "title": "Attack comparison",
            "description": f"{len(names)} attacks on the same targets: {', '.join(names)}",
            "base": fields,
            "grid": {"attack": list(names)},
        },
    )


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run wrote: its folder, manifest, evaluations, tidy rows, summary and findings."""

    out: Path
    manifest: dict[str, Any]
    evaluations: list[Evaluation]
    rows: list[ResultRow]
    summary: list[SummaryRow]
    findings: list[dict[str, Any]]


def run_studies(
    studies: Sequence[StudyConfig],
    run: RunSpec,
    out: str | Path,
    *,
    kind: str = "reproduce",
    quick: bool = False,
    cache: Cache | None = None,
    command: str = "",
    progress: StageProgress | None = None,
) -> RunResult:
    """Run every setting of ``studies`` for every seed of ``run`` and write the run directory ``out``.

    The manifest is written first with ``status: running``; an error or an interrupt marks it
    ``interrupted`` (finished work stays in the cache: a rerun resumes), success ``complete``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cache if cache is not None else Cache(default_cache_dir())
    t0 = time.perf_counter()
    settings = [s for study in studies for s in study.settings(quick=quick)]
    manifest: dict[str, Any] = {
        "format": RUN_FORMAT,
        "kind": kind,
        "status": "running",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": {
            "studies": [s.model_dump(mode="json") for s in studies],
            "quick": quick,
            **run.model_dump(mode="json"),
        },
        "seeds": run.seed_list,
        "versions": versions(),
        "hardware": hardware(),
        "engine": {"engine": run.engine, "precision": run.precision, "device": run.device},
        "studies": {s.id: {"title": s.title, "paper_ref": s.paper_ref, "description": s.description} for s in studies},
        "cache": str(cache.root),
    }
    write_json(out / "manifest.json", manifest)
    experiment = Experiment(run, cache=cache, progress=progress)
    try:
        evaluations = experiment.run(settings, run.seed_list)
    except BaseException as exc:
        manifest.update(
            status="interrupted",
            error=f"{type(exc).__name__}: {exc}",
            finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            timings={"total_s": round(time.perf_counter() - t0, 3), **experiment.stats.to_dict()},
        )
        write_json(out / "manifest.json", manifest)
        raise
    rows: list[ResultRow] = []
    scores: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for ev in evaluations:
        n_classes = experiment.view(ev.setting.dataset, ev.setting.classes).n_classes
        rows.extend(result_rows(ev, n_classes=n_classes))
        scores[ev.setting.setting_id][ev.seed] = (ev.member_scores, ev.nonmember_scores)
    summary = summarize(rows)
    findings = compute_findings(dataclasses.asdict(r) for r in rows)
    write_csv(out / "results.csv", rows, RESULT_COLUMNS)
    write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS)
    write_scores(out / "scores", scores)
    write_json(out / "findings.json", findings)
    # every setting in full, by id: what the tables' columns do not show (defences, policies, labels)
    write_json(out / "settings.json", {s.setting_id: s.model_dump(mode="json") for s in settings})
    from miaudit.training.tuning import choices_made

    manifest["engine"]["choices"] = choices_made()  # which path trained each workload, and why
    manifest.update(
        status="complete",
        finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        timings={"total_s": round(time.perf_counter() - t0, 3), **experiment.stats.to_dict()},
    )
    write_json(out / "manifest.json", manifest)
    return RunResult(out, manifest, evaluations, rows, summary, findings)


def attack_record(ev: Evaluation, run: RunSpec, *, dataset: dict[str, Any], total_s: float) -> dict[str, Any]:
    """The JSON record of ``miaudit attack --json``: one attack on one target.

    Keys: ``config`` (the setting, the seed, engine and precision), ``dataset``, ``target``
    (``arch``, ``n_train``, ``train_accuracy``, ``test_accuracy``, ``generalization_gap``), ``attack``
    (name and parameters), ``metrics`` (:func:`miaudit.metrics.membership_metrics`), ``queries``,
    ``timings`` (seconds), ``versions`` and ``scores`` (``member`` and ``nonmember`` lists).
    """
    st = ev.setting
    return {
        "config": {**st.model_dump(mode="json"), "seed": ev.seed, "engine": run.engine, "precision": run.precision},
        "dataset": dataset,
        "target": ev.target.to_dict(),
        "attack": {"name": st.attack, **ev.attack_params},
        "metrics": ev.metrics,
        "queries": ev.queries,
        "timings": {"fit_attack": round(ev.fit_s, 3), "score": round(ev.score_s, 3), "total": round(total_s, 3)},
        "versions": versions(),
        "scores": {"member": ev.member_scores.tolist(), "nonmember": ev.nonmember_scores.tolist()},
    }

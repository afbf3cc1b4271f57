"""Several attacks on the same targets, over several seeds: what ``miaudit compare`` runs.

For each seed the target is trained once (:func:`~miaudit.studies.pipeline.prepare_target`, the same
target as ``miaudit attack --seed S``), then every attack is fitted and scores the target's members
and non-members through its own black box. Attacks that learn from shadow models (``shokri``, the
threshold attacks, ``ml-leaks``) share them when their recipes agree: the shadows are trained once,
as many as the most demanding of them asks for, and each attack takes the first ones it needs (the
shadow draw is prefix-stable, so this gives the same shadows as the attack's own ``fit``). An
attack's wall time then counts its share of the shadows' training time (the time of the shadows it
used).

Metrics are aggregated over seeds with :func:`~miaudit.metrics.mean_ci` (mean, Student's t 95%
interval, standard deviation, n); with one seed the interval is ``None``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from miaudit.attacks.base import Attack, AttackerKnowledge
from miaudit.attacks.shadow import ShadowData, ShadowTrainedAttack, train_shadows
from miaudit.metrics import mean_ci
from miaudit.seeding import derive_seed
from miaudit.studies.config import CompareConfig
from miaudit.studies.pipeline import (
    StageProgress,
    build_attack,
    evaluate_attack,
    load_config_dataset,
    prepare_target,
    versions,
)

__all__ = ["METRIC_KEYS", "aggregate", "interval", "run_compare", "share_shadows"]

logger = logging.getLogger(__name__)

#: per-attack metrics aggregated over seeds (``tpr_at_fpr`` is aggregated per level besides)
METRIC_KEYS = (
    "auc",
    "accuracy",
    "precision",
    "recall",
    "balanced_accuracy",
    "advantage",
    "queries",
    "wall_time_s",
)
TARGET_KEYS = ("train_accuracy", "test_accuracy", "generalization_gap")


def interval(values: list[float]) -> dict[str, float | int | None]:
    """:func:`~miaudit.metrics.mean_ci` of ``values`` with NaN (one seed: no interval) as None."""
    ci = mean_ci([float(v) for v in values])
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in ci.items()}


def share_shadows(
    attacks: dict[str, Attack],
    knowledge: AttackerKnowledge,
    *,
    progress: StageProgress | None = None,
) -> dict[str, tuple[ShadowData, float]]:
    """Train the shadow models that several attacks share, once.

    Attacks with ``fit_shadow_data`` are grouped by (shadow train size, held-out size, seed); each
    group's shadows are trained once, as many as its largest ``n_shadows``.

    Returns
    -------
    dict
        attack name -> (its shadow data, the seconds its share of the shadows took to train).
    """
    groups: dict[tuple[int, int, int], dict[str, int]] = {}
    for name, attack in attacks.items():
        if isinstance(attack, ShadowTrainedAttack):
            key = (attack.shadow_train_size, attack.shadow_test_size, attack.seed)
            groups.setdefault(key, {})[name] = attack.n_shadows
    out: dict[str, tuple[ShadowData, float]] = {}
    for (train_size, test_size, seed), wanted in groups.items():
        n_max = max(wanted.values())
        t0 = time.perf_counter()
        data = train_shadows(
            knowledge,
            n_shadows=n_max,
            train_size=train_size,
            test_size=test_size,
            seed=seed,
            progress=None if progress is None else lambda d, t: progress("train shadows", d, t),
        )
        elapsed = time.perf_counter() - t0
        for name, n in wanted.items():
            out[name] = (data.first(n), elapsed * n / n_max)
    return out


def aggregate(per_seed: list[dict[str, Any]], names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Each attack's metrics over seeds: ``{name: {metric: interval, "tpr_at_fpr": {level: interval}}}``."""
    out: dict[str, Any] = {}
    for name in names:
        runs = [rec["attacks"][name] for rec in per_seed]
        entry: dict[str, Any] = {key: interval([r[key] for r in runs]) for key in METRIC_KEYS}
        entry["tpr_at_fpr"] = {
            level: interval([r["tpr_at_fpr"][level] for r in runs]) for level in runs[0]["tpr_at_fpr"]
        }
        entry["n_members"] = runs[0]["n_members"]
        entry["n_nonmembers"] = runs[0]["n_nonmembers"]
        out[name] = entry
    return out


def run_compare(config: CompareConfig, *, progress: StageProgress | None = None) -> dict[str, Any]:
    """Run every attack of ``config`` on the same target, for each seed, and aggregate.

    Returns
    -------
    dict
        ``config``; ``seeds``; ``dataset``; ``target`` (its accuracies as intervals over seeds);
        ``attacks``: per attack name the keys of ``miaudit attack --json``'s metrics (``auc``,
        ``tpr_at_fpr`` keyed ``"0.01"``, ``"0.001"``, ``"0"``, ``accuracy``, ``precision``,
        ``recall``, ``balanced_accuracy``, ``advantage``) plus ``queries`` and ``wall_time_s``, each
        ``{"mean", "low", "high", "std", "n"}``; ``per_seed``: the raw numbers of every seed;
        ``scores``: ``{name: {seed: {"member": [...], "nonmember": [...]}}}``; ``versions``;
        ``timings``.
    """

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(stage, done, total)

    t_start = time.perf_counter()
    names = list(config.attacks)
    report("load data")
    ds = load_config_dataset(config)
    per_seed: list[dict[str, Any]] = []
    scores: dict[str, dict[str, Any]] = {name: {} for name in names}
    for i, seed in enumerate(config.seed_list):
        report("seeds", i, config.seeds)
        prepared = prepare_target(config, seed=seed, dataset=ds, progress=progress)
        attack_seed = derive_seed(seed, "attack")
        attacks = {name: build_attack(name, config, seed=attack_seed) for name in names}
        shared = share_shadows(attacks, prepared.knowledge, progress=progress)
        record: dict[str, Any] = {"seed": seed, "target": prepared.info, "timings": prepared.timings, "attacks": {}}
        for k, (name, attack) in enumerate(attacks.items()):
            report(f"seed {seed}: attacks", k, len(attacks))
            data, shadow_seconds = shared.get(name, (None, 0.0))
            t0 = time.perf_counter()
            run = evaluate_attack(prepared, attack, shadow_data=data, progress=progress)
            wall = time.perf_counter() - t0 + shadow_seconds
            record["attacks"][name] = {**run["metrics"], "queries": run["queries"], "wall_time_s": round(wall, 3)}
            scores[name][str(seed)] = run["scores"]
            logger.info("seed %d, %s: AUC %.4f in %.1f s", seed, name, run["metrics"]["auc"], wall)
        report(f"seed {seed}: attacks", len(attacks), len(attacks))
        per_seed.append(record)
    report("seeds", config.seeds, config.seeds)
    return {
        "config": config.model_dump(mode="json"),
        "seeds": config.seed_list,
        "dataset": {"name": ds.name, "source": ds.source, "n_records": ds.n_samples, "n_classes": ds.n_classes},
        "target": {key: interval([rec["target"][key] for rec in per_seed]) for key in TARGET_KEYS},
        "attacks": aggregate(per_seed, names),
        "per_seed": per_seed,
        "scores": scores,
        "versions": versions(),
        "timings": {"total": round(time.perf_counter() - t_start, 3)},
    }

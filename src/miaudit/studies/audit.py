"""Audit a user's own model on the user's own data: ``miaudit audit`` and :func:`audit`.

The audit runs on the same layer as every study: attacks from the registry with the same constructor
parameters, fitted on an :class:`~miaudit.attacks.base.AttackerKnowledge` and scoring a counting black box,
metrics from :mod:`miaudit.metrics`. What differs is where things come from:

* the **target** is the user's model (scikit-learn via skops, a torch.export archive, safetensors weights
  and a factory, ONNX, a prediction URL), or no model at all: per-record outputs for the threshold attacks;
* the **data** is the user's file; the members are named by id or by a boolean column; the non-members
  and the attacker's population come from the rest (split with the audit's seed) or from their own files;
* the attacker's shadow and reference models are **of the target's family** where it is known
  (clones of the estimator's hyperparameters, the torch factory trained with the recipe), else the
  built-in MLPs.

The audit directory (``docs/audit-format.md``) is written as it goes: ``audit.json`` with ``status:
running``, updated after every attack, so an interrupted audit keeps what it finished; a prediction
service's answers are cached by record, so a rerun does not spend the query budget again.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.errors import BudgetExhaustedError, DataError
from miaudit.seeding import derive_seed
from miaudit.studies.audit_config import AuditConfig, load_audit_config
from miaudit.studies.audit_inputs import AuditData, load_audit_data, open_target
from miaudit.studies.audit_results import (
    AttackOutcome,
    attack_outcome,
    overall_verdict,
    record_rows,
    slice_metrics,
    verdict_text,
    write_exposed,
    write_records,
)
from miaudit.studies.run import default_cache_dir, hardware, versions
from miaudit.studies.store import write_json

__all__ = ["AUDIT_FORMAT", "AuditData", "AuditResult", "audit", "run_audit"]

logger = logging.getLogger(__name__)

AUDIT_FORMAT = 1
#: fewest population records the shadow-based attacks can learn from
MIN_POPULATION = 20
#: accuracies this close to chance on both members and non-members suggest a preprocessing mismatch
CHANCE_MARGIN = 0.1

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What an audit wrote: its folder, the audit record (``audit.json``) and each attack's outcome."""

    out: Path
    record: dict[str, Any]
    outcomes: list[AttackOutcome]

    @property
    def verdict(self) -> str:
        return str(self.record["verdict"]["text"])


# ---------------------------------------------------------------------------------------------- attacks
def attack_params(name: str, cfg: AuditConfig, data: AuditData) -> dict[str, Any]:
    """Constructor parameters of attack ``name`` sized to the audit's data, then the user's own."""
    from miaudit.attacks.registry import attack_class
    from miaudit.studies.schema import attack_constructor_params

    takes = set(attack_constructor_params(name)) - set(attack_class(name).setting_exclude)
    m, p = int(data.member.sum()), len(data.y_pop)
    size = max(1, min(m, p // 2))
    sized: dict[str, Any] = {
        "n_shadows": cfg.n_shadows,
        "shadow_train_size": size,
        "shadow_test_size": size,
        "disjoint_shadows": p >= cfg.n_shadows * 2 * size,
        "n_refs": cfg.n_refs,
        # online LiRA pads the evaluated records with population records; offline attacks need 4 x the size
        "ref_train_size": max(1, min(m, (p + len(data.y)) // 2)) if name == "lira" else max(1, min(m, p // 4)),
    }
    if data.record_shape:
        sized["record_shape"] = data.record_shape  # label-augment shifts and flips images of this shape
    kwargs = {k: v for k, v in sized.items() if k in takes}
    kwargs.update(cfg.attack_params.get(name, {}))
    return kwargs


def _knowledge(cfg: AuditConfig, data: AuditData, trainer: Any, cache_dir: Path) -> Any:
    from miaudit.attacks.base import AttackerKnowledge
    from miaudit.studies.cache import Cache, CachingTrainer
    from miaudit.training.specs import ModelSpec, TrainSpec

    spec = ModelSpec(n_features=data.X.shape[1], n_classes=data.n_classes, hidden=cfg.hidden, name="audit-mlp")
    recipe = TrainSpec(**cfg.train.model_dump())
    return AttackerKnowledge(
        X=data.X_pop,
        y=data.y_pop,
        n_classes=data.n_classes,
        model=spec,
        train=recipe,
        trainer=trainer if trainer is not None else CachingTrainer(Cache(cache_dir)),
    )


def _say_accuracy(say: Say, acc_m: float, acc_n: float, n_classes: int) -> list[str]:
    say(f"target accuracy: members {acc_m:.3f}, non-members {acc_n:.3f} (gap {acc_m - acc_n:+.3f})")
    warnings = []
    chance = 1.0 / n_classes
    if acc_m < chance + CHANCE_MARGIN and acc_n < chance + CHANCE_MARGIN:
        warnings.append(
            f"the model is near chance ({chance:.2f}) on members and non-members alike: check that the data is "
            "preprocessed as the model expects (a scaling mismatch, a column order or a label mapping shows here); "
            "the attacks' numbers mean little until it is fixed"
        )
    elif acc_m + CHANCE_MARGIN < acc_n:
        warnings.append(
            "the model is more accurate on the non-members than on the members: check that --members names "
            "the training records"
        )
    for w in warnings:
        say(f"warning: {w}")
    return warnings


def run_audit(
    cfg: AuditConfig,
    out: str | Path,
    *,
    command: str = "",
    say: Say | None = None,
    progress: Progress | None = None,
    report: bool = True,
    cache_dir: str | Path | None = None,
) -> AuditResult:
    """Run the audit described by ``cfg`` and write the audit directory ``out`` (``docs/audit-format.md``).

    Raises
    ------
    ConfigError, DataError, TargetError
        A bad option, file or answer; the message names it and the fix. ``audit.json`` is then marked
        ``interrupted`` with the attacks finished so far.
    """
    say = say or (lambda s: logger.info("%s", s))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "format": AUDIT_FORMAT,
        "kind": "audit",
        "status": "running",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "attacks": {},
        "versions": versions(),
        "hardware": hardware(),
    }
    write_json(out / "audit.json", record)
    outcomes: list[AttackOutcome] = []
    try:
        if cfg.outputs is not None:
            from miaudit.studies.audit_outputs import audit_outputs

            _, outcomes, extra = audit_outputs(cfg, record=record, out=out, say=say)
        else:
            _, outcomes, extra = _audit_model(cfg, record=record, out=out, say=say, progress=progress, cache=cache)
    except BaseException as exc:
        record.update(
            status="interrupted",
            error=f"{type(exc).__name__}: {exc}",
            finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )
        record.setdefault("timings", {})["total"] = round(time.perf_counter() - t0, 3)
        if outcomes or record["attacks"]:
            record["verdict"] = overall_verdict(outcomes)
        write_json(out / "audit.json", record)
        raise
    record["verdict"] = overall_verdict(outcomes)
    # the keys of `miaudit attack --json`: each attack's metrics, by attack
    record["metrics"] = {name: a["metrics"] for name, a in record["attacks"].items()}
    if cfg.dp_epsilon is not None and outcomes:
        record["privacy"] = privacy_claim_check(outcomes, cfg.dp_epsilon, seed=cfg.seed)
        say(f"privacy claim: {record['privacy']['text']}")
    record["status"] = "complete"
    record["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    record.setdefault("timings", {})["total"] = round(time.perf_counter() - t0, 3)
    record.update(extra)
    write_json(out / "audit.json", record)
    say(f"verdict: {record['verdict']['text']}")
    if report:
        from miaudit.report import write_audit_report

        write_audit_report(out)
    return AuditResult(out, record, outcomes)


def _audit_model(
    cfg: AuditConfig, *, record: dict[str, Any], out: Path, say: Say, progress: Progress | None, cache: Path
) -> tuple[AuditData, list[AttackOutcome], dict[str, Any]]:
    from miaudit.attacks.registry import create_attack

    t_load = time.perf_counter()
    tgt = open_target(cfg, cache_dir=cache)
    data = load_audit_data(cfg, classes=tgt.classes, n_classes=tgt.n_classes)
    if tgt.n_classes is not None and data.n_classes != tgt.n_classes:
        raise DataError(
            f"the data has {data.n_classes} classes but the model answers {tgt.n_classes}; check --label-column "
            "and that the model was trained on these classes"
        )
    record["data"] = data.info
    say(
        f"data: {data.info['n_members']} members, {data.info['n_nonmembers']} non-members, "
        f"{data.info['n_population']} population records, {data.n_classes} classes"
    )
    target = tgt.target
    P = target.predict_proba(data.X)
    predicted = P.argmax(axis=1)
    correct = predicted == data.y
    acc_m, acc_n = float(correct[data.member].mean()), float(correct[~data.member].mean())
    from miaudit.targets.base import describe_answers

    record["target"] = {
        **tgt.info,
        "answers": describe_answers(P),
        "member_accuracy": acc_m,
        "nonmember_accuracy": acc_n,
        "generalization_gap": acc_m - acc_n,
        "warnings": _say_accuracy(say, acc_m, acc_n, data.n_classes),
    }
    if len(data.y_pop) < MIN_POPULATION:
        raise DataError(
            f"the attacker's population has {len(data.y_pop)} records; the attacks need at least {MIN_POPULATION} "
            "to train shadow or reference models. Add non-member records to the data or pass --population FILE"
        )
    record["shadows"] = {"family": "family" if tgt.trainer is not None else "mlp", "description": tgt.shadows}
    record["timings"] = {"load": round(time.perf_counter() - t_load, 3)}
    write_json(out / "audit.json", record)
    kn = _knowledge(cfg, data, tgt.trainer, cache)
    outcomes: list[AttackOutcome] = []
    tables: list[dict[str, np.ndarray]] = []
    class_names = [str(c) for c in data.classes]
    attacks = cfg.chosen_attacks()
    if not cfg.attacks and record["target"]["answers"] == "labels":
        # a label-only model: the attacks that read labels alone (Choquette-Choo et al. 2021)
        attacks = ("label-noise", "label-gap") + (("label-augment",) if data.record_shape else ())
        say(f"the model answers labels only: running {', '.join(attacks)}")
    for i, name in enumerate(attacks):
        params = attack_params(name, cfg, data)
        attack = create_attack(name, **params, seed=derive_seed(cfg.seed, "attack", name))
        say(f"[{i + 1}/{len(attacks)}] {name}: fitting")
        before = getattr(target, "n_queries", 0)
        t1 = time.perf_counter()
        attack.fit(kn, progress=_stage(progress, name))
        t2 = time.perf_counter()
        try:
            scores = attack.score(target, data.X, data.y)
        except BudgetExhaustedError:
            write_records(out, tables)
            raise
        t3 = time.perf_counter()
        o = attack_outcome(
            name, data.member, scores, threshold=float(attack.threshold_), n_boot=cfg.n_boot, seed=cfg.seed
        )
        outcomes.append(o)
        text = verdict_text(o)[1]
        record["attacks"][name] = {
            "params": {k: v for k, v in attack.get_params().items() if k != "seed"},
            "threshold": o.threshold,
            "metrics": o.metrics,
            "intervals": o.intervals,
            "flagged": o.flagged,
            "slices": slice_metrics(data.member, scores, class_index=data.y, correct=correct, class_names=class_names),
            "queries": int(getattr(target, "n_queries", 0) - before),
            "timings": {"fit": round(t2 - t1, 3), "score": round(t3 - t2, 3)},
            "verdict": text,
        }
        say(
            f"    AUC {o.metrics['auc']:.3f}, TPR {o.metrics['tpr_at_fpr']['0.01']:.3f} at 1% FPR, "
            f"{o.metrics['tpr_at_fpr']['0.001']:.3f} at 0.1% ({t3 - t1:.1f} s): {text}"
        )
        tables.append(
            record_rows(
                o, ids=data.ids, labels=data.labels, class_index=data.y, member=data.member, predicted=predicted
            )
        )
        write_records(out, tables)
        write_json(out / "audit.json", record)
    write_exposed(out, outcomes, X=data.X, ids=data.ids, member=data.member, record_shape=data.record_shape)
    extra = {"queries": _queries(target, cfg)}
    return data, outcomes, extra


def privacy_claim_check(outcomes: list[AttackOutcome], epsilon: float, *, seed: int) -> dict[str, Any]:
    """Whether the measured leakage is consistent with an (epsilon, delta) differential-privacy claim.

    Each evaluated record is one trial of the strongest attack (members and non-members); the empirical lower
    bound on epsilon (:func:`miaudit.privacy.epsilon_lower_bound_from_scores`: Clopper-Pearson at 95%, the
    threshold chosen on half of the trials and the bound computed on the other half) is set beside the claim,
    with delta = 1 / (number of evaluated records). A bound above the claim contradicts it. The trials come
    from one model, so the bound is rigorous when the members were drawn at random from the evaluated records
    (the one-run setting of Steinke et al. 2023); a bound at or below the claim never proves it: canary-based
    audits (:func:`miaudit.studies.privacy_audit.audit_privacy`) are the stronger test.
    """
    from miaudit.privacy import epsilon_lower_bound_from_scores

    best = max(outcomes, key=lambda o: o.strength)
    delta = 1.0 / len(best.scores)
    bound = epsilon_lower_bound_from_scores(best.scores, best.member, delta=delta, alpha=0.05, seed=seed)
    consistent = bound.epsilon_lb <= epsilon
    text = (
        f"the {best.name} attack's empirical lower bound on epsilon is {bound.epsilon_lb:.3f} (95% confidence, "
        f"delta {delta:.2g}), "
        + (
            f"consistent with the claimed epsilon {epsilon:g} (a lower bound does not prove the claim)"
            if consistent
            else f"ABOVE the claimed epsilon {epsilon:g}: the claim is contradicted"
        )
    )
    return {
        "epsilon_claimed": epsilon,
        "epsilon_lb": bound.epsilon_lb,
        "delta": delta,
        "attack": best.name,
        "consistent": consistent,
        "bound": bound.to_dict(),
        "text": text,
    }


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    """The attack's progress callback: ``progress(name, done, total)``."""
    if progress is None:
        return None
    report = progress

    def call(done: int, total: int) -> None:
        report(name, done, total)

    return call


def _queries(target: Any, cfg: AuditConfig) -> dict[str, Any]:
    q: dict[str, Any] = {"total": int(getattr(target, "n_queries", 0))}
    if cfg.is_url:
        q.update(sent=int(getattr(target, "n_sent", 0)), cached=int(getattr(target, "n_cached_hits", 0)))
        q["budget"] = cfg.service.budget
    return q


def audit(
    *,
    model: str | Path | None = None,
    data: str | Path,
    members: str | Path | None = None,
    out: str | Path,
    config: str | Path | None = None,
    report: bool = True,
    **options: Any,
) -> AuditResult:
    """Audit a model on its data in one call: the library form of ``miaudit audit``.

    Parameters
    ----------
    model : path or URL, optional
        The model file (``.skops``, ``.pt2``, ``.safetensors`` with ``factory=``, ``.onnx``) or a prediction
        service's root URL; omit it and pass ``outputs=`` for precomputed outputs.
    data : path
        The records (CSV, Parquet, NPZ, IDX with ``labels=``, or a folder of images).
    members : path, optional
        A CSV whose id column lists the members (or pass ``member_column=``).
    out : path
        The audit directory to write.
    config : path, optional
        A TOML audit file (``docs/audit-config.md``); keyword options override it.
    **options
        Any other field of :class:`~miaudit.studies.audit_config.AuditConfig` (``attacks``, ``population``,
        ``label_column``, ``id_column``, ``input_shape``, ``seed``...), or of its ``service`` and ``train``.

    Returns
    -------
    AuditResult
    """
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    cfg = load_audit_config(
        config,
        model=None if model is None else str(model),
        data=str(data),
        members=None if members is None else str(members),
        **options,
    )
    return run_audit(cfg, out, report=report, command="miaudit.audit(...)")

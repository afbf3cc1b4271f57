"""One attack on one target, end to end: data, split, target, attack, metrics.

This is what ``miaudit attack`` runs, built from pieces that ``miaudit compare`` reuses to run
several attacks on one target: :func:`prepare_target` (load, split, train the target once, and
describe the attacker's knowledge), :func:`attack_params` (each attack's parameters from the
config) and :func:`evaluate_attack` (fit, score the target's members and non-members, metrics).

The experimenter's side (training the target, knowing who the members are, measuring the target's
accuracy) and the attacker's side (its population, its shadow or reference models, the black box)
are kept apart: the attack receives an :class:`~miaudit.attacks.base.AttackerKnowledge` and a
:class:`~miaudit.targets.base.BlackBox` only. Each attack gets its own black box, so its query count
is its own.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miaudit.attacks.base import Attack, AttackerKnowledge
from miaudit.attacks.registry import create_attack
from miaudit.attacks.shadow import ShadowData, ShadowTrainedAttack
from miaudit.data import Dataset, load_dataset, make_split
from miaudit.metrics import membership_metrics
from miaudit.seeding import derive_seed
from miaudit.studies.config import DEFAULT_REFS, AttackConfig, RunOptions
from miaudit.targets.local import LocalTarget
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

__all__ = [
    "ATTACK_PARAMS",
    "FPR_LEVELS",
    "PreparedTarget",
    "StageProgress",
    "attack_params",
    "build_attack",
    "evaluate_attack",
    "jsonable",
    "load_config_dataset",
    "prepare_target",
    "run_attack",
    "versions",
]

logger = logging.getLogger(__name__)

#: ``progress(stage, n_done, n_total)``: a stage advanced (n_total 0 means "started, no count").
StageProgress = Callable[[str, int, int], None]

FPR_LEVELS = (0.01, 0.001, 0.0)


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


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 3)


def _reporter(progress: StageProgress | None, prefix: str = "") -> Callable[..., None]:
    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(prefix + stage, done, total)

    return report


# ------------------------------------------------------------------------------ attack parameters
def _shadow_sizes(c: RunOptions) -> dict[str, Any]:
    return {"shadow_train_size": c.shadow_train_size, "shadow_test_size": c.shadow_test_size}


def _shokri_params(c: RunOptions) -> dict[str, Any]:
    return {
        "n_shadows": c.shadows,
        **_shadow_sizes(c),
        "attack_model": c.attack_model,
        "per_class": bool(c.per_class),
        "features": c.features,
    }


def _threshold_params(c: RunOptions) -> dict[str, Any]:
    # thresholds are calibrated on all the shadows the config asks for (shared with shokri in compare)
    return {"n_shadows": c.shadows, **_shadow_sizes(c), "per_class": c.per_class}


def _mlleaks_params(c: RunOptions) -> dict[str, Any]:
    # adversary 1 of ML-Leaks uses exactly one shadow model, whatever ``shadows`` says
    return _shadow_sizes(c)


def _reference_params(c: RunOptions) -> dict[str, Any]:
    return {
        "n_refs": DEFAULT_REFS if c.refs is None else c.refs,
        "ref_train_size": c.target_size if c.ref_train_size is None else c.ref_train_size,
    }


#: attack name -> builder of its constructor parameters (without ``seed``) from the run options.
#: Attacks without an entry (plugins) get only ``seed``.
ATTACK_PARAMS: dict[str, Callable[[RunOptions], dict[str, Any]]] = {
    "shokri": _shokri_params,
    "loss": _threshold_params,
    "confidence": _threshold_params,
    "entropy": _threshold_params,
    "modified-entropy": _threshold_params,
    "ml-leaks": _mlleaks_params,
    "lira": _reference_params,
    "lira-offline": _reference_params,
    "rmia": _reference_params,
}


def attack_params(name: str, config: RunOptions, *, seed: int) -> dict[str, Any]:
    """The constructor parameters of attack ``name`` from the run options, with ``seed``."""
    builder = ATTACK_PARAMS.get(name)
    return {**(builder(config) if builder is not None else {}), "seed": seed}


def build_attack(name: str, config: RunOptions, *, seed: int) -> Attack:
    """``create_attack(name, **attack_params(name, config, seed=seed))``."""
    return create_attack(name, **attack_params(name, config, seed=seed))


# ----------------------------------------------------------------------------------- the target
@dataclass(frozen=True, eq=False)
class PreparedTarget:
    """A trained target with its evaluation records, and what the attacker knows.

    Attributes
    ----------
    dataset : Dataset
    model : MLPParams
        The target (attacks only ever see it through a fresh :class:`LocalTarget`).
    knowledge : AttackerKnowledge
        The attacker's population and believed recipe.
    eval_idx : ndarray of shape (n_eval,)
        The target's members, then as many held-out non-members (indices into the dataset).
    is_member : ndarray of shape (n_eval,), bool
    info : dict
        The target's architecture, training size and accuracies (JSON-able).
    timings : dict
        Seconds spent on the split and the target's training.
    """

    dataset: Dataset
    model: MLPParams
    knowledge: AttackerKnowledge
    eval_idx: np.ndarray
    is_member: np.ndarray
    info: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def new_target(self) -> LocalTarget:
        """A fresh black box around the target, with its own query count."""
        return LocalTarget(self.model)


def load_config_dataset(config: RunOptions) -> Dataset:
    """The dataset the run options name."""
    return load_dataset(config.dataset, data_dir=config.data_dir, classes=config.classes)


def prepare_target(
    config: RunOptions,
    *,
    seed: int,
    dataset: Dataset | None = None,
    progress: StageProgress | None = None,
) -> PreparedTarget:
    """Split the data, train the target and describe the attacker's knowledge, for one seed.

    The split comes from ``derive_seed(seed, "split")`` and the target from
    ``derive_seed(seed, "target")``, so ``miaudit attack --seed S`` and ``miaudit compare`` share
    targets seed for seed.
    """
    report = _reporter(progress)
    timer = _Timer()
    ds = load_config_dataset(config) if dataset is None else dataset
    with timer.stage("split"):
        split = make_split(
            ds.y,
            target_size=config.target_size,
            n_shadows=config.shadows,
            shadow_train_size=config.shadow_train_size,
            shadow_test_size=config.shadow_test_size,
            seed=derive_seed(seed, "split"),
        )
    train = TrainSpec(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        precision=config.precision,
        engine=config.engine,
    )
    target_spec = ModelSpec.from_arch(config.arch, n_features=ds.n_features, n_classes=ds.n_classes)
    with timer.stage("train_target"):
        report("train target", 0, 1)
        (model,) = train_models(
            ds.X,
            ds.y,
            [split.target_in],
            seeds=[derive_seed(seed, "target")],
            model=target_spec,
            train=train,
            progress=lambda d, t: report("train target", d, t),
        )
    train_acc = model.accuracy(ds.X[split.target_in], ds.y[split.target_in])
    test_acc = model.accuracy(ds.X[split.target_out], ds.y[split.target_out])
    info: dict[str, Any] = {
        "arch": config.arch,
        "n_train": len(split.target_in),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "generalization_gap": train_acc - test_acc,
    }
    # --- the attacker's side: its own population and the recipe it believes, nothing else
    shadow_spec = ModelSpec.from_arch(
        config.shadow_arch or config.arch, n_features=ds.n_features, n_classes=ds.n_classes
    )
    knowledge = AttackerKnowledge(
        X=ds.X[split.population],
        y=ds.y[split.population],
        n_classes=ds.n_classes,
        model=shadow_spec,
        train=train,
    )
    eval_idx = np.concatenate([split.target_in, split.target_out])
    is_member = np.r_[np.ones(len(split.target_in), bool), np.zeros(len(split.target_out), bool)]
    return PreparedTarget(ds, model, knowledge, eval_idx, is_member, info, timer.timings)


def evaluate_attack(
    prepared: PreparedTarget,
    attack: Attack,
    *,
    shadow_data: ShadowData | None = None,
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Fit ``attack``, score the target's members and non-members through a fresh black box.

    Parameters
    ----------
    prepared : PreparedTarget
    attack : Attack
        Unfitted.
    shadow_data : ShadowData, optional
        Shadow outputs already computed for this attack (its ``fit_shadow_data`` is used instead
        of ``fit``; the caller accounts for the shadows' training time).
    progress : callable, optional

    Returns
    -------
    dict with ``metrics`` (:func:`miaudit.metrics.membership_metrics`), ``queries`` (records the
    target answered), ``timings`` (``fit_attack``, ``score``, ``metrics``, seconds) and ``scores``
    (``member`` and ``nonmember`` lists).
    """
    report = _reporter(progress)
    timer = _Timer()
    label = getattr(attack, "progress_label", "train shadows")
    with timer.stage("fit_attack"):
        if shadow_data is not None:
            if not isinstance(attack, ShadowTrainedAttack):
                raise TypeError(f"the {attack.name} attack cannot be fitted on shadow data")
            attack.fit_shadow_data(shadow_data)
        else:
            report(label, 0, 0)
            attack.fit(prepared.knowledge, progress=lambda d, t: report(label, d, t))
    target = prepared.new_target()
    ds, idx, is_member = prepared.dataset, prepared.eval_idx, prepared.is_member
    with timer.stage("score"):
        report("score records", 0, len(idx))
        scores = attack.score(target, ds.X[idx], ds.y[idx])
        report("score records", len(idx), len(idx))
    with timer.stage("metrics"):
        metrics = membership_metrics(is_member, scores, threshold=attack.threshold_, fpr_levels=FPR_LEVELS)
    return {
        "metrics": metrics,
        "queries": target.n_queries,
        "timings": timer.timings,
        "scores": {"member": scores[is_member].tolist(), "nonmember": scores[~is_member].tolist()},
    }


def run_attack(config: AttackConfig, *, progress: StageProgress | None = None) -> dict[str, Any]:
    """Run one attack described by ``config`` and return a JSON-able result record.

    Returns
    -------
    dict with keys ``config``, ``dataset``, ``target`` (``train_accuracy``, ``test_accuracy``,
    ``n_train``, ...), ``attack`` (name and parameters), ``metrics``
    (:func:`miaudit.metrics.membership_metrics`), ``queries`` (records the target answered, all
    attacks included), ``timings`` (seconds per stage), ``versions`` and ``scores``.
    """
    report = _reporter(progress)
    t_start = time.perf_counter()
    timer = _Timer()
    with timer.stage("load_data"):
        report("load data")
        ds = load_config_dataset(config)
    prepared = prepare_target(config, seed=config.seed, dataset=ds, progress=progress)
    params = attack_params(config.attack, config, seed=derive_seed(config.seed, "attack"))
    if config.refs is not None and "n_refs" not in params:
        logger.warning(
            "refs=%d is used by lira, lira-offline and rmia only; the %s attack ignores it", config.refs, config.attack
        )
    attack = create_attack(config.attack, **params)
    run = evaluate_attack(prepared, attack, progress=progress)
    timings = {**timer.timings, **prepared.timings, **run["timings"]}
    timings["total"] = round(time.perf_counter() - t_start, 3)
    return {
        "config": config.model_dump(),
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "n_records": ds.n_samples,
            "n_classes": ds.n_classes,
        },
        "target": prepared.info,
        "attack": {"name": attack.name, **jsonable(attack.get_params())},
        "metrics": run["metrics"],
        "queries": run["queries"],
        "timings": timings,
        "versions": versions(),
        "scores": run["scores"],
    }


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every value that is not a JSON scalar replaced by its ``repr``."""
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v) for k, v in d.items()}

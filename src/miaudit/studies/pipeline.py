"""One attack on one target, end to end: data, split, target, attack, metrics.

This is what ``miaudit attack`` runs. The experimenter's side (training the target, knowing who
the members are, measuring the target's accuracy) and the attacker's side (its population, its
shadow models, the black box) are kept apart: the attack receives an
:class:`~miaudit.attacks.base.AttackerKnowledge` and a :class:`~miaudit.targets.base.BlackBox` only.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from miaudit.attacks.base import AttackerKnowledge
from miaudit.attacks.registry import create_attack
from miaudit.data import load_dataset, make_split
from miaudit.metrics import membership_metrics
from miaudit.seeding import derive_seed
from miaudit.studies.config import AttackConfig
from miaudit.targets.local import LocalTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

__all__ = ["StageProgress", "run_attack", "versions"]

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


def run_attack(config: AttackConfig, *, progress: StageProgress | None = None) -> dict[str, Any]:
    """Run one attack described by ``config`` and return a JSON-able result record.

    Returns
    -------
    dict with keys ``config``, ``target`` (``train_accuracy``, ``test_accuracy``, ``n_train``),
    ``shadows`` (their mean train/test accuracy when the attack trains shadows), ``metrics``
    (:func:`miaudit.metrics.membership_metrics`), ``queries``, ``timings`` (seconds per stage),
    ``versions``.
    """

    def report(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(stage, done, total)

    timer = _Timer()
    t_start = time.perf_counter()
    with timer.stage("load_data"):
        report("load data")
        ds = load_dataset(config.dataset, data_dir=config.data_dir, classes=config.classes)
    with timer.stage("split"):
        split = make_split(
            ds.y,
            target_size=config.target_size,
            n_shadows=config.shadows,
            shadow_train_size=config.shadow_train_size,
            shadow_test_size=config.shadow_test_size,
            seed=derive_seed(config.seed, "split"),
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
        (target_model,) = train_models(
            ds.X,
            ds.y,
            [split.target_in],
            seeds=[derive_seed(config.seed, "target")],
            model=target_spec,
            train=train,
            progress=lambda d, t: report("train target", d, t),
        )
    train_acc = target_model.accuracy(ds.X[split.target_in], ds.y[split.target_in])
    test_acc = target_model.accuracy(ds.X[split.target_out], ds.y[split.target_out])
    target_info: dict[str, Any] = {
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
    attack = create_attack(
        config.attack,
        n_shadows=config.shadows,
        shadow_train_size=config.shadow_train_size,
        shadow_test_size=config.shadow_test_size,
        attack_model=config.attack_model,
        per_class=config.per_class,
        features=config.features,
        seed=derive_seed(config.seed, "attack"),
    )
    with timer.stage("fit_attack"):
        report("train shadows", 0, config.shadows)
        attack.fit(knowledge, progress=lambda d, t: report("train shadows", d, t))
    target = LocalTarget(target_model)
    eval_idx = np.concatenate([split.target_in, split.target_out])
    is_member = np.r_[np.ones(len(split.target_in), bool), np.zeros(len(split.target_out), bool)]
    with timer.stage("score"):
        report("score records", 0, len(eval_idx))
        scores = attack.score(target, ds.X[eval_idx], ds.y[eval_idx])
        report("score records", len(eval_idx), len(eval_idx))
    with timer.stage("metrics"):
        metrics = membership_metrics(is_member, scores, threshold=attack.threshold_, fpr_levels=FPR_LEVELS)
    timer.timings["total"] = round(time.perf_counter() - t_start, 3)
    return {
        "config": config.model_dump(),
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "n_records": ds.n_samples,
            "n_classes": ds.n_classes,
        },
        "target": target_info,
        "attack": {"name": attack.name, **_jsonable(attack.get_params())},
        "metrics": metrics,
        "queries": target.n_queries,
        "timings": timer.timings,
        "versions": versions(),
        "scores": {"member": scores[is_member].tolist(), "nonmember": scores[~is_member].tolist()},
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v) for k, v in d.items()}

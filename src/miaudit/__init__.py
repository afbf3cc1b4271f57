"""miaudit: membership inference audits of machine-learning models.

The public API: datasets and splits, training specs, black-box targets, attacks and metrics.
Names are imported on first use, so ``import miaudit.metrics`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Attack": "miaudit.attacks",
    "AttackerKnowledge": "miaudit.attacks",
    "ShadowModelAttack": "miaudit.attacks",
    "attack_names": "miaudit.attacks",
    "create_attack": "miaudit.attacks",
    "train_shadows": "miaudit.attacks",
    "ConfidenceAttack": "miaudit.attacks",
    "EntropyAttack": "miaudit.attacks",
    "LiRAAttack": "miaudit.attacks",
    "LiRAOfflineAttack": "miaudit.attacks",
    "LossAttack": "miaudit.attacks",
    "MLLeaksAttack": "miaudit.attacks",
    "ModifiedEntropyAttack": "miaudit.attacks",
    "RMIAAttack": "miaudit.attacks",
    "ThresholdAttack": "miaudit.attacks",
    "ChecksumError": "miaudit.errors",
    "ConfigError": "miaudit.errors",
    "DataError": "miaudit.errors",
    "MiauditError": "miaudit.errors",
    "NotFittedError": "miaudit.errors",
    "TargetError": "miaudit.errors",
    "TrainingError": "miaudit.errors",
    "Dataset": "miaudit.data",
    "load_dataset": "miaudit.data",
    "make_split": "miaudit.data",
    "BlackBox": "miaudit.targets",
    "LocalTarget": "miaudit.targets",
    "Target": "miaudit.targets",
    "as_target": "miaudit.targets",
    "MLPParams": "miaudit.training.networks",
    "ModelSpec": "miaudit.training.specs",
    "TrainSpec": "miaudit.training.specs",
    "train_models": "miaudit.training.trainer",
    "membership_metrics": "miaudit.metrics",
}

__all__ = [
    "Attack",
    "AttackerKnowledge",
    "BlackBox",
    "ChecksumError",
    "ConfidenceAttack",
    "ConfigError",
    "DataError",
    "Dataset",
    "EntropyAttack",
    "LiRAAttack",
    "LiRAOfflineAttack",
    "LocalTarget",
    "LossAttack",
    "MLLeaksAttack",
    "MLPParams",
    "MiauditError",
    "ModelSpec",
    "ModifiedEntropyAttack",
    "NotFittedError",
    "RMIAAttack",
    "ShadowModelAttack",
    "Target",
    "TargetError",
    "ThresholdAttack",
    "TrainSpec",
    "TrainingError",
    "__version__",
    "as_target",
    "attack_names",
    "create_attack",
    "load_dataset",
    "make_split",
    "membership_metrics",
    "train_models",
    "train_shadows",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'miaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from miaudit.attacks import (
        Attack,
        AttackerKnowledge,
        ConfidenceAttack,
        EntropyAttack,
        LiRAAttack,
        LiRAOfflineAttack,
        LossAttack,
        MLLeaksAttack,
        ModifiedEntropyAttack,
        RMIAAttack,
        ShadowModelAttack,
        ThresholdAttack,
        attack_names,
        create_attack,
        train_shadows,
    )
    from miaudit.data import Dataset, load_dataset, make_split
    from miaudit.errors import (
        ChecksumError,
        ConfigError,
        DataError,
        MiauditError,
        NotFittedError,
        TargetError,
        TrainingError,
    )
    from miaudit.metrics import membership_metrics
    from miaudit.targets import BlackBox, LocalTarget, Target, as_target
    from miaudit.training.networks import MLPParams
    from miaudit.training.specs import ModelSpec, TrainSpec
    from miaudit.training.trainer import train_models

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
    "audit": "miaudit.studies.audit",
    "AuditResult": "miaudit.studies.audit",
    "load_model": "miaudit.targets.loaders",
    "load_outputs": "miaudit.targets.outputs",
    "HttpTarget": "miaudit.targets.http",
    "OutputPolicy": "miaudit.targets.policies",
    "PolicyTarget": "miaudit.targets.policies",
    "SklearnFamily": "miaudit.training.family",
    "TorchFamily": "miaudit.training.family",
    "BudgetExhaustedError": "miaudit.errors",
    "read_table": "miaudit.data.tables",
    "audit_privacy": "miaudit.studies.privacy_audit",
    "epsilon_lower_bound": "miaudit.privacy",
}

__all__ = [
    "Attack",
    "AttackerKnowledge",
    "AuditResult",
    "BlackBox",
    "BudgetExhaustedError",
    "ChecksumError",
    "ConfidenceAttack",
    "ConfigError",
    "DataError",
    "Dataset",
    "EntropyAttack",
    "HttpTarget",
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
    "OutputPolicy",
    "PolicyTarget",
    "RMIAAttack",
    "ShadowModelAttack",
    "SklearnFamily",
    "Target",
    "TargetError",
    "ThresholdAttack",
    "TorchFamily",
    "TrainSpec",
    "TrainingError",
    "__version__",
    "as_target",
    "attack_names",
    "audit",
    "audit_privacy",
    "create_attack",
    "epsilon_lower_bound",
    "load_dataset",
    "load_model",
    "load_outputs",
    "make_split",
    "membership_metrics",
    "read_table",
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
    from miaudit.data.tables import read_table
    from miaudit.errors import (
        BudgetExhaustedError,
        ChecksumError,
        ConfigError,
        DataError,
        MiauditError,
        NotFittedError,
        TargetError,
        TrainingError,
    )
    from miaudit.metrics import membership_metrics
    from miaudit.privacy import epsilon_lower_bound
    from miaudit.studies.audit import AuditResult, audit
    from miaudit.studies.privacy_audit import audit_privacy
    from miaudit.targets import BlackBox, LocalTarget, Target, as_target
    from miaudit.targets.http import HttpTarget
    from miaudit.targets.loaders import load_model
    from miaudit.targets.outputs import load_outputs
    from miaudit.targets.policies import OutputPolicy, PolicyTarget
    from miaudit.training.family import SklearnFamily, TorchFamily
    from miaudit.training.networks import MLPParams
    from miaudit.training.specs import ModelSpec, TrainSpec
    from miaudit.training.trainer import train_models

"""Membership inference attacks, chosen by name from a registry.

Names are imported on first use, so ``import miaudit.attacks.registry`` (listing the attacks) imports
no attack module and no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Attack": "miaudit.attacks.base",
    "AttackerKnowledge": "miaudit.attacks.base",
    "ATTACK_MODELS": "miaudit.attacks.classifiers",
    "FEATURE_SETS": "miaudit.attacks.classifiers",
    "attack_features": "miaudit.attacks.classifiers",
    "make_attack_model": "miaudit.attacks.classifiers",
    "LiRAAttack": "miaudit.attacks.lira",
    "LiRAOfflineAttack": "miaudit.attacks.lira",
    "OfflineReferences": "miaudit.attacks.lira",
    "ReferenceAttack": "miaudit.attacks.lira",
    "train_offline_references": "miaudit.attacks.lira",
    "MLLeaksAttack": "miaudit.attacks.mlleaks",
    "attack_class": "miaudit.attacks.registry",
    "attack_names": "miaudit.attacks.registry",
    "create_attack": "miaudit.attacks.registry",
    "register_attack": "miaudit.attacks.registry",
    "RMIAAttack": "miaudit.attacks.rmia",
    "ShadowData": "miaudit.attacks.shadow",
    "ShadowModelAttack": "miaudit.attacks.shadow",
    "draw_shadow_sets": "miaudit.attacks.shadow",
    "train_shadows": "miaudit.attacks.shadow",
    "MEMBERSHIP_SIGNALS": "miaudit.attacks.threshold",
    "ConfidenceAttack": "miaudit.attacks.threshold",
    "EntropyAttack": "miaudit.attacks.threshold",
    "LossAttack": "miaudit.attacks.threshold",
    "ModifiedEntropyAttack": "miaudit.attacks.threshold",
    "ThresholdAttack": "miaudit.attacks.threshold",
    "membership_signal": "miaudit.attacks.threshold",
}

__all__ = [
    "ATTACK_MODELS",
    "FEATURE_SETS",
    "MEMBERSHIP_SIGNALS",
    "Attack",
    "AttackerKnowledge",
    "ConfidenceAttack",
    "EntropyAttack",
    "LiRAAttack",
    "LiRAOfflineAttack",
    "LossAttack",
    "MLLeaksAttack",
    "ModifiedEntropyAttack",
    "OfflineReferences",
    "RMIAAttack",
    "ReferenceAttack",
    "ShadowData",
    "ShadowModelAttack",
    "ThresholdAttack",
    "attack_class",
    "attack_features",
    "attack_names",
    "create_attack",
    "draw_shadow_sets",
    "make_attack_model",
    "membership_signal",
    "register_attack",
    "train_offline_references",
    "train_shadows",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'miaudit.attacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # pragma: no cover
    from miaudit.attacks.base import Attack, AttackerKnowledge
    from miaudit.attacks.classifiers import ATTACK_MODELS, FEATURE_SETS, attack_features, make_attack_model
    from miaudit.attacks.lira import (
        LiRAAttack,
        LiRAOfflineAttack,
        OfflineReferences,
        ReferenceAttack,
        train_offline_references,
    )
    from miaudit.attacks.mlleaks import MLLeaksAttack
    from miaudit.attacks.registry import attack_class, attack_names, create_attack, register_attack
    from miaudit.attacks.rmia import RMIAAttack
    from miaudit.attacks.shadow import ShadowData, ShadowModelAttack, draw_shadow_sets, train_shadows
    from miaudit.attacks.threshold import (
        MEMBERSHIP_SIGNALS,
        ConfidenceAttack,
        EntropyAttack,
        LossAttack,
        ModifiedEntropyAttack,
        ThresholdAttack,
        membership_signal,
    )

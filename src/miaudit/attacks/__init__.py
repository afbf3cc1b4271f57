"""Membership inference attacks, chosen by name from a registry."""

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
from miaudit.attacks.registry import attack_names, create_attack, register_attack
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

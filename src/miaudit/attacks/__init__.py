"""Membership inference attacks, chosen by name from a registry."""

from miaudit.attacks.base import Attack, AttackerKnowledge
from miaudit.attacks.classifiers import ATTACK_MODELS, FEATURE_SETS, attack_features, make_attack_model
from miaudit.attacks.registry import attack_names, create_attack, register_attack
from miaudit.attacks.shadow import ShadowData, ShadowModelAttack, draw_shadow_sets, train_shadows

__all__ = [
    "ATTACK_MODELS",
    "FEATURE_SETS",
    "Attack",
    "AttackerKnowledge",
    "ShadowData",
    "ShadowModelAttack",
    "attack_features",
    "attack_names",
    "create_attack",
    "draw_shadow_sets",
    "make_attack_model",
    "register_attack",
    "train_shadows",
]

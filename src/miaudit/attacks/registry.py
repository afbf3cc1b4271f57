"""Attacks by name: ``create_attack("shokri", n_shadows=6)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from miaudit.attacks.base import Attack
from miaudit.errors import ConfigError

__all__ = ["attack_names", "create_attack", "register_attack"]

_REGISTRY: dict[str, Callable[..., Attack]] = {}


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator adding an attack to the registry under ``name``."""

    def decorate(cls: type[Attack]) -> type[Attack]:
        if name in _REGISTRY:
            raise ValueError(f"an attack named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtin() -> None:
    # importing the modules registers their attacks
    from miaudit.attacks import lira, mlleaks, rmia, shadow, threshold  # noqa: F401


def attack_names() -> list[str]:
    """Names of every registered attack, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_attack(name: str, **params: Any) -> Attack:
    """Build the attack registered as ``name`` with the given constructor parameters."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for attack {name!r}: {exc}") from exc

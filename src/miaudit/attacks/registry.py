"""Attacks by name: ``create_attack("shokri", n_shadows=6)``.

Three sources of names, none of which imports an attack module before it is asked for:

* the built-in attacks, :data:`BUILTIN_ATTACKS`: name -> ``"module:ClassName"``, imported on first use
  with :mod:`importlib`;
* attacks of other installed packages, declared as entry points in the group :data:`ENTRY_POINT_GROUP`
  (the way pluggy finds plugins), for example in the plugin's ``pyproject.toml``::

      [project.entry-points."miaudit.attacks"]
      my-attack = "my_package.attacks:MyAttack"

  A plugin is listed by :func:`attack_names` without being imported; it is loaded when used;
* classes registered while the program runs, with the :func:`register_attack` decorator.

Each attack class states its registry name in its ``name`` class attribute. Importing this module
imports no attack (nor torch): listing the names is cheap, and no attack module needs the registry,
so there is no import circle between them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from miaudit.errors import ConfigError

if TYPE_CHECKING:
    from miaudit.attacks.base import Attack

__all__ = [
    "BUILTIN_ATTACKS",
    "ENTRY_POINT_GROUP",
    "attack_class",
    "attack_names",
    "create_attack",
    "register_attack",
]

logger = logging.getLogger(__name__)

#: The attacks that come with miaudit: registry name -> ``"module:ClassName"``.
BUILTIN_ATTACKS: Mapping[str, str] = MappingProxyType(
    {
        "shokri": "miaudit.attacks.shadow:ShadowModelAttack",
        "loss": "miaudit.attacks.threshold:LossAttack",
        "confidence": "miaudit.attacks.threshold:ConfidenceAttack",
        "entropy": "miaudit.attacks.threshold:EntropyAttack",
        "modified-entropy": "miaudit.attacks.threshold:ModifiedEntropyAttack",
        "ml-leaks": "miaudit.attacks.mlleaks:MLLeaksAttack",
        "lira": "miaudit.attacks.lira:LiRAAttack",
        "lira-offline": "miaudit.attacks.lira:LiRAOfflineAttack",
        "rmia": "miaudit.attacks.rmia:RMIAAttack",
        "label-gap": "miaudit.attacks.label_only:LabelGapAttack",
        "label-augment": "miaudit.attacks.label_only:LabelAugmentAttack",
        "label-noise": "miaudit.attacks.label_only:LabelNoiseAttack",
    }
)

#: The entry-point group in which other packages declare attacks.
ENTRY_POINT_GROUP = "miaudit.attacks"

_AttackType = TypeVar("_AttackType", bound="type[Attack]")

#: Classes registered at run time with :func:`register_attack`.
_RUNTIME: dict[str, type[Attack]] = {}
#: Built-in and plugin classes already imported, by name.
_LOADED: dict[str, type[Attack]] = {}


def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP`, by name (none of them loaded)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _describe(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    package = f" of package {dist.name!r}" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point {ep.name!r} = {ep.value!r}{package} in group {ENTRY_POINT_GROUP!r}"


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Plugin entry points; a plugin that takes a built-in or run-time name is an error naming it."""
    plugins = _plugin_entry_points()
    for name, ep in plugins.items():
        if name in BUILTIN_ATTACKS or name in _RUNTIME:
            raise ConfigError(
                f"attack plugin {_describe(ep)} uses the name {name!r}, which miaudit already has; "
                "rename the entry point in that package's metadata or uninstall the package"
            )
    return plugins


def _sources() -> tuple[dict[str, metadata.EntryPoint], list[str]]:
    plugins = _plugins()
    return plugins, sorted({*BUILTIN_ATTACKS, *_RUNTIME, *plugins})


def attack_names() -> list[str]:
    """Names of every available attack (built-in, plugin and run-time registered), sorted.

    No attack module is imported to list them.

    Raises
    ------
    ConfigError
        If an installed plugin declares a name miaudit already has.
    """
    return _sources()[1]


def _check_class(obj: object, name: str, where: str) -> type[Attack]:
    from miaudit.attacks.base import Attack

    if not (isinstance(obj, type) and issubclass(obj, Attack)):
        raise ConfigError(
            f"attack {name!r} ({where}) is {obj!r}, not a subclass of miaudit.attacks.base.Attack; "
            "point it at an Attack subclass"
        )
    own = obj.__dict__.get("name")
    if own is None:
        obj.name = name
    elif own != name:
        raise ConfigError(
            f"attack {name!r} ({where}) is the class {obj.__name__}, whose name attribute is {own!r}; "
            f"register it under {own!r} or set name = {name!r} in the class"
        )
    return obj


def attack_class(name: str) -> type[Attack]:
    """The class of the attack called ``name``, imported on first use.

    Parameters
    ----------
    name : str
        One of :func:`attack_names`.

    Returns
    -------
    type
        A subclass of :class:`~miaudit.attacks.base.Attack` whose ``name`` is ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is unknown (the message lists the choices), or a plugin fails to load or does
        not give an Attack subclass (the message names its entry point and package).
    """
    if name in _RUNTIME:
        return _RUNTIME[name]
    if name in _LOADED:
        return _LOADED[name]
    if name in BUILTIN_ATTACKS:
        target = BUILTIN_ATTACKS[name]
        module, _, attr = target.partition(":")
        cls = _check_class(getattr(importlib.import_module(module), attr), name, f"built-in {target}")
    else:
        plugins, names = _sources()
        if name not in plugins:
            raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(names)}")
        ep = plugins[name]
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"attack plugin {_describe(ep)} failed to load ({type(exc).__name__}: {exc}); "
                "fix or uninstall the package that provides it"
            ) from exc
        cls = _check_class(obj, name, _describe(ep))
        logger.info("loaded attack plugin %s", _describe(ep))
    _LOADED[name] = cls
    return cls


def create_attack(name: str, **params: Any) -> Attack:
    """Build the attack called ``name`` with the given constructor parameters.

    Raises
    ------
    ConfigError
        If ``name`` is unknown (the message lists the choices) or a parameter is not accepted.
    """
    cls = attack_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for attack {name!r}: {exc}") from exc


def register_attack(name: str) -> Callable[[_AttackType], _AttackType]:
    """Class decorator adding an attack under ``name`` while the program runs.

    The class's ``name`` attribute is set to ``name`` unless the class sets it itself, in which case
    the two must agree.

    Raises
    ------
    ValueError
        If ``name`` is empty or already taken (by a built-in, a plugin or an earlier registration).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an attack name must be a non-empty str, e.g. 'my-attack'; got {name!r}")

    def decorate(cls: _AttackType) -> _AttackType:
        if name in BUILTIN_ATTACKS or name in _RUNTIME or name in _plugin_entry_points():
            raise ValueError(f"an attack named {name!r} is already registered; choose another name")
        _RUNTIME[name] = _check_class(cls, name, f"registered at run time as {cls.__qualname__}")
        return cls

    return decorate

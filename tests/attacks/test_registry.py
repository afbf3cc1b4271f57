"""The attack registry: built-ins loaded lazily, plugins from entry points, run-time registration."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from collections.abc import Iterator
from importlib import metadata

import pytest

from miaudit.attacks import registry
from miaudit.attacks.base import Attack
from miaudit.errors import ConfigError

BUILTINS = {
    "shokri": "ShadowModelAttack",
    "loss": "LossAttack",
    "confidence": "ConfidenceAttack",
    "entropy": "EntropyAttack",
    "modified-entropy": "ModifiedEntropyAttack",
    "ml-leaks": "MLLeaksAttack",
    "lira": "LiRAAttack",
    "lira-offline": "LiRAOfflineAttack",
    "rmia": "RMIAAttack",
    "label-gap": "LabelGapAttack",
    "label-augment": "LabelAugmentAttack",
    "label-noise": "LabelNoiseAttack",
}
ATTACK_MODULES = [
    f"miaudit.attacks.{m}" for m in ("shadow", "threshold", "mlleaks", "lira", "rmia", "label_only", "base")
]


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh run-time and loaded-class tables, and no installed plugins, for one test."""
    monkeypatch.setattr(registry, "_RUNTIME", {})
    monkeypatch.setattr(registry, "_LOADED", {})
    monkeypatch.setattr(registry, "_plugin_entry_points", dict)
    yield


def _plugin_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module ``fake_miaudit_plugin`` with an Attack subclass, a non-attack and a misnamed attack."""
    from miaudit.attacks.threshold import LossAttack

    module = types.ModuleType("fake_miaudit_plugin")

    class PluginAttack(LossAttack):
        """A loss attack under another name (no ``name`` of its own: the registry sets it)."""

    class Misnamed(LossAttack):
        name = "something-else"

    module.PluginAttack = PluginAttack  # type: ignore[attr-defined]
    module.Misnamed = Misnamed  # type: ignore[attr-defined]
    module.not_an_attack = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_miaudit_plugin", module)
    return module


def _entry_points(monkeypatch: pytest.MonkeyPatch, **points: str) -> None:
    group = registry.ENTRY_POINT_GROUP
    eps = {name: metadata.EntryPoint(name=name, value=value, group=group) for name, value in points.items()}
    monkeypatch.setattr(registry, "_plugin_entry_points", lambda: dict(eps))


def test_attack_names_lists_the_twelve_builtins(clean_registry: None) -> None:
    assert registry.attack_names() == sorted(BUILTINS)
    assert len(registry.attack_names()) == 12


@pytest.mark.parametrize(("name", "class_name"), sorted(BUILTINS.items()))
def test_builtins_load_by_name_and_carry_their_name(clean_registry: None, name: str, class_name: str) -> None:
    cls = registry.attack_class(name)
    assert cls.__name__ == class_name and issubclass(cls, Attack)
    assert cls.__dict__["name"] == name  # set in the class body, not by a decorator
    module, _, attr = registry.BUILTIN_ATTACKS[name].partition(":")
    assert getattr(importlib.import_module(module), attr) is cls
    attack = registry.create_attack(name)
    assert type(attack) is cls and attack.name == name


def test_unknown_name_lists_the_choices(clean_registry: None) -> None:
    with pytest.raises(ConfigError, match=r"unknown attack 'lira2'; choose one of: confidence, entropy, label-"):
        registry.create_attack("lira2")
    with pytest.raises(ConfigError, match=r"unknown attack 'nope'.*modified-entropy, rmia, shokri"):
        registry.attack_class("nope")


def test_bad_parameters_name_the_attack(clean_registry: None) -> None:
    with pytest.raises(ConfigError, match=r"bad parameters for attack 'loss':.*'n_shadowz'"):
        registry.create_attack("loss", n_shadowz=3)


def test_importing_the_registry_imports_no_attack_module() -> None:
    code = (
        "import sys, miaudit.attacks.registry as r\n"
        f"mods = {ATTACK_MODULES!r}\n"
        "names = r.attack_names()\n"
        "loaded = [m for m in mods if m in sys.modules]\n"
        "print(len(names), 'torch' in sys.modules, loaded)\n"
        "r.attack_class('rmia')\n"
        "print(all(m in sys.modules for m in ('miaudit.attacks.rmia', 'miaudit.attacks.lira')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["12 False []", "True"]


def test_entry_point_adds_an_attack(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _plugin_module(monkeypatch)
    _entry_points(monkeypatch, **{"my-loss": "fake_miaudit_plugin:PluginAttack"})
    assert registry.attack_names() == sorted([*BUILTINS, "my-loss"])
    cls = registry.attack_class("my-loss")
    assert cls is module.PluginAttack and cls.name == "my-loss"
    attack = registry.create_attack("my-loss", per_class=True)
    assert isinstance(attack, module.PluginAttack) and attack.per_class is True


def test_listing_does_not_load_plugins(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, ghost="no_such_module_for_miaudit:Attack")
    assert "ghost" in registry.attack_names()  # listed, not imported
    assert "no_such_module_for_miaudit" not in sys.modules


def test_broken_plugin_error_names_it(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin_module(monkeypatch)
    _entry_points(
        monkeypatch,
        ghost="no_such_module_for_miaudit:Attack",
        number="fake_miaudit_plugin:not_an_attack",
        misnamed="fake_miaudit_plugin:Misnamed",
    )
    with pytest.raises(
        ConfigError,
        match=r"attack plugin entry point 'ghost' = 'no_such_module_for_miaudit:Attack' in group "
        r"'miaudit.attacks' failed to load \(ModuleNotFoundError: .*\); fix or uninstall",
    ):
        registry.create_attack("ghost")
    with pytest.raises(ConfigError, match=r"attack 'number' \(entry point 'number'.*\) is 42, not a subclass of"):
        registry.attack_class("number")
    with pytest.raises(ConfigError, match=r"class Misnamed, whose name attribute is 'something-else'"):
        registry.attack_class("misnamed")


def test_plugin_may_not_take_a_builtin_name(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _plugin_module(monkeypatch)
    _entry_points(monkeypatch, lira="fake_miaudit_plugin:PluginAttack")
    with pytest.raises(ConfigError, match=r"entry point 'lira'.*uses the name 'lira', which miaudit already has"):
        registry.attack_names()


def test_register_attack_at_run_time(clean_registry: None) -> None:
    from miaudit.attacks.threshold import ConfidenceAttack

    @registry.register_attack("my-confidence")
    class MyConfidence(ConfidenceAttack):
        pass

    assert MyConfidence.name == "my-confidence"
    assert "my-confidence" in registry.attack_names()
    assert type(registry.create_attack("my-confidence")) is MyConfidence
    assert ConfidenceAttack.name == "confidence"  # the parent keeps its own name


def test_register_attack_errors(clean_registry: None) -> None:
    from miaudit.attacks.threshold import ConfidenceAttack

    with pytest.raises(ValueError, match="an attack named 'lira' is already registered; choose another name"):
        registry.register_attack("lira")(ConfidenceAttack)
    with pytest.raises(ValueError, match="an attack name must be a non-empty str"):
        registry.register_attack("")
    with pytest.raises(ConfigError, match="is <class 'int'>, not a subclass of miaudit.attacks.base.Attack"):
        registry.register_attack("number")(int)  # type: ignore[type-var]

    class Twice(ConfidenceAttack):
        name = "twice"

    registry.register_attack("twice")(Twice)
    with pytest.raises(ValueError, match="an attack named 'twice' is already registered"):
        registry.register_attack("twice")(Twice)


def test_installed_entry_points_are_read_from_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        seen.append(group)
        return [metadata.EntryPoint(name="x", value="m:C", group=group)]

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    assert list(registry._plugin_entry_points()) == ["x"]
    assert seen == ["miaudit.attacks"]

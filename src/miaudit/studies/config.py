"""Validated, frozen configurations. Raw dicts do not travel past this module."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miaudit.errors import ConfigError

__all__ = ["AttackConfig", "parse_config"]

M = TypeVar("M", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AttackConfig(_Frozen):
    """One attack on one target: what ``miaudit attack`` runs. Defaults are the seed study's best run."""

    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    data_dir: str | None = None
    classes: int | None = Field(default=None, ge=2, description="keep the first N classes (None: all)")
    target_size: int = Field(
        default=3000, ge=1, description="target members; as many non-members are held out"
    )
    shadow_train_size: int = Field(default=3000, ge=1)
    shadow_test_size: int = Field(default=2000, ge=1)
    shadows: int = Field(default=6, ge=1, le=256)
    arch: Literal["simple", "dense", "dropout"] = "simple"
    shadow_arch: Literal["simple", "dense", "dropout"] | None = Field(
        default=None, description="architecture the attacker believes (None: the target's)"
    )
    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0)
    attack: Literal["shokri"] = "shokri"
    attack_model: Literal["lr", "tree", "linear-svm", "rbf-svm"] = "linear-svm"
    per_class: bool = False
    features: Literal["raw", "sorted", "log-sorted", "true-label", "rich"] = "rich"
    engine: Literal["auto", "batched", "loop"] = "auto"
    precision: Literal["auto", "f32", "bf16"] = "auto"
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


def _describe(err: ValidationError, cls: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        field = cls.model_fields.get(str(e["loc"][0])) if e["loc"] else None
        given = e.get("input")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(cls.model_fields))
            msg = f"unknown field; allowed fields: {allowed}"
        elif e["type"] == "literal_error" and field is not None:
            msg = f"must be one of {e['ctx']['expected']}"
        lines.append(f"{loc}: {msg} (given: {given!r})")
    return f"invalid {cls.__name__}: " + "; ".join(lines)


def parse_config(cls: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``cls``.

    Raises ConfigError naming each bad field, what is allowed and what was given.
    """
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, cls)) from None

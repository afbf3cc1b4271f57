"""Validated, frozen configurations. Raw dicts do not travel past this module."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from miaudit.errors import ConfigError

__all__ = ["ATTACK_ORDER", "DEFAULT_REFS", "AttackConfig", "CompareConfig", "RunOptions", "parse_config"]

M = TypeVar("M", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: the order of ``--attacks all``: the classic, the threshold attacks, ML-Leaks, then LiRA and RMIA;
#: attacks registered by plugins follow in alphabetical order
ATTACK_ORDER: tuple[str, ...] = (
    "shokri",
    "loss",
    "confidence",
    "entropy",
    "modified-entropy",
    "ml-leaks",
    "lira",
    "lira-offline",
    "rmia",
)

#: reference models of LiRA and RMIA when the config does not say
DEFAULT_REFS = 16


def _known_attacks() -> list[str]:
    from miaudit.attacks.registry import attack_names

    names = attack_names()
    return [n for n in ATTACK_ORDER if n in names] + [n for n in names if n not in ATTACK_ORDER]


def _check_attack_name(name: str) -> str:
    known = _known_attacks()
    if name not in known:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(known)}")
    return name


class RunOptions(_Frozen):
    """The target and the attacker's knowledge: options shared by ``attack`` and ``compare``.

    Attack parameters come from these fields through
    :func:`miaudit.studies.pipeline.attack_params`; each attack takes the ones it uses.
    """

    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    data_dir: str | None = None
    classes: int | None = Field(default=None, ge=2, description="keep the first N classes (None: all)")
    target_size: int = Field(default=3000, ge=1, description="target members; as many non-members are held out")
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
    attack_model: Literal["lr", "tree", "linear-svm", "rbf-svm"] = "linear-svm"
    per_class: bool | None = Field(
        default=None,
        description="per-class attack models (shokri) or thresholds (threshold attacks); None: each attack's default",
    )
    features: Literal["raw", "sorted", "log-sorted", "true-label", "rich"] = "rich"
    refs: int | None = Field(
        default=None, ge=1, le=1024, description=f"reference models of lira, lira-offline, rmia (None: {DEFAULT_REFS})"
    )
    ref_train_size: int | None = Field(
        default=None, ge=1, description="records per reference model (None: target_size, the believed size)"
    )
    engine: Literal["auto", "batched", "loop"] = "auto"
    precision: Literal["auto", "f32", "bf16"] = "auto"
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class AttackConfig(RunOptions):
    """One attack on one target: what ``miaudit attack`` runs. Defaults are the seed study's best run."""

    attack: str = Field(default="shokri", description="a registered attack name (miaudit.attacks.attack_names)")

    @field_validator("attack")
    @classmethod
    def _attack_known(cls, value: str) -> str:
        return _check_attack_name(value)


class CompareConfig(RunOptions):
    """Several attacks on the same targets, over several seeds: what ``miaudit compare`` runs.

    ``attacks`` accepts a list or a comma-separated string of names; ``"all"`` stands for every
    registered attack in :data:`ATTACK_ORDER`. Seeds are ``seed, seed + 1, ..., seed + seeds - 1``.
    """

    attacks: tuple[str, ...] = Field(default=("all",), min_length=1, validate_default=True)
    seeds: int = Field(default=3, ge=1, le=1000, description="number of seeds (targets) to run")

    @field_validator("attacks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("attacks")
    @classmethod
    def _expand(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names: list[str] = []
        for v in value:
            for name in _known_attacks() if v == "all" else [_check_attack_name(v)]:
                if name not in names:
                    names.append(name)
        return tuple(names)

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the runs."""
        return [self.seed + i for i in range(self.seeds)]


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

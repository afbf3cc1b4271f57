"""The audit's configuration: every option of ``miaudit audit``, validated once (flags or a TOML file).

An :class:`AuditConfig` says where the model, the data and the membership ground truth are, which attacks
to run, what the attacker's shadow and reference models are, and how to reach a prediction service. The
command-line flags and the TOML audit file (``docs/audit-config.md``, field by field) fill the same model;
flags override the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from miaudit.errors import ConfigError
from miaudit.studies.schema import TrainRecipe, _Frozen, known_attacks, parse_config

__all__ = [
    "DEFAULT_ATTACKS",
    "OUTPUT_ATTACKS",
    "AuditConfig",
    "ServiceOptions",
    "load_audit_config",
]

#: with a model and an attacker population: the strongest attacks (LiRA and RMIA, with models of the
#: target's family) and the loss threshold as the simplest baseline
DEFAULT_ATTACKS: tuple[str, ...] = ("lira", "rmia", "loss")
#: with precomputed outputs only (no model to query, no shadows to train): the threshold signals
OUTPUT_ATTACKS: tuple[str, ...] = ("loss", "confidence", "entropy", "modified-entropy")


class ServiceOptions(_Frozen):
    """How to reach a model behind a prediction URL (``docs/http-protocol.md``)."""

    token_file: str | None = Field(default=None, description="file holding the bearer token")
    token_env: str = Field(default="MIAUDIT_TOKEN", description="environment variable holding the token")
    budget: int | None = Field(default=None, ge=1, description="most records sent to the service (cached are free)")
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    concurrency: int = Field(default=4, ge=1, le=256)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=5, ge=0, le=100)
    cache_dir: str | None = Field(default=None, description="answer cache (default: the miaudit cache)")


class AuditConfig(_Frozen):
    """One audit of a user's model on the user's data (``miaudit audit``)."""

    # the model: a file, a prediction URL, or none (then ``outputs``)
    model: str | None = None
    outputs: str | None = Field(default=None, description="per-record outputs instead of a model")
    output_kind: Literal["auto", "probabilities", "logits", "loss"] = "auto"
    input_shape: tuple[int, ...] | None = None
    factory: str | None = Field(default=None, description="package.module:callable building the torch module")
    trust: tuple[str, ...] = Field(default=(), description="skops types to trust beyond the default ones")
    allow_unsafe_pickle: bool = False
    # the data
    data: str
    labels: str | None = Field(default=None, description="labels file for IDX images")
    label_column: str = "label"
    id_column: str | None = "id"
    feature_columns: tuple[str, ...] | None = None
    members: str | None = Field(default=None, description="file listing the members' ids")
    member_column: str | None = Field(default=None, description="boolean column of the data marking members")
    nonmembers: str | None = Field(default=None, description="file of non-member records (default: the rest)")
    population: str | None = Field(default=None, description="the attacker's own records (default: from the rest)")
    # the attacks
    attacks: tuple[str, ...] = ()
    attack_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    shadows: Literal["auto", "family", "mlp"] = "auto"
    n_shadows: int = Field(default=4, ge=1, le=256)
    n_refs: int = Field(default=16, ge=2, le=4096)
    train: TrainRecipe = TrainRecipe()
    hidden: tuple[int, ...] = Field(default=(128,), description="hidden widths of built-in MLP shadows")
    # how it runs
    seed: int = Field(default=0, ge=0, le=2**62)
    n_boot: int = Field(default=1000, ge=10, le=100_000)
    service: ServiceOptions = ServiceOptions()
    dp_epsilon: float | None = Field(default=None, gt=0, description="the privacy claim to check")

    @field_validator("attacks")
    @classmethod
    def _attacks_known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = known_attacks()
        out: list[str] = []
        for name in v:
            for n in known if name == "all" else [name]:
                if n not in known:
                    raise ValueError(f"unknown attack {n!r}; choose one of: {', '.join(known)} (or all)")
                if n not in out:
                    out.append(n)
        return tuple(out)

    @field_validator("input_shape", "hidden")
    @classmethod
    def _positive_dims(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (not v or any(d < 1 for d in v)):
            raise ValueError(f"every dimension must be a positive integer; got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AuditConfig:
        if (self.model is None) == (self.outputs is None):
            raise ValueError("give a model (--model PATH or URL) or the model's outputs (--outputs PATH), exactly one")
        if self.members is not None and self.member_column is not None:
            raise ValueError("give the members as ids (--members FILE) or as a column (--member-column), not both")
        if self.members is None and self.member_column is None:
            raise ValueError(
                "say who the members are: --members FILE (a CSV whose id column lists them) "
                "or --member-column NAME (a boolean column of the data)"
            )
        if self.outputs is not None:
            bad = [a for a in self.attacks if a not in OUTPUT_ATTACKS]
            if bad:
                raise ValueError(
                    f"with outputs only (no model), the attacks can be {', '.join(OUTPUT_ATTACKS)}; "
                    f"not {', '.join(bad)}: they need to query a model or train shadows of it"
                )
        for name, params in self.attack_params.items():
            if name not in known_attacks():
                raise ValueError(f"attack_params: unknown attack {name!r}")
            if "seed" in params:
                raise ValueError("attack_params may not set 'seed': every attack's seed derives from the audit's seed")
        return self

    @property
    def is_url(self) -> bool:
        """Whether the model is a prediction service."""
        return self.model is not None and self.model.startswith(("http://", "https://"))

    def chosen_attacks(self) -> tuple[str, ...]:
        """The attacks to run: those asked for, else the strongest the inputs allow."""
        if self.attacks:
            return self.attacks
        return OUTPUT_ATTACKS if self.outputs is not None else DEFAULT_ATTACKS


def load_audit_config(path: str | Path | None = None, **overrides: Any) -> AuditConfig:
    """An :class:`AuditConfig` from a TOML audit file (optional) and keyword overrides (the flags).

    Relative paths in the file are taken relative to the file's folder. Overrides whose value is None
    leave the file's value.

    Raises
    ------
    ConfigError
        A missing or invalid file, or a field with a value that is not allowed (named, with what is).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"audit file {path} does not exist; pass a TOML file (see docs/audit-config.md)"
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"audit file {path} is not valid TOML: {exc}") from None
        for key in ("model", "outputs", "data", "labels", "members", "nonmembers", "population"):
            value = data.get(key)
            if (
                isinstance(value, str)
                and not value.startswith(("http://", "https://"))
                and not Path(value).is_absolute()
            ):
                data[key] = str(path.parent / value)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in AuditConfig.model_fields:  # the audit's own first: dp_epsilon is the claim, not a recipe
            data[key] = value
        elif key in ServiceOptions.model_fields:
            data.setdefault("service", {})[key] = value
        elif key in TrainRecipe.model_fields:
            data.setdefault("train", {})[key] = value
        else:
            data[key] = value
    try:
        return parse_config(AuditConfig, data)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None

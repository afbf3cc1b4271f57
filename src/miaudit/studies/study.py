"""Declarative study configs: a TOML file per study, validated into frozen models.

A study is a base setting (target, shadows, attack) and a grid: the cartesian product of the grid's
lists gives the study's settings. ``configs/README.md`` documents every field.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miaudit.errors import ConfigError
from miaudit.studies.config import parse_config

__all__ = [
    "GRID_KEYS",
    "ReproduceConfig",
    "Setting",
    "StudyConfig",
    "default_config_dir",
    "load_studies",
    "load_study",
]

Arch = Literal["simple", "dense", "dropout"]
AttackModel = Literal["lr", "tree", "linear-svm", "rbf-svm"]
GRID_KEYS = ("attack_model", "n_shadows", "target_size", "classes", "arch", "shadow_arch")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainRecipe(_Frozen):
    """How target and shadows are trained (the attacker believes the same recipe)."""

    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0)


class Setting(_Frozen):
    """One point of a study's grid: everything that determines one attack evaluation (but the seed)."""

    study: str
    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    classes: int = Field(default=10, ge=2)
    target_size: int = Field(default=3000, ge=1)
    arch: Arch = "simple"
    shadow_arch: Arch | None = None
    shadow_train_size: int = Field(default=3000, ge=1)
    shadow_test_size: int = Field(default=2000, ge=1)
    disjoint_shadows: bool = True
    n_shadows: int = Field(default=6, ge=1, le=64)
    attack_model: AttackModel = "linear-svm"
    per_class: bool = False
    features: Literal["raw", "sorted", "log-sorted", "true-label", "rich"] = "rich"
    train: TrainRecipe = TrainRecipe()

    @property
    def attacker_arch(self) -> str:
        return self.shadow_arch or self.arch

    @property
    def setting_id(self) -> str:
        """A stable, readable id, unique within its study."""
        parts = [
            f"s{self.study}",
            self.attack_model,
            f"n{self.n_shadows}",
            f"t{self.target_size}",
            f"c{self.classes}",
            self.arch,
        ]
        if self.shadow_arch and self.shadow_arch != self.arch:
            parts.append(f"sh-{self.shadow_arch}")
        return "-".join(parts)


class StudyConfig(_Frozen):
    """A study: a title, where the paper reports it, a base setting and a grid over it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    title: str
    paper_ref: str = ""
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    quick: dict[str, Any] = Field(default_factory=dict, description="overrides of base and grid for --quick")

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        for key in self.grid:
            if key not in GRID_KEYS:
                raise ValueError(f"grid key {key!r} is not allowed; allowed: {', '.join(GRID_KEYS)}")
            if not self.grid[key]:
                raise ValueError(f"grid.{key} is empty; give at least one value")
        for key in self.quick:
            if key not in {"base", "grid"}:
                raise ValueError(f"quick.{key} is not allowed; quick may override 'base' and 'grid'")
        self.settings()  # validates every grid point now, not mid-run
        return self

    def settings(self, *, quick: bool = False) -> list[Setting]:
        """Every grid point as a validated :class:`Setting`, in grid order."""
        base = dict(self.base)
        grid = dict(self.grid)
        if quick:
            base.update(self.quick.get("base", {}))
            grid.update(self.quick.get("grid", {}))
        keys = list(grid)
        out = []
        for values in itertools.product(*(grid[k] for k in keys)):
            data = {**base, **dict(zip(keys, values, strict=True)), "study": self.id}
            if "train" in data and isinstance(data["train"], dict):
                data["train"] = parse_config(TrainRecipe, data["train"])
            out.append(parse_config(Setting, data))
        return out


class ReproduceConfig(_Frozen):
    """What ``miaudit reproduce`` runs."""

    studies: tuple[StudyConfig, ...]
    seeds: int = Field(default=5, ge=1, le=100)
    first_seed: int = Field(default=0, ge=0)
    quick: bool = False
    rbf_max_samples: int = Field(default=5_000, ge=100, description="RBF SVM fits on at most this many records")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def all_settings(self) -> list[Setting]:
        return [s for study in self.studies for s in study.settings(quick=self.quick)]


def default_config_dir() -> Path:
    """The study configs shipped with the package (``configs/`` in a source checkout)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "configs", here.parent / "configs"):
        if candidate.is_dir() and any(candidate.glob("study*.toml")):
            return candidate
    raise ConfigError("cannot find the study configs (configs/study*.toml); pass --config-dir")


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate one study TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study config {path} is not valid TOML: {exc}") from None
    try:
        return parse_config(StudyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_studies(ids: list[str] | None = None, *, config_dir: str | Path | None = None) -> list[StudyConfig]:
    """Load the studies with the given ids (None: all) from ``config_dir`` (default: the shipped ones)."""
    directory = Path(config_dir) if config_dir else default_config_dir()
    studies = {s.id: s for s in (load_study(p) for p in sorted(directory.glob("study*.toml")))}
    if not studies:
        raise ConfigError(f"no study*.toml files in {directory}")
    if ids is None:
        return sorted(studies.values(), key=lambda s: (len(s.id), s.id))
    missing = [i for i in ids if i not in studies]
    if missing:
        raise ConfigError(f"unknown study id(s) {', '.join(missing)}; available: {', '.join(sorted(studies))}")
    return [studies[i] for i in ids]

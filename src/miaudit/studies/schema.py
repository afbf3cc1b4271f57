"""One setting schema for every command: ``attack``, ``compare``, ``reproduce`` and the library.

A :class:`Setting` is everything that determines one attack evaluation except the seed: the data view,
the target (architecture, size, recipe), what the attacker believes (its architecture), the attack by
registered name and its parameters. Allowed values come from the registries, never from lists written
here: datasets (:data:`miaudit.data.datasets.DATASETS`), architectures
(:data:`miaudit.training.specs.ARCHITECTURES`), attack classifiers and feature sets
(:mod:`miaudit.attacks.classifiers`) and attacks (:func:`miaudit.attacks.registry.attack_names`, built-ins
and plugins). A new attack or architecture is one registration.

Attack parameters. The setting's shared attacker fields (``n_shadows``, ``shadow_train_size``,
``shadow_test_size``, ``attack_model``, ``per_class``, ``features``, ``disjoint_shadows``, ``n_refs``,
``ref_train_size``) fill the constructor parameters of the same name of whichever attack is named, so
one study can grid over attacks and give each what it takes; ``attack_params`` (an inline table) sets
any other constructor parameter, and is checked against the constructor's signature when the setting
is validated. A shared field left at ``None`` leaves the attack's own default, except
``ref_train_size``, which defaults to the target's size (what the attacker believes it is).

A study (a TOML file, ``miaudit/configs/README.md``) is a base setting and a grid: the cartesian product of
the grid's lists, over any setting field, ``attack`` and ``attack_params`` included. A grid key that is
not a setting field is an axis of *arms*: each of its values is a table of setting fields set together
(an overfitted target trained longer than the simple one, say).
"""

from __future__ import annotations

import inspect
import itertools
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from miaudit.errors import ConfigError

__all__ = [
    "ATTACK_ORDER",
    "DEFAULT_CACHE_ENV",
    "SHARED_ATTACK_FIELDS",
    "RunSpec",
    "Setting",
    "StudyConfig",
    "TrainRecipe",
    "attack_constructor_params",
    "default_config_dir",
    "known_attacks",
    "load_studies",
    "load_study",
    "parse_config",
]

M = TypeVar("M", bound=BaseModel)

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
    "label-gap",
    "label-augment",
    "label-noise",
)
#: setting fields that fill the constructor parameters of the same name of the named attack
SHARED_ATTACK_FIELDS: tuple[str, ...] = (
    "n_shadows",
    "shadow_train_size",
    "shadow_test_size",
    "attack_model",
    "per_class",
    "features",
    "disjoint_shadows",
    "n_refs",
    "ref_train_size",
)
#: RBF-kernel SVMs cost about the square of their training set: fit them on at most this many shadow records
RBF_MAX_SAMPLES = 5_000
#: environment variable naming the shared cache of trained models and attack results
DEFAULT_CACHE_ENV = "MIAUDIT_CACHE_DIR"


def _choice(kind: str, value: str, allowed: list[str] | tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def known_attacks() -> list[str]:
    """Every registered attack: :data:`ATTACK_ORDER` first, then plugins alphabetically."""
    from miaudit.attacks.registry import attack_names

    names = attack_names()
    return [n for n in ATTACK_ORDER if n in names] + [n for n in names if n not in ATTACK_ORDER]


def _datasets() -> tuple[str, ...]:
    from miaudit.data.datasets import DATASETS

    return DATASETS


def _architectures() -> list[str]:
    from miaudit.training.specs import ARCHITECTURES

    return list(ARCHITECTURES)


def _attack_models() -> list[str]:
    from miaudit.attacks.classifiers import ATTACK_MODELS

    return list(ATTACK_MODELS)


def _feature_sets() -> list[str]:
    from miaudit.attacks.classifiers import FEATURE_SETS

    return list(FEATURE_SETS)


@cache
def attack_constructor_params(name: str) -> tuple[str, ...]:
    """The keyword parameters of the constructor of the attack registered as ``name`` (``seed`` excluded)."""
    from miaudit.attacks.registry import attack_class

    cls = attack_class(name)
    params = inspect.signature(cls.__init__).parameters
    return tuple(p for p in params if p not in ("self", "seed") and params[p].kind is not inspect.Parameter.VAR_KEYWORD)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainRecipe(_Frozen):
    """How the target is trained, and what the attacker believes about it.

    The fields of :class:`miaudit.training.specs.TrainSpec` (engine and precision aside, which the run
    sets): defences are recipe fields. DP-SGD is on when ``dp_epsilon`` (noise calibrated to spend that
    epsilon) or ``dp_noise_multiplier`` (noise set directly) is given, not both; ``dp_delta`` defaults
    to 1/n of the model's training set. Early stopping is on when ``early_stopping_patience`` is given:
    ``validation_fraction`` of each model's own training set is held out (members the model never
    trains on) and the weights of the epoch with the lowest validation loss are kept; not with DP-SGD.
    A dump omits the DP, label-smoothing and early-stopping fields at their defaults, so recipes
    without them keep their setting ids and cache keys.
    """

    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0, le=10)
    dp_epsilon: float | None = Field(default=None, gt=0, le=1e6, description="target epsilon of DP-SGD")
    dp_noise_multiplier: float | None = Field(default=None, ge=0, le=1e6, description="DP-SGD noise sigma")
    dp_delta: float | None = Field(default=None, gt=0, lt=1, description="None: 1/n")
    max_grad_norm: float = Field(default=1.0, gt=0, le=1e6, description="DP-SGD per-example clipping bound")
    dp_accountant: str = "rdp"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    early_stopping_patience: int | None = Field(
        default=None, ge=1, le=10_000, description="epochs without a lower validation loss before stopping (None: off)"
    )
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=1, description="share of each model's training set held out for early stopping"
    )

    @field_validator("dp_accountant")
    @classmethod
    def _accountant_known(cls, v: str) -> str:
        from miaudit.training.specs import ACCOUNTANTS

        return _choice("accountant", v, ACCOUNTANTS)

    @model_validator(mode="after")
    def _one_noise(self) -> TrainRecipe:
        if self.dp_epsilon is not None and self.dp_noise_multiplier is not None:
            raise ValueError(
                "give dp_epsilon (noise calibrated to a target epsilon) or dp_noise_multiplier (noise set "
                "directly), not both"
            )
        if self.early_stopping_patience is not None and (
            self.dp_epsilon is not None or self.dp_noise_multiplier is not None
        ):
            raise ValueError(
                "early_stopping_patience cannot be combined with DP-SGD (dp_epsilon or dp_noise_multiplier): the "
                "validation records would steer training outside the privacy accounting; choose one of the two"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        from miaudit.training.specs import OPTIONAL_DEFAULTS  # one list: TrainSpec.to_dict omits the same

        d: dict[str, Any] = handler(self)
        for name, default in OPTIONAL_DEFAULTS.items():
            if name in d and d[name] == default:
                del d[name]
        return d


class Setting(_Frozen):
    """One attack evaluation, but for its seed. Defaults are the seed study's best run."""

    study: str = Field(default="attack", pattern=r"^[A-Za-z0-9_.-]+$")
    label: str | None = Field(default=None, max_length=80, description="a name for tables, e.g. an arm's ('DP, eps 1')")
    # the data and the target
    dataset: str = "fashion-mnist"
    classes: int | None = Field(default=None, ge=2, description="keep the first N classes (None: all)")
    target_size: int = Field(default=3000, ge=1, description="target members; as many non-members are held out")
    arch: str = "simple"
    train: TrainRecipe = TrainRecipe()
    # the attacker
    shadow_arch: str | None = Field(default=None, description="architecture the attacker believes (None: arch)")
    attack: str = "shokri"
    attack_params: dict[str, Any] = Field(default_factory=dict)
    n_shadows: int = Field(default=6, ge=1, le=256)
    shadow_train_size: int = Field(default=3000, ge=1)
    shadow_test_size: int = Field(default=2000, ge=1)
    disjoint_shadows: bool = True
    attack_model: str = "linear-svm"
    per_class: bool | None = Field(default=None, description="None: each attack's own default")
    features: str = "rich"
    n_refs: int | None = Field(default=None, ge=1, le=4096, description="reference models (None: the attack's)")
    ref_train_size: int | None = Field(default=None, ge=1, description="None: target_size")
    # what the attacker sees of the target: the answers its API lets out, in process or over HTTP
    output_policy: str = Field(
        default="full", description="full, top_k:K, rounding:D, temperature:T, label_only, noise:S"
    )
    transport: Literal["local", "http"] = Field(
        default="local", description="http: served on 127.0.0.1, attacked over it"
    )

    @field_validator("dataset")
    @classmethod
    def _dataset_known(cls, v: str) -> str:
        return _choice("dataset", v, _datasets())

    @field_validator("arch", "shadow_arch")
    @classmethod
    def _arch_known(cls, v: str | None) -> str | None:
        return v if v is None else _choice("architecture", v, _architectures())

    @field_validator("attack")
    @classmethod
    def _attack_known(cls, v: str) -> str:
        return _choice("attack", v, known_attacks())

    @field_validator("output_policy")
    @classmethod
    def _policy_known(cls, v: str) -> str:
        from miaudit.targets.policies import OutputPolicy

        return OutputPolicy.from_string(v).to_string()

    @field_validator("attack_model")
    @classmethod
    def _attack_model_known(cls, v: str) -> str:
        return _choice("attack model", v, _attack_models())

    @field_validator("features")
    @classmethod
    def _features_known(cls, v: str) -> str:
        return _choice("feature set", v, _feature_sets())

    @model_validator(mode="after")
    def _check_attack_params(self) -> Setting:
        allowed = attack_constructor_params(self.attack)
        for key in self.attack_params:
            if key == "seed":
                raise ValueError("attack_params may not set 'seed': every attack's seed derives from the run's seed")
            if key not in allowed:
                raise ValueError(
                    f"attack_params: {self.attack!r} takes no parameter {key!r}; its parameters: {', '.join(allowed)}"
                )
        self.attack_kwargs(seed=0, validate=True)
        return self

    @property
    def attacker_arch(self) -> str:
        """The architecture of the attacker's shadow and reference models."""
        return self.shadow_arch or self.arch

    def attack_kwargs(self, *, seed: int, validate: bool = False) -> dict[str, Any]:
        """The constructor parameters of :attr:`attack`: shared fields it takes, then ``attack_params``, and ``seed``.

        With ``validate``, the attack is built and its parameter checks run (ConfigError naming the bad one).
        """
        from miaudit.attacks.registry import attack_class

        cls = attack_class(self.attack)
        takes = set(attack_constructor_params(self.attack)) - set(cls.setting_exclude)
        shared: dict[str, Any] = {}
        for name in SHARED_ATTACK_FIELDS:
            value = getattr(self, name)
            if name == "ref_train_size" and value is None:
                value = self.target_size
            if name in takes and value is not None:
                shared[name] = value
        if "max_train_samples" in takes and self.attack_model == "rbf-svm":
            shared["max_train_samples"] = RBF_MAX_SAMPLES
        kwargs = {**shared, **self.attack_params, "seed": seed}
        if validate:
            cls(**kwargs).check_params()
        return kwargs

    @property
    def setting_id(self) -> str:
        """A stable, readable id, unique within its study (also the name of its scores file)."""
        parts = [f"s{self.study}", self.attack, self.attack_model, f"n{self.n_shadows}", f"t{self.target_size}"]
        parts += [f"c{self.classes or 'all'}", self.arch]
        if self.shadow_arch and self.shadow_arch != self.arch:
            parts.append(f"sh-{self.shadow_arch}")
        defaults = _default_dump()
        rest = {k: v for k, v in self.model_dump(exclude=_SHOWN_IN_ID).items() if v != defaults[k]}
        if rest:
            from miaudit.studies.cache import key_hash

            parts.append(key_hash(rest)[:8])
        return "-".join(parts)


#: the fields a setting id spells out; the others enter it as a hash when they differ from the defaults
_SHOWN_IN_ID: set[str] = {"study", "attack", "attack_model", "n_shadows", "target_size", "classes", "arch",
                          "shadow_arch"}  # fmt: skip


@cache
def _default_dump() -> dict[str, Any]:
    return Setting().model_dump(exclude=_SHOWN_IN_ID)


class RunSpec(_Frozen):
    """How settings run: seeds, training arithmetic, where data and cache are. Not part of any setting.

    ``engine`` and ``precision`` change the arithmetic (results agree to rounding), so they are part of
    every trained model's cache key in their resolved form. ``scheduler`` (the address of a running
    Dask scheduler, ``tcp://HOST:8786``) or ``workers`` (a local Dask cluster of that many worker
    processes) train the models on a cluster instead of in this process; the numbers are the same, so
    neither is part of any key. They need the batched engine (``auto`` or ``batched``).

    ``device`` (``cpu``, ``cuda``, ``mps``) is where the batched engine computes; results agree across
    devices to rounding, and a device other than ``cpu`` is part of the trained models' cache keys
    (``cpu`` is not: the keys of CPU runs stay as they were). A GPU must be usable here, checked at
    once; engine ``loop`` trains on the CPU only.
    """

    seeds: int = Field(default=1, ge=1, le=1000)
    first_seed: int = Field(default=0, ge=0, le=2**62)
    engine: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    data_dir: str | None = None
    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1, le=4096)

    @field_validator("scheduler")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", v):
            raise ValueError(f"scheduler must be a Dask scheduler address like tcp://HOST:8786; got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_cluster(self) -> RunSpec:
        if self.scheduler is not None and self.workers is not None:
            raise ValueError(
                "give either scheduler (a running Dask cluster) or workers (a local one to start), not both; "
                "unset MIAUDIT_SCHEDULER or drop --workers"
            )
        if (self.scheduler is not None or self.workers is not None) and self.engine == "loop":
            raise ValueError(
                "engine 'loop' trains one model at a time in this process; training on a Dask cluster needs "
                "engine 'auto' or 'batched'"
            )
        if self.device != "cpu" and self.engine == "loop":
            raise ValueError(
                f"engine 'loop' trains on the CPU; device {self.device!r} needs engine 'auto' or 'batched' "
                "(or use device 'cpu')"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device_usable(cls, v: str) -> str:
        from miaudit.training.specs import DEVICES

        v = _choice("device", v, DEVICES)
        if v != "cpu":  # a GPU this PyTorch cannot use fails here, before any data is loaded
            from miaudit.training.hardware import resolve_device

            resolve_device(v)
        return v

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, v: str) -> str:
        from miaudit.training.specs import ENGINES

        return _choice("engine", v, ENGINES)

    @field_validator("precision")
    @classmethod
    def _precision_known(cls, v: str) -> str:
        from miaudit.training.specs import PRECISIONS

        return _choice("precision", v, PRECISIONS)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


class StudyConfig(_Frozen):
    """A study: a title, where the paper reports it, a base setting and a grid over it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    title: str
    paper_ref: str = ""
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    quick: dict[str, Any] = Field(default_factory=dict, description="overrides of base and grid for --quick")
    in_default_run: bool = Field(default=True, description="part of `miaudit reproduce` without --studies")

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        settable = set(Setting.model_fields) - {"study"}
        allowed = ", ".join(sorted(settable))
        for key in self.base:
            if key not in settable:
                raise ValueError(f"base.{key} is not a setting field; allowed: {allowed}")
        for part, grid in (("grid", self.grid), ("quick.grid", self.quick.get("grid", {}))):
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{part}.{key} must be a non-empty list of values")
                if key in settable:
                    continue
                if not all(isinstance(v, dict) for v in values):
                    raise ValueError(
                        f"{part}.{key} is not a setting field (allowed: {allowed}); an axis of arms needs a table of "
                        'setting fields per value, e.g. arm = [{ arch = "simple" }, { arch = "dense", train = ... }]'
                    )
                for v in values:
                    bad = sorted(set(v) - settable)
                    if bad:
                        raise ValueError(f"{part}.{key}: {', '.join(bad)} is not a setting field; allowed: {allowed}")
        for key in self.quick:
            if key not in {"base", "grid"}:
                raise ValueError(f"quick.{key} is not allowed; quick may override 'base' and 'grid'")
        for quick in (False, True):
            self.settings(quick=quick)  # validates every grid point now, not mid-run
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
            point = dict(base)
            for key, value in zip(keys, values, strict=True):
                if key in Setting.model_fields:
                    point[key] = value
                else:  # an axis of arms: each value sets several fields together
                    point.update(value)
            out.append(parse_config(Setting, {**point, "study": self.id}))
        ids = [s.setting_id for s in out]
        if len(set(ids)) != len(ids):  # pragma: no cover - setting_id hashes every field it does not show
            raise ConfigError(f"study {self.id}: two grid points have the same setting id")
        return out


def _describe(err: ValidationError, cls: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        given = e.get("input")
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown field; allowed fields: {', '.join(sorted(cls.model_fields))}"
        if isinstance(given, dict) and len(str(given)) > 200:
            given = "{...}"
        lines.append(f"{loc}: {msg} (given: {given!r})")
    return f"invalid {cls.__name__}: " + "; ".join(lines)


def parse_config(cls: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``cls``; ConfigError naming each bad field, what is allowed and what was given."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, cls)) from None
    except ConfigError as exc:  # an attack's own parameter check
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from None


def default_config_dir() -> Path:
    """The folder of the study configs shipped with the package (``miaudit/configs/study*.toml``).

    They are package data, found through :mod:`importlib.resources` wherever miaudit is installed (a wheel,
    an editable install, a source checkout on ``sys.path``). Where the package is not a folder on disk (a zip
    import), its files are copied to ``configs/<hash of their contents>`` in the cache folder
    (``$MIAUDIT_CACHE_DIR``, else the user cache) once, and that folder is returned.

    Returns
    -------
    Path
        A folder holding ``study*.toml``.

    Raises
    ------
    ConfigError
        If the install holds no shipped study configs (a broken install).
    """
    import hashlib
    import os
    from importlib import resources

    fix = "reinstall miaudit, or pass --config-dir DIR with your own study*.toml files"
    try:
        root = resources.files("miaudit.configs")
    except ModuleNotFoundError:
        raise ConfigError(f"cannot find the shipped study configs (no package miaudit.configs); {fix}") from None
    if isinstance(root, Path):  # a normal install: the package is a folder on disk
        if any(root.glob("study*.toml")):
            return root
        raise ConfigError(f"cannot find the shipped study configs (no study*.toml in {root}); {fix}")
    contents = {f.name: f.read_bytes() for f in root.iterdir() if f.is_file() and not f.name.endswith(".py")}
    if not any(name.startswith("study") and name.endswith(".toml") for name in contents):
        raise ConfigError(f"cannot find the shipped study configs (no study*.toml in miaudit.configs); {fix}")
    import platformdirs

    from miaudit._io import atomic_write_bytes

    digest = hashlib.sha256(b"".join(n.encode() + b"\0" + d + b"\0" for n, d in sorted(contents.items())))
    cache = os.environ.get(DEFAULT_CACHE_ENV) or platformdirs.user_cache_dir("miaudit")
    folder = Path(cache) / "configs" / digest.hexdigest()[:16]
    for name, data in contents.items():
        if not (folder / name).is_file():
            atomic_write_bytes(folder / name, data)
    return folder


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate one study TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"study config {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"study config {path} is not valid TOML: {exc}") from None
    try:
        return parse_config(StudyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_studies(ids: list[str] | None = None, *, config_dir: str | Path | None = None) -> list[StudyConfig]:
    """Load the studies with the given ids (None: all) from ``config_dir`` (default: the shipped ones)."""
    directory = Path(config_dir) if config_dir else default_config_dir()
    if not directory.is_dir():
        raise ConfigError(f"config folder {directory} does not exist")
    studies = {s.id: s for s in (load_study(p) for p in sorted(directory.glob("study*.toml")))}
    if not studies:
        raise ConfigError(f"no study*.toml files in {directory}")
    if ids is None:
        return sorted(studies.values(), key=lambda s: (len(s.id), s.id))
    missing = [i for i in ids if i not in studies]
    if missing:
        raise ConfigError(f"unknown study id(s) {', '.join(missing)}; available: {', '.join(sorted(studies))}")
    return [studies[i] for i in ids]

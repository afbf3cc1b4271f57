"""What a model is and how it is trained: frozen, validated specifications.

A :class:`ModelSpec` fixes the network (a multilayer perceptron: layer sizes and dropout); a
:class:`TrainSpec` fixes the recipe (optimiser, epochs, batch size, defences, precision, engine).
Together with a training set and a seed they determine a trained model completely, which is what
caching and the batched engine rely on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from miaudit.errors import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "ARCHITECTURES",
    "DEVICES",
    "ENGINES",
    "OPTIONAL_DEFAULTS",
    "PRECISIONS",
    "ModelSpec",
    "TrainSpec",
    "spec_hash",
]

#: Named architectures of the seed study: hidden layer widths and dropout rate.
#: ``simple`` is the seed's network (784-128-10); ``dense`` has more and wider layers and is made
#: to overfit; ``dropout`` is ``dense`` with dropout 0.5 after every hidden layer.
ARCHITECTURES: dict[str, tuple[tuple[int, ...], float]] = {
    "simple": ((128,), 0.0),
    "dense": ((512, 256, 128), 0.0),
    "dropout": ((512, 256, 128), 0.5),
}
PRECISIONS = ("auto", "f32", "bf16")
ENGINES = ("auto", "batched", "loop")
#: Where the batched engine computes (``cuda`` and ``mps`` where PyTorch has them; see
#: :func:`miaudit.training.hardware.resolve_device`)
DEVICES = ("cpu", "cuda", "mps")
#: Opacus's privacy accountants that DP-SGD recipes may name (``dp_accountant``)
ACCOUNTANTS = ("rdp", "prv")


def _check_choice(name: str, value: object, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return str(value)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_float(name: str, value: object, *, low: float, high: float, high_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
    if ok and high_open and value == high:
        ok = False
    if not ok:
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name} must be a number in [{low}, {high}{bracket}; got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A multilayer perceptron with ReLU hidden layers and a softmax output.

    Parameters
    ----------
    n_features : int
        Input width (784 for Fashion-MNIST).
    n_classes : int
        Output width.
    hidden : tuple of int
        Widths of the hidden layers, input side first.
    dropout : float
        Dropout rate applied after every hidden layer during training (0 disables it).
    name : str
        A label for tables ("simple", "dense", "dropout" or anything).
    """

    n_features: int
    n_classes: int
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        _check_int("n_features", self.n_features, minimum=1)
        _check_int("n_classes", self.n_classes, minimum=2)
        if not isinstance(self.hidden, tuple):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        for i, width in enumerate(self.hidden):
            _check_int(f"hidden[{i}]", width, minimum=1)
        _check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)

    @classmethod
    def from_arch(cls, arch: str, *, n_features: int, n_classes: int) -> ModelSpec:
        """Build one of the named :data:`ARCHITECTURES`."""
        _check_choice("arch", arch, list(ARCHITECTURES))
        hidden, dropout = ARCHITECTURES[arch]
        return cls(n_features=n_features, n_classes=n_classes, hidden=hidden, dropout=dropout, name=arch)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(n_features, *hidden, n_classes)."""
        return (self.n_features, *self.hidden, self.n_classes)

    @property
    def n_parameters(self) -> int:
        s = self.layer_sizes
        return sum(a * b + b for a, b in pairwise(s))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class TrainSpec:
    """A training recipe: Adam on cross-entropy with minibatches, defences as arguments.

    Parameters
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Minibatch size; the last minibatch of an epoch may be smaller. With DP-SGD, the expected
        batch size of Poisson sampling (see :mod:`miaudit.training.dp`).
    lr : float
        Adam learning rate.
    weight_decay : float
        L2 penalty added to the loss gradient (Adam's ``weight_decay``), a defence.
    precision : {"auto", "f32", "bf16"}
        Arithmetic of the batched engine; ``auto`` uses bf16 only on CPUs with native bf16 units.
        DP-SGD: ``auto`` (and ``bf16``) trains one-hidden-layer networks on the fused path in bf16 where
        the CPU has AVX512-BF16 (per-example clipping exact for the rounded gradients), everything else
        in float32 on the stacked path (``bf16`` there is an error); ``f32`` always the stacked path.
    engine : {"auto", "batched", "loop"}
        ``batched`` trains many models at once, ``loop`` one at a time with a plain PyTorch loop;
        ``auto`` picks the batched engine whenever it supports the recipe.
    dp_epsilon : float, optional
        DP-SGD with the noise calibrated to spend this epsilon (at ``dp_delta``) over the whole
        training (Opacus's ``get_noise_multiplier``). Give this or ``dp_noise_multiplier``, not both.
    dp_noise_multiplier : float, optional
        DP-SGD with this noise multiplier sigma (noise std ``sigma * max_grad_norm`` on the summed
        clipped gradients). 0 is DP-SGD's clipping and sampling without noise (epsilon infinite).
    dp_delta : float, optional
        The delta of the privacy guarantee, in (0, 1); default ``1 / n`` for a model trained on ``n``
        records.
    max_grad_norm : float
        DP-SGD's per-example gradient clipping bound C (> 0).
    dp_accountant : {"rdp", "prv"}
        Opacus's accountant that calibrates the noise and accounts the epsilon spent.
    label_smoothing : float
        A defence in [0, 1): the loss's target distribution is ``(1 - a) * onehot + a / n_classes``.
    early_stopping_patience : int, optional
        A defence: hold out ``validation_fraction`` of each model's own training set, evaluate the
        validation loss at every epoch end, stop after this many epochs (>= 1) without a new lowest
        loss (at most ``epochs``) and keep the weights of the epoch with the lowest loss. None: off.
        Trained by the plain loop (``auto`` chooses it; ``batched`` is an error); not with DP-SGD.
        See :mod:`miaudit.training.early_stopping`.
    validation_fraction : float
        The share of each model's training set held out for early stopping, in (0, 1); the records
        are chosen from the model's seed. Unused while early stopping is off.
    device : {"cpu", "cuda", "mps"}
        Where the batched engine computes. Minibatches, dropout masks and DP-SGD noise are drawn on the
        CPU from the model's seed on every device, so a model's numbers agree across devices to float
        rounding. Recipes the plain loop trains (early stopping) train on the CPU; engine ``loop`` with
        another device is an error.

    DP-SGD is on when ``dp_epsilon`` or ``dp_noise_multiplier`` is set. :meth:`to_dict` (the cache
    key of a recipe) omits every DP, label-smoothing and early-stopping field at its default, and the
    DP-only fields (``dp_delta``, ``max_grad_norm``, ``dp_accountant``) while DP-SGD is off, and
    ``validation_fraction`` while early stopping is off: they do not change such a model.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "auto"
    engine: str = "auto"
    dp_epsilon: float | None = None
    dp_noise_multiplier: float | None = None
    dp_delta: float | None = None
    max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    validation_fraction: float = 0.1
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_float("lr", self.lr, low=1e-12, high=10.0)
        _check_float("weight_decay", self.weight_decay, low=0.0, high=10.0)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("engine", self.engine, ENGINES)
        _check_choice("device", self.device, DEVICES)
        if self.device != "cpu" and self.engine == "loop":
            raise ConfigError(
                f"the plain loop (engine 'loop') trains on the CPU; device {self.device!r} needs engine 'auto' or "
                "'batched', or use device 'cpu'"
            )
        if self.dp_epsilon is not None:
            _check_float("dp_epsilon", self.dp_epsilon, low=1e-6, high=1e6)
        if self.dp_noise_multiplier is not None:
            _check_float("dp_noise_multiplier", self.dp_noise_multiplier, low=0.0, high=1e6)
        if self.dp_epsilon is not None and self.dp_noise_multiplier is not None:
            raise ConfigError(
                "give dp_epsilon (noise calibrated to a target epsilon) or dp_noise_multiplier (noise set directly), "
                f"not both; got dp_epsilon={self.dp_epsilon!r}, dp_noise_multiplier={self.dp_noise_multiplier!r}"
            )
        if self.dp_delta is not None:
            _check_float("dp_delta", self.dp_delta, low=0.0, high=1.0, high_open=True)
            if self.dp_delta == 0:
                raise ConfigError("dp_delta must be a number in (0, 1), or None for 1/n; got 0")
        _check_float("max_grad_norm", self.max_grad_norm, low=0.0, high=1e6)
        if self.max_grad_norm == 0 or not math.isfinite(self.max_grad_norm):
            raise ConfigError(f"max_grad_norm must be a positive number; got {self.max_grad_norm!r}")
        _check_choice("dp_accountant", self.dp_accountant, ACCOUNTANTS)
        _check_float("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, minimum=1)
        v = self.validation_fraction
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise ConfigError(f"validation_fraction must be a number in (0, 1); got {v!r}")
        for name in (
            "dp_epsilon",
            "dp_noise_multiplier",
            "dp_delta",
            "max_grad_norm",
            "label_smoothing",
            "validation_fraction",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))  # 1 and 1.0 are one recipe (and one cache key)
        if self.early_stopping and self.dp:
            raise ConfigError(
                "early_stopping_patience cannot be combined with DP-SGD (dp_epsilon or dp_noise_multiplier): the "
                "validation records would steer training outside the privacy accounting; choose one of the two"
            )
        if self.early_stopping and self.engine == "batched":
            raise ConfigError(
                "early_stopping_patience needs the plain loop: engine 'batched' does not evaluate a validation "
                "split; use engine 'auto' (which trains early-stopping recipes with the loop) or 'loop'"
            )

    @property
    def dp(self) -> bool:
        """Whether the recipe trains with DP-SGD (``dp_epsilon`` or ``dp_noise_multiplier`` set)."""
        return self.dp_epsilon is not None or self.dp_noise_multiplier is not None

    @property
    def early_stopping(self) -> bool:
        """Whether the recipe stops early on a validation split (``early_stopping_patience`` set)."""
        return self.early_stopping_patience is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name, default in OPTIONAL_DEFAULTS.items():
            unused = (name in _DP_ONLY and not self.dp) or (name in _ES_ONLY and not self.early_stopping)
            if d[name] == default or unused:
                del d[name]
        if self.device == "cpu" or self.early_stopping:  # the plain loop (early stopping) trains on the CPU
            del d["device"]
        return d


#: fields that :meth:`TrainSpec.to_dict` omits at their defaults (so older recipes keep their cache keys)
OPTIONAL_DEFAULTS: dict[str, object] = {
    "dp_epsilon": None,
    "dp_noise_multiplier": None,
    "dp_delta": None,
    "max_grad_norm": 1.0,
    "dp_accountant": "rdp",
    "label_smoothing": 0.0,
    "early_stopping_patience": None,
    "validation_fraction": 0.1,
}
#: fields that change nothing without DP-SGD (omitted from :meth:`TrainSpec.to_dict` while it is off)
_DP_ONLY = frozenset({"dp_delta", "max_grad_norm", "dp_accountant"})
#: fields that change nothing without early stopping
_ES_ONLY = frozenset({"validation_fraction"})


def spec_hash(*parts: object) -> str:
    """A short stable hash of JSON-able parts (specs via ``to_dict``), for cache keys."""

    def default(o: object) -> object:
        if hasattr(o, "to_dict"):
            return o.to_dict()
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"cannot hash {type(o).__name__}")

    blob = json.dumps(parts, sort_keys=True, default=default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

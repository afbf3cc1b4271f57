"""What a model is and how it is trained: frozen, validated specifications.

A :class:`ModelSpec` fixes the network (a multilayer perceptron: layer sizes and dropout); a
:class:`TrainSpec` fixes the recipe (optimiser, epochs, batch size, defences, precision, engine).
Together with a training set and a seed they determine a trained model completely, which is what
caching and the batched engine rely on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from miaudit.errors import ConfigError

__all__ = ["ARCHITECTURES", "ENGINES", "PRECISIONS", "ModelSpec", "TrainSpec", "spec_hash"]

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
        Minibatch size; the last minibatch of an epoch may be smaller.
    lr : float
        Adam learning rate.
    weight_decay : float
        L2 penalty added to the loss gradient (Adam's ``weight_decay``), a defence.
    precision : {"auto", "f32", "bf16"}
        Arithmetic of the batched engine; ``auto`` uses bf16 only on CPUs with native bf16 units.
    engine : {"auto", "batched", "loop"}
        ``batched`` trains many models at once, ``loop`` one at a time with a plain PyTorch loop;
        ``auto`` picks the batched engine whenever it supports the recipe.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "auto"
    engine: str = "auto"

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_float("lr", self.lr, low=1e-12, high=10.0)
        _check_float("weight_decay", self.weight_decay, low=0.0, high=10.0)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("engine", self.engine, ENGINES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

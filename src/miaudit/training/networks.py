"""Multilayer perceptrons: trained weights as plain arrays, and the forward pass.

Both training engines (the plain loop and the batched engine) produce :class:`MLPParams`: the
weights of one trained network, stored as ``(fan_in, fan_out)`` matrices so that K of them stack
into the ``(K, fan_in, fan_out)`` tensors of the batched engine. Inference is always in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn

from miaudit._frozen import FrozenMemo
from miaudit._io import atomic_path
from miaudit.errors import DataError
from miaudit.training.dp import PrivacyRecord
from miaudit.training.specs import ModelSpec

__all__ = [
    "MLPParams",
    "build_module",
    "init_params",
    "mlp_logits",
    "params_from_module",
]

_PREDICT_CHUNK = 8192
#: models' logits on read-only records (a target's evaluated records, asked again by every attack on it)
_LOGITS = FrozenMemo(max_bytes=64 << 20)


def mlp_logits(X: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of an MLP with ReLU hidden layers (no dropout: inference).

    Works for one model (weights ``(fan_in, fan_out)``, X ``(n, d)``) and for K stacked models
    (weights ``(K, fan_in, fan_out)``, biases ``(K, 1, fan_out)``, X ``(n, d)`` or ``(K, n, d)``).
    """
    h = X
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = torch.matmul(h, w) + b
        if i < last:
            h = torch.relu(h)
    return h


def shared_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory, for reading only.

    Cached datasets and loaded weights are read-only arrays; PyTorch warns when it wraps one because
    it cannot stop writes. Nothing here writes to these tensors, so the warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


@dataclass(frozen=True, eq=False)
class MLPParams:
    """The weights of one trained MLP.

    Attributes
    ----------
    spec : ModelSpec
    weights : tuple of ndarray
        ``weights[l]`` has shape (fan_in, fan_out), float32.
    biases : tuple of ndarray
        ``biases[l]`` has shape (fan_out,), float32.
    privacy : PrivacyRecord, optional
        For a model trained with DP-SGD, the privacy its training spent (epsilon, delta, noise,
        sampling rate, steps, accountant); None without DP-SGD.

    The weight and bias arrays are made read-only: a model does not change once trained, and its outputs
    on read-only records are remembered (:meth:`logits`).
    """

    spec: ModelSpec
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    privacy: PrivacyRecord | None = None

    def __post_init__(self) -> None:
        sizes = self.spec.layer_sizes
        if len(self.weights) != len(sizes) - 1 or len(self.biases) != len(sizes) - 1:
            raise DataError(f"expected {len(sizes) - 1} layers for {sizes}, got {len(self.weights)}")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.shape != (sizes[i], sizes[i + 1]) or b.shape != (sizes[i + 1],):
                raise DataError(
                    f"layer {i}: expected weight {(sizes[i], sizes[i + 1])} and bias {(sizes[i + 1],)}, "
                    f"got {w.shape} and {b.shape}"
                )
        for a in (*self.weights, *self.biases):
            a.flags.writeable = False

    def logits(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): pre-softmax outputs.

        Computed once per read-only ``X`` (:class:`~miaudit._frozen.FrozenMemo`; a fresh copy each call):
        a target is queried on the same records by every attack of an experiment.
        """
        X = np.asarray(X)
        arrays = (X, *self.weights, *self.biases)
        return _LOGITS.get(arrays, "logits", lambda: self._logits(X), owners=(self,)).copy()

    def _logits(self, X: np.ndarray) -> np.ndarray:
        ws = [shared_tensor(np.ascontiguousarray(w, dtype=np.float32)) for w in self.weights]
        bs = [shared_tensor(np.ascontiguousarray(b, dtype=np.float32)) for b in self.biases]
        out = np.empty((len(X), self.spec.n_classes), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(X), _PREDICT_CHUNK):
                xb = shared_tensor(np.ascontiguousarray(X[start : start + _PREDICT_CHUNK], dtype=np.float32))
                out[start : start + len(xb)] = mlp_logits(xb, ws, bs).numpy()
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_samples, n_classes): softmax probabilities (float64, rows sum to 1)."""
        z = self.logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.logits(X).argmax(axis=1) == y)) if len(y) else float("nan")

    def save(self, path: str | Path) -> None:
        """Save to a safetensors file (atomic: temp file then rename; parent folders are created)."""
        import json

        from safetensors.numpy import save_file

        tensors = {f"w{i}": np.ascontiguousarray(w) for i, w in enumerate(self.weights)}
        tensors.update({f"b{i}": np.ascontiguousarray(b) for i, b in enumerate(self.biases)})
        metadata = {"spec": json.dumps(self.spec.to_dict())}
        if self.privacy is not None:
            metadata["privacy"] = json.dumps(self.privacy.to_dict())
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> MLPParams:
        import json

        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                d = json.loads(meta["spec"])
                d["hidden"] = tuple(d["hidden"])
                spec = ModelSpec(**d)
                n = len(spec.layer_sizes) - 1
                weights = tuple(f.get_tensor(f"w{i}") for i in range(n))
                biases = tuple(f.get_tensor(f"b{i}") for i in range(n))
                privacy = PrivacyRecord.from_dict(json.loads(meta["privacy"])) if "privacy" in meta else None
        except (OSError, KeyError, ValueError, Exception) as exc:  # safetensors raises its own types
            raise DataError(f"cannot read model weights from {path}: {exc}; delete the file to retrain") from exc
        return cls(spec=spec, weights=weights, biases=biases, privacy=privacy)


def build_module(spec: ModelSpec) -> nn.Sequential:
    """A torch module with the architecture of ``spec`` (Linear, ReLU, Dropout, ..., Linear)."""
    layers: list[nn.Module] = []
    sizes = spec.layer_sizes
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if spec.dropout > 0:
                layers.append(nn.Dropout(spec.dropout))
    return nn.Sequential(*layers)


def params_from_module(module: nn.Sequential, spec: ModelSpec) -> MLPParams:
    """Extract :class:`MLPParams` from a module made by :func:`build_module`."""
    linears = [m for m in module if isinstance(m, nn.Linear)]
    weights = tuple(m.weight.detach().float().T.contiguous().numpy().copy() for m in linears)
    biases = tuple(m.bias.detach().float().numpy().copy() for m in linears)
    return MLPParams(spec=spec, weights=weights, biases=biases)


def init_params(spec: ModelSpec, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Initial weights ``(fan_in, fan_out)`` and biases ``(fan_out,)`` drawn from ``generator``.

    The distribution is PyTorch's default for ``nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weights and biases. Both engines use this function, so a model's seed fixes its initialisation
    whichever engine trains it.
    """
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []
    sizes = spec.layer_sizes
    for fan_in, fan_out in pairwise(sizes):
        bound = 1.0 / float(np.sqrt(fan_in))
        weights.append((torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound)
        biases.append((torch.rand(fan_out, generator=generator) * 2 - 1) * bound)
    return weights, biases

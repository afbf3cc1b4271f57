"""Inference for many models at once: every model's probabilities on shared records.

The first layer of a group of models is one matrix product ``X @ [W_1 ... W_k]`` (X is shared);
the later layers are batched matrix products. Blocks of rows run on the executor's workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from miaudit.errors import DataError
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.networks import MLPParams, shared_tensor

__all__ = ["predict_proba_stacked"]


def predict_proba_stacked(
    models: Sequence[MLPParams],
    X: np.ndarray,
    *,
    dtype: type = np.float64,
    max_floats: int = 2**23,
    executor: Executor | None = None,
) -> np.ndarray:
    """Every model's softmax probabilities on X, computed with batched matrix products.

    The first layer of a group of models is one matrix product ``X @ [W_1 ... W_k]`` (X is
    shared); the later layers are batched. Logits are float32 (as :meth:`MLPParams.logits`), the
    softmax is computed in float64. Blocks of rows run on the executor's workers.

    Parameters
    ----------
    models : sequence of MLPParams
        Models of one architecture.
    X : ndarray of shape (n_samples, n_features)
    dtype : numpy dtype
        Of the result (float64 or float32).
    max_floats : int
        Bound on the size of one block's activations, in float32 values.
    executor : Executor, optional
        Default :class:`~miaudit.training.executors.InProcessExecutor` on all cores.

    Returns
    -------
    ndarray of shape (n_models, n_samples, n_classes)
    """
    if not models:
        return np.empty((0, len(X), 0), dtype=dtype)
    spec = models[0].spec
    if any(m.spec.layer_sizes != spec.layer_sizes for m in models):
        raise DataError("predict_proba_stacked needs models of one architecture; group models by spec first")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != spec.n_features:
        raise DataError(f"X must have shape (n_samples, {spec.n_features}); got {X.shape}")
    K, n = len(models), len(X)
    out: np.ndarray = np.empty((K, n, spec.n_classes), dtype=dtype)
    width = max(spec.layer_sizes[1:])
    k_step = max(1, min(K, max_floats // (256 * width)))
    n_layers = len(spec.layer_sizes) - 1
    executor = executor if executor is not None else InProcessExecutor()
    jobs = []
    for k0 in range(0, K, k_step):
        group = models[k0 : k0 + k_step]
        w = [torch.from_numpy(np.stack([m.weights[i] for m in group])) for i in range(n_layers)]
        b = [torch.from_numpy(np.stack([m.biases[i] for m in group])).unsqueeze(1) for i in range(n_layers)]
        w[0] = w[0].permute(1, 0, 2).reshape(spec.n_features, -1)  # (d0, k * width_1)
        b[0] = b[0].reshape(-1)
        rows = max(1, min(max_floats // (len(group) * width), -(-n // executor.n_workers)))
        jobs += [(X, out, k0, r0, rows, w, b) for r0 in range(0, n, rows)]
    executor.map(_predict_block, jobs)
    return out


def _predict_block(job: tuple) -> None:
    X, out, k0, r0, rows, w, b = job
    with torch.inference_mode():
        xb = shared_tensor(np.ascontiguousarray(X[r0 : r0 + rows], dtype=np.float32))
        kg = w[1].shape[0] if len(w) > 1 else b[0].numel() // out.shape[2]
        h = torch.addmm(b[0], xb, w[0])  # (rows, kg * width): layer 1 of kg models at once
        h = h.view(len(xb), kg, -1).transpose(0, 1)
        for i in range(1, len(w)):
            h = torch.baddbmm(b[i], h.relu_(), w[i])
        # softmax along a non-contiguous axis: PyTorch is slow along a short last axis
        z = torch.softmax(h.transpose(1, 2).contiguous().double(), dim=1)
        out[k0 : k0 + kg, r0 : r0 + len(xb)] = z.transpose(1, 2).numpy()

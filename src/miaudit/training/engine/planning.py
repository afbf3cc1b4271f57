"""Memory planning: how much one model needs, and how the K models are cut into chunks.

A chunk is trained by one worker as one stack (or, on the fused path, one model after another);
``n_workers`` chunks run at once, so each may use ``(budget - shared) / n_workers`` bytes. Models
with similar step counts go together, because a stack shrinks as its models finish.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from miaudit.training.dp import DPSchedule
from miaudit.training.hardware import available_memory_bytes
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = [
    "BLOCK_STEPS",
    "DEFAULT_BUDGET_CAP",
    "DEFAULT_BUDGET_FRACTION",
    "MAX_CHUNK",
    "ChunkJob",
    "bytes_per_model",
    "default_memory_budget",
    "plan_chunks",
]

logger = logging.getLogger(__name__)

#: Most models per chunk (one chunk per worker thread at a time) under the fixed rules
#: (``MIAUDIT_TUNING=off``); otherwise :mod:`miaudit.training.tuning` measures the best chunk size for
#: the workload. On a 2-core Xeon with AMX, chunks of 8 to 32 cost within noise of each other per
#: model (Python overhead per step falls, cache misses rise), 16 slightly least; on an AMD EPYC
#: without AMX, f32 was fastest at 4. Several chunks per worker also balance the load when other
#: processes share the cores.
MAX_CHUNK = 16
#: Default memory budget: this fraction of MemAvailable, at most DEFAULT_BUDGET_CAP bytes.
DEFAULT_BUDGET_FRACTION = 0.5
DEFAULT_BUDGET_CAP = 16 * 2**30
#: The minibatch schedule (and the fused path's kernel calls) go this many steps at a time.
BLOCK_STEPS = 32


@dataclass(frozen=True, eq=False)
class ChunkJob:
    """Everything needed to train one chunk of models (picklable: tensors, arrays, frozen specs).

    Attributes
    ----------
    pool : Tensor of shape (n_pool, width)
        The records some model trains on, in the compute dtype: the features, a column of ones
        (layer 0's bias input), then zero columns up to the fused path's padded width. On the CPU, or
        already on ``device`` (in-process executors); the chunk moves it there if not.
    labels : Tensor of shape (n_pool,), int64
        Beside ``pool``.
    train_sets : tuple of ndarray of shape (n_train_k,)
        Each model's rows of ``pool``.
    seeds : tuple of int
        One per model.
    positions : tuple of int
        The models' positions in the caller's list (for results and error messages).
    model, train : ModelSpec, TrainSpec
    precision : {"f32", "bf16"}
    fused : bool
        Train on the compiled one-hidden-layer steps (:mod:`miaudit.training.engine.fused`).
    adam : {"compiled", "torch"}
        The stacked path's Adam step: the compiled one of ``_native/adam.c`` (where it builds; else
        PyTorch's) or PyTorch's fused Adam (chosen by :mod:`miaudit.training.tuning`).
    dp : tuple of DPSchedule, optional
        With DP-SGD, each model's schedule (sampling rate, steps, noise), resolved before the chunk
        is sent (workers need no accountant); None without DP-SGD.
    device : str
        Where the chunk computes (``train.device``, checked by the caller): ``cpu``, ``cuda``, ``mps``.
    """

    pool: torch.Tensor
    labels: torch.Tensor
    train_sets: tuple[np.ndarray, ...]
    seeds: tuple[int, ...]
    positions: tuple[int, ...]
    model: ModelSpec
    train: TrainSpec
    precision: str
    fused: bool = False
    dp: tuple[DPSchedule, ...] | None = None
    adam: str = "compiled"
    device: str = "cpu"


def bytes_per_model(spec: ModelSpec, train: TrainSpec, precision: str) -> int:
    """Estimated peak memory of one model inside a chunk, in bytes."""
    cb = 2 if precision == "bf16" else 4
    n = spec.n_parameters
    state = n * 4 * 4 + (n * 2 * 2 if precision == "bf16" else 0)  # P, G, m, v (+ bf16 copies)
    sizes = spec.layer_sizes
    # DP-SGD: Poisson batches are padded to a block's largest (about 1.5 x the expected size at most),
    # with a noise buffer per model and a few step plans (one per padded width) alive at once
    batch = train.batch_size * 3 // 2 + 8 if train.dp else train.batch_size
    acts = batch * ((sizes[0] + 1) * cb + sum(d * (2 * cb + 4) for d in sizes[1:])) * (3 if train.dp else 1)
    block = BLOCK_STEPS * batch * (12 + 4 * spec.n_classes)
    masks = BLOCK_STEPS * batch * sum(spec.hidden) * (4 + cb) if spec.dropout > 0 else 0
    return int(1.25 * (state + acts + block + masks + n * 4 + (n * 4 if train.dp else 0)))


def default_memory_budget(device: torch.device | None = None) -> int:
    """Half of MemAvailable, at most 16 GiB (4 GiB where MemAvailable cannot be read).

    On a CUDA ``device``: half of the GPU's free memory, at most 16 GiB. (Apple's GPUs share the
    machine's memory: MemAvailable's rule.)
    """
    if device is not None and device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(min(DEFAULT_BUDGET_CAP, DEFAULT_BUDGET_FRACTION * free))
    avail = available_memory_bytes()
    if avail is None:
        return 4 * 2**30
    return int(min(DEFAULT_BUDGET_CAP, DEFAULT_BUDGET_FRACTION * avail))


def plan_chunks(
    steps: Sequence[int],
    *,
    per_model_bytes: int,
    shared_bytes: int,
    budget_bytes: int,
    n_workers: int,
    max_chunk: int = MAX_CHUNK,
) -> list[list[int]]:
    """Group models into chunks that fit the memory budget and keep every worker busy.

    Models with similar step counts go together (a chunk shrinks as its models finish).
    ``n_workers`` chunks run at once, so each may use ``(budget - shared) / n_workers``. The number of
    chunks is a multiple of ``n_workers`` where there are enough models, so that the workers finish together.

    Parameters
    ----------
    steps : sequence of int
        Each model's number of optimisation steps.

    Returns
    -------
    list of list of int
        Model positions, each chunk sorted by steps.

    >>> plan_chunks([5, 5, 5, 5], per_model_bytes=10, shared_bytes=0, budget_bytes=1000, n_workers=2)
    [[0, 1], [2, 3]]
    >>> [len(c) for c in plan_chunks([5] * 18, per_model_bytes=1, shared_bytes=0, budget_bytes=10**9, n_workers=2,
    ...                              max_chunk=4)]
    [3, 3, 3, 3, 3, 3]
    """
    K = len(steps)
    if K == 0:
        return []
    room = budget_bytes - shared_bytes
    by_memory = room // (per_model_bytes * max(1, min(n_workers, K)))
    if by_memory < 1:
        logger.warning(
            "memory budget %.1f MiB is below one model's need (%.1f MiB + %.1f MiB shared); training one "
            "model at a time",
            budget_bytes / 2**20,
            per_model_bytes / 2**20,
            shared_bytes / 2**20,
        )
        by_memory = 1
    size = max(1, min(max_chunk, by_memory))
    n_chunks = max(math.ceil(K / size), min(K, n_workers))
    # a multiple of the workers (chunks one model smaller if need be): 18 models in chunks of at most 4 are
    # 6 chunks of 3, three per worker, not 5 chunks, three on one worker while the other waits out a whole chunk
    n_chunks = min(K, math.ceil(n_chunks / n_workers) * n_workers) if n_workers > 1 else n_chunks
    order = sorted(range(K), key=lambda k: steps[k])
    bounds = np.linspace(0, K, n_chunks + 1).round().astype(int)
    return [order[a:b] for a, b in itertools.pairwise(bounds.tolist()) if b > a]

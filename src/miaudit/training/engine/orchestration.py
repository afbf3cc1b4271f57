"""Orchestration: validate the request, choose the path, build the shared pool, plan chunks, run them.

The path (precision for ``auto``, fused or stacked, the Adam step, models per chunk) is chosen once
per workload by :func:`miaudit.training.tuning.choose_path`: measured on this machine and cached, or
the fixed rules with ``MIAUDIT_TUNING=off`` and for DP-SGD. Only the records some model trains on go
into the pool, in the compute dtype, with a column of ones (layer 0's bias input) and, on the fused
path, zero columns up to a multiple of 32. Each chunk is a :class:`~.planning.ChunkJob` run by
:func:`train_chunk` on one of the executor's workers, on the fused path (:mod:`.fused`) or the
stacked path (:mod:`.stacked`).

On a GPU (``train.device``, checked first by :func:`~miaudit.training.hardware.resolve_device`) the
pool is moved there once for in-process executors (other executors send it to their workers as it is
and each chunk moves it), the memory budget is the GPU's, and chunks are as large as it allows (up to
:data:`~miaudit.training.tuning.DEVICE_MAX_CHUNK` models), since one large stack uses a GPU best.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from miaudit.errors import ConfigError, DataError
from miaudit.seeding import check_seed
from miaudit.training.dp import dp_schedule, privacy_record
from miaudit.training.engine.dp_stacked import train_stacked_dp
from miaudit.training.engine.fused import padded_width, train_fused, train_fused_dp
from miaudit.training.engine.inference import predict_proba_stacked
from miaudit.training.engine.planning import (
    ChunkJob,
    bytes_per_model,
    default_memory_budget,
    plan_chunks,
)
from miaudit.training.engine.stack import layer_layout
from miaudit.training.engine.stacked import train_stacked
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.hardware import flush_denormals, resolve_device, resolve_precision
from miaudit.training.networks import MLPParams, shared_tensor
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.tuning import choose_path, path_for

__all__ = ["TrainedBatch", "train_batched", "train_chunk", "train_many"]

logger = logging.getLogger(__name__)


def train_batched(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    model: ModelSpec,
    train: TrainSpec,
    progress: Callable[[int, int], None] | None = None,
    memory_budget_bytes: int | None = None,
    executor: Executor | None = None,
) -> list[MLPParams]:
    """Train one MLP per training set, K at a time, with batched matrix products.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_features), float32
        The shared pool of records (validated by the caller).
    y : ndarray of shape (n_records,), int64
        Labels in [0, n_classes).
    train_sets : sequence of ndarray of shape (n_train_k,)
        For each model, the indices into X of its training set; sizes may differ (see the module
        docstring: short batches are padded with zero-weight rows, no model gets extra steps).
    seeds : sequence of int
        One seed per model: it fixes the initialisation, minibatch order and dropout masks.
    model, train : ModelSpec, TrainSpec
        Architecture and recipe (Adam with ``train.lr`` and ``train.weight_decay`` added to the
        gradient like ``torch.optim.Adam``; dropout ``model.dropout`` after every hidden ReLU; label
        smoothing; DP-SGD when ``train.dp``: in bf16 on the fused path where it applies and the CPU has
        bf16 units, else in float32 on the stacked path; see :mod:`.fused` and :mod:`.dp_stacked`).
    progress : callable, optional
        ``progress(n_done, n_total)`` after each finished chunk of models.
    memory_budget_bytes : int, optional
        Memory the engine may use; models are trained in chunks that fit. Default: half of the
        available memory, at most 16 GiB.
    executor : Executor, optional
        Runs the chunks; default :class:`~miaudit.training.executors.InProcessExecutor` on all cores.

    Returns
    -------
    list of MLPParams
        One per training set, in order; with DP-SGD each carries its
        :class:`~miaudit.training.dp.PrivacyRecord`.
    """
    models, _ = _run(
        X,
        y,
        train_sets,
        seeds=seeds,
        model=model,
        train=train,
        progress=progress,
        memory_budget_bytes=memory_budget_bytes,
        executor=executor,
    )
    return models


@dataclass(frozen=True, eq=False)
class TrainedBatch:
    """K trained models with what attacks need from them.

    Attributes
    ----------
    models : tuple of MLPParams
    train_accuracy : ndarray of shape (n_models,)
        Each model's accuracy on its own training set.
    precision : {"f32", "bf16"}
        The arithmetic used for training.
    seconds : float
        Wall time of training.
    """

    models: tuple[MLPParams, ...]
    train_accuracy: np.ndarray
    precision: str
    seconds: float

    def __len__(self) -> int:
        return len(self.models)

    def predict_proba(self, X: np.ndarray, *, dtype: type = np.float64) -> np.ndarray:
        """ndarray of shape (n_models, n_samples, n_classes): every model's probabilities on X."""
        return predict_proba_stacked(self.models, X, dtype=dtype)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """ndarray of shape (n_models,): each model's accuracy on (X, y)."""
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise DataError(f"y must have shape ({len(X)},) to match X; got {y.shape}")
        return (predict_proba_stacked(self.models, X, dtype=np.float32).argmax(axis=2) == y).mean(axis=1)


def train_many(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    model: ModelSpec,
    train: TrainSpec,
    progress: Callable[[int, int], None] | None = None,
    memory_budget_bytes: int | None = None,
    executor: Executor | None = None,
) -> TrainedBatch:
    """Like :func:`train_batched`, returning a :class:`TrainedBatch` (models, train accuracy, timing)."""
    t0 = time.perf_counter()
    models, precision = _run(
        X,
        y,
        train_sets,
        seeds=seeds,
        model=model,
        train=train,
        progress=progress,
        memory_budget_bytes=memory_budget_bytes,
        executor=executor,
    )
    seconds = time.perf_counter() - t0
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    acc = np.array([_own_accuracy(m, X, y, np.asarray(s)) for m, s in zip(models, train_sets, strict=True)])
    return TrainedBatch(models=tuple(models), train_accuracy=acc, precision=precision, seconds=seconds)


def _run(
    X: np.ndarray,
    y: np.ndarray,
    train_sets: Sequence[np.ndarray],
    *,
    seeds: Sequence[int],
    model: ModelSpec,
    train: TrainSpec,
    progress: Callable[[int, int], None] | None,
    memory_budget_bytes: int | None,
    executor: Executor | None,
) -> tuple[list[MLPParams], str]:
    if train.early_stopping:  # only the loop evaluates a validation split; never ignore the defence silently
        raise ConfigError(
            "the batched engine does not run early stopping (early_stopping_patience is set); train with "
            "miaudit.training.train_models, which trains such recipes with the plain loop"
        )
    device = resolve_device(train.device)  # a GPU that is not there fails here, before any work
    X, y, sets, seeds_ = _validate(X, y, train_sets, seeds, model)
    if memory_budget_bytes is not None and (
        isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int) or memory_budget_bytes <= 0
    ):
        raise ValueError(f"memory_budget_bytes must be a positive integer or None; got {memory_budget_bytes!r}")
    K = len(sets)
    if K == 0:
        return [], "f32" if train.dp else resolve_precision(train.precision)
    # the path, chosen once per workload and process (timed at first use on this machine, then cached)
    if train.dp:  # the fixed rules: bf16 on the fused path where it applies, else float32 on the stacked one
        choice = choose_path(model=model, train=train)
        precision = choice.precision
        if train.precision == "bf16" and precision != "bf16":
            raise ConfigError(
                "precision 'bf16' with DP-SGD runs only on the fused one-hidden-layer path (one hidden layer of a "
                "width that is a multiple of 32, no dropout or label smoothing, a CPU with AVX512-BF16); this "
                "recipe takes the stacked path here, which computes DP-SGD in float32: use precision 'auto' or 'f32'"
            )
    else:
        precision = resolve_precision(train.precision, model=model, train=train)
        choice = path_for(model=model, train=train, precision=precision)
    # DP-SGD: every model's schedule (noise calibrated) and the privacy it will spend, accounted before
    # training so that a missing accountant or an unreachable epsilon fails at once
    schedules = [dp_schedule(train, len(s)) for s in sets] if train.dp else None
    records = [privacy_record(sch) for sch in schedules] if schedules is not None else None
    executor = executor if executor is not None else InProcessExecutor()
    # Only the records some model trains on go into the pool, in the compute dtype, with a ones column.
    used, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    local = np.split(inverse.astype(np.int64), np.cumsum([len(s) for s in sets])[:-1])
    fused = choice.fused
    dtype = torch.bfloat16 if layer_layout(model, precision)[0].lowp else torch.float32
    # features, then a column of ones (layer 0's bias), then zero columns up to the fused path's width
    width = padded_width(model.n_features) if fused else model.n_features + 1
    pool = torch.zeros(len(used), width, dtype=dtype)
    pool[:, : model.n_features] = torch.index_select(shared_tensor(X), 0, torch.from_numpy(used))
    pool[:, model.n_features] = 1.0
    labels = torch.from_numpy(np.ascontiguousarray(y[used], dtype=np.int64))
    if device.type != "cpu" and isinstance(executor, InProcessExecutor):
        pool, labels = pool.to(device), labels.to(device)  # once, shared by the chunks

    if schedules is not None:
        steps = [sch.steps for sch in schedules]
    else:
        steps = [train.epochs * math.ceil(len(s) / train.batch_size) for s in sets]
    budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget(device)
    chunks = plan_chunks(
        steps,
        per_model_bytes=bytes_per_model(model, train, precision),
        shared_bytes=pool.numel() * pool.element_size(),
        budget_bytes=budget,
        # on a GPU the chunks share one device: as few, as large stacks as fit (the workers still overlap them)
        n_workers=executor.n_workers if device.type == "cpu" else 1,
        max_chunk=choice.max_chunk,
    )
    jobs = [
        ChunkJob(
            pool=pool,
            labels=labels,
            train_sets=tuple(local[k] for k in c),
            seeds=tuple(seeds_[k] for k in c),
            positions=tuple(c),
            model=model,
            train=train,
            precision=precision,
            fused=fused,
            dp=tuple(schedules[k] for k in c) if schedules is not None else None,
            adam=choice.adam,
            device=train.device,
        )
        for c in chunks
    ]
    logger.info(
        "training %d %s models in %d chunks on %s (%s, %s path, %s Adam, at most %d per chunk: %s) with %r",
        K,
        model.name,
        len(jobs),
        device,
        precision,
        choice.path,
        choice.adam,
        choice.max_chunk,
        choice.source,
        executor,
    )
    done = 0

    def on_done(i: int, result: list[MLPParams]) -> None:
        nonlocal done
        done += len(result)
        if progress is not None:
            progress(done, K)

    results = executor.map(train_chunk, jobs, on_done=on_done)
    out: list[MLPParams | None] = [None] * K
    for job, res in zip(jobs, results, strict=True):
        for k, params in zip(job.positions, res, strict=True):
            out[k] = params if records is None else dataclasses.replace(params, privacy=records[k])
    return [p for p in out if p is not None], precision


def _validate(
    X: np.ndarray, y: np.ndarray, train_sets: Sequence[np.ndarray], seeds: Sequence[int], model: ModelSpec
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[int]]:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != model.n_features:
        raise DataError(f"X must have shape (n_samples, {model.n_features}) for this model; got {X.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise DataError(f"y must have shape ({len(X)},) to match X; got {y.shape}")
    if isinstance(train_sets, np.ndarray) and train_sets.ndim == 1:
        raise TypeError(
            "train_sets must be a sequence of index arrays (one per model), not one array; wrap a single set in a list"
        )
    seeds = list(seeds)
    if len(seeds) != len(train_sets):
        raise ValueError(f"need one seed per training set: {len(train_sets)} sets, {len(seeds)} seeds")
    seeds_ = [check_seed(s, name=f"seeds[{k}]") for k, s in enumerate(seeds)]
    sets = []
    for k, s in enumerate(train_sets):
        s = np.asarray(s)
        if s.ndim != 1 or not (s.size == 0 or np.issubdtype(s.dtype, np.integer)):
            raise DataError(
                f"train_sets[{k}] must be a 1-d array of integer indices into X; got shape {s.shape}, dtype {s.dtype}"
            )
        if s.size == 0:
            raise DataError(f"train_sets[{k}] is empty; every model needs at least one record")
        if s.min() < 0 or s.max() >= len(X):
            raise DataError(f"train_sets[{k}] has indices outside 0..{len(X) - 1}; index into X")
        sets.append(s.astype(np.int64, copy=False))
    if sets and (y.min() < 0 or y.max() >= model.n_classes):
        raise DataError(f"labels must be in [0, {model.n_classes - 1}]; got range [{y.min()}, {y.max()}]")
    return X, y, sets, seeds_


def _own_accuracy(m: MLPParams, X: np.ndarray, y: np.ndarray, idx: np.ndarray) -> float:
    return m.accuracy(X[idx], y[idx])


def train_chunk(job: ChunkJob) -> list[MLPParams]:
    """Train the models of one chunk; return their weights in the chunk's order.

    Meant to run through an executor (which gives the worker one torch thread). Denormal floats are
    flushed to zero while the chunk trains (Adam's moments decay into denormals late in training,
    which would slow every step several times) and the thread's previous setting is restored after.
    """
    with flush_denormals():
        if job.dp is not None:
            return train_fused_dp(job) if job.fused else train_stacked_dp(job)
        return train_fused(job) if job.fused else train_stacked(job)

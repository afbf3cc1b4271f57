"""The batched engine: K MLPs of one architecture trained together in one program.

Each model keeps everything of its own: training set (indices into the shared pool of records),
initialisation, minibatch order and dropout masks, all from its own seed. The K models' weights
are stacked as ``(K, fan_in, fan_out)`` tensors and every step is a handful of batched matrix
products with a hand-written backward pass (no autograd; the first layer's input gradient is
never computed) and one fused Adam update over a single flat buffer holding all parameters of all
models (no Python loop over models or parameters inside a step).

Details that keep each model's training equal to training it alone
------------------------------------------------------------------
* Initialisation and minibatch order come from ``torch_generator(seed, "train")`` in the same order
  as :func:`miaudit.training.trainer.train_one`, so with dropout 0 a model gets exactly the plain
  loop's initial weights and batches. Dropout masks come from ``torch_generator(seed, "dropout", l)``
  (one stream per hidden layer), drawn in step order.
* Unequal set sizes are handled by **padding and masking rows, not whole steps**: model k runs its
  own ``epochs * ceil(n_k / batch_size)`` steps, each over its own batch; the last, short batch of
  each of its epochs is padded to ``batch_size`` rows with zero weight, and the loss is the mean
  over its real rows, exactly as a short batch alone. All active models share the step counter, so
  Adam's bias correction is each model's own. When a model has run all its steps its weights are
  taken out and it leaves the stack (the stack shrinks); it never receives an extra step.
* Layer 1's bias is a last row of its weight matrix, multiplied by a column of ones appended to the
  inputs. The flat buffers are padded to a multiple of 64 values so the fused Adam never takes its
  scalar tail path.
* Every chunk runs single-threaded (see :mod:`miaudit.training.executors`): a model's weights do
  not depend on K, on the chunking or on the number of workers; the same seed gives bitwise the
  same weights on the same machine.

Two paths. Networks with one hidden layer trained in bf16 on a CPU with AMX (the seed's 784-128-10
among them) train one model at a time on compiled steps (:mod:`miaudit.training.native`,
``_native/mlp1.c``): one call per block of 32 steps runs gather, forward, backward and Adam with
the model's weights and state in the core's cache; the chunks hold one model each and the
executor's workers take them in turn. Everything else takes the stacked path below. Both give
each model the same initialisation and minibatch order from its seed.

Precision: ``f32`` computes everything in float32. ``bf16`` keeps float32 master weights, Adam
state and the gradients Adam reads, and runs the matrix products of the first layer (and of any
layer with at least 16,384 weights) in bfloat16: their inputs, weights, activations and gradients
are rounded to bf16 and accumulated in float32, as autocast would do. Small layers (the 128 x 10
output layer), the softmax and the loss gradient stay float32 (the one-hidden-layer path goes
further: the first layer's outputs and weight gradient stay float32 too, only its inputs, weights
and output gradients are bf16). ``auto`` is bf16 only on CPUs with
native bf16 matrix units (:func:`miaudit.training.hardware.native_bf16`); elsewhere bf16 still
works, emulated and slower.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from miaudit.errors import DataError, TrainingError
from miaudit.seeding import check_seed, torch_generator
from miaudit.training.executors import Executor, InProcessExecutor
from miaudit.training.hardware import available_memory_bytes, resolve_precision
from miaudit.training.native import load_mlp1, load_native
from miaudit.training.networks import MLPParams, init_params, shared_tensor
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["ChunkJob", "TrainedBatch", "plan_chunks", "predict_proba_stacked", "train_batched", "train_many"]

logger = logging.getLogger(__name__)

#: Most models per chunk (one chunk per worker thread at a time). On a 2-core Xeon with AMX,
#: chunks of 8 to 32 cost within noise of each other per model (Python overhead per step falls,
#: cache misses rise), 16 slightly least; chunks of 1-4 cost 15-25% more. Several chunks per worker
#: also balance the load when other processes share the cores.
MAX_CHUNK = 16
#: Default memory budget: this fraction of MemAvailable, at most DEFAULT_BUDGET_CAP bytes.
DEFAULT_BUDGET_FRACTION = 0.5
DEFAULT_BUDGET_CAP = 16 * 2**30
_BLOCK_STEPS = 32  # minibatch schedule generated this many steps at a time
_ALIGN = 64  # flat buffers padded to a multiple of this many values
#: In bf16 mode the first layer, and later layers with at least this many weights, compute in bf16;
#: smaller ones (the output layer of 128 x 10) are faster in float32.
_LOWP_MIN_WEIGHTS = 16384
_TILE = 32  # the one-hidden-layer AMX path: hidden width, batch and padded input width are multiples of this


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


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
        gradient like ``torch.optim.Adam``; dropout ``model.dropout`` after every hidden ReLU).
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
        One per training set, in order.
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


# --------------------------------------------------------------------------------------------
# Planning: how many models per chunk
# --------------------------------------------------------------------------------------------


def bytes_per_model(spec: ModelSpec, train: TrainSpec, precision: str) -> int:
    """Estimated peak memory of one model inside a chunk, in bytes."""
    cb = 2 if precision == "bf16" else 4
    n = spec.n_parameters
    state = n * 4 * 4 + (n * 2 * 2 if precision == "bf16" else 0)  # P, G, m, v (+ bf16 copies)
    sizes = spec.layer_sizes
    acts = train.batch_size * ((sizes[0] + 1) * cb + sum(d * (2 * cb + 4) for d in sizes[1:]))
    block = _BLOCK_STEPS * train.batch_size * (12 + 4 * spec.n_classes)
    masks = _BLOCK_STEPS * train.batch_size * sum(spec.hidden) * (4 + cb) if spec.dropout > 0 else 0
    return int(1.25 * (state + acts + block + masks + n * 4))


def default_memory_budget() -> int:
    """Half of MemAvailable, at most 16 GiB (4 GiB where MemAvailable cannot be read)."""
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
    ``n_workers`` chunks run at once, so each may use ``(budget - shared) / n_workers``.

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
    order = sorted(range(K), key=lambda k: steps[k])
    bounds = np.linspace(0, K, n_chunks + 1).round().astype(int)
    return [order[a:b] for a, b in itertools.pairwise(bounds.tolist()) if b > a]


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ChunkJob:
    """Everything needed to train one chunk of models (picklable: tensors, arrays, frozen specs).

    ``pool`` has shape (n_pool, n_features + 1) in the compute dtype, its last column all ones;
    ``train_sets`` index into it.
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
    X, y, sets, seeds_ = _validate(X, y, train_sets, seeds, model)
    if memory_budget_bytes is not None and (
        isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int) or memory_budget_bytes <= 0
    ):
        raise ValueError(f"memory_budget_bytes must be a positive integer or None; got {memory_budget_bytes!r}")
    precision = resolve_precision(train.precision)
    K = len(sets)
    if K == 0:
        return [], precision
    executor = executor if executor is not None else InProcessExecutor()
    # Only the records some model trains on go into the pool, in the compute dtype, with a ones column.
    used, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    local = np.split(inverse.astype(np.int64), np.cumsum([len(s) for s in sets])[:-1])
    fused = _fused_applies(model, train, precision)
    dtype = torch.bfloat16 if _layers(model, precision)[0].lowp else torch.float32
    # features, then a column of ones (layer 0's bias), then zero columns up to the fused path's width
    width = _round_up(model.n_features + 1, _TILE) if fused else model.n_features + 1
    pool = torch.zeros(len(used), width, dtype=dtype)
    pool[:, : model.n_features] = torch.index_select(shared_tensor(X), 0, torch.from_numpy(used))
    pool[:, model.n_features] = 1.0
    labels = torch.from_numpy(np.ascontiguousarray(y[used], dtype=np.int64))

    steps = [train.epochs * math.ceil(len(s) / train.batch_size) for s in sets]
    budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget()
    chunks = plan_chunks(
        steps,
        per_model_bytes=bytes_per_model(model, train, precision),
        shared_bytes=pool.numel() * pool.element_size(),
        budget_bytes=budget,
        n_workers=executor.n_workers,
        max_chunk=1 if fused else MAX_CHUNK,
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
        )
        for c in chunks
    ]
    logger.info("training %d %s models in %d chunks (%s) with %r", K, model.name, len(jobs), precision, executor)
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
            out[k] = params
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


# --------------------------------------------------------------------------------------------
# One chunk: the stacked state, the schedule, the step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    """How layer ``i`` is stored and computed.

    Layer 0's bias is folded into its weight (a last input row; inputs carry a column of ones). The
    last layer is stored transposed, ``(out, in)``, so that logits come out as ``(K, classes, batch)``
    and the softmax runs along a non-contiguous axis (PyTorch's softmax over a short last axis is
    slow). ``lowp``: the layer's products run in bf16 (only large layers: small ones are faster in
    float32).
    """

    i: int
    fan_in: int
    fan_out: int
    last: bool
    lowp: bool

    @property
    def folded(self) -> bool:
        return self.i == 0

    @property
    def w_shape(self) -> tuple[int, int]:
        rows = self.fan_in + (1 if self.folded else 0)
        return (self.fan_out, rows) if self.last else (rows, self.fan_out)

    @property
    def b_shape(self) -> tuple[int, int] | None:
        if self.folded:
            return None
        return (self.fan_out, 1) if self.last else (1, self.fan_out)


def _layers(spec: ModelSpec, precision: str) -> list[_Layer]:
    sizes = spec.layer_sizes
    n = len(sizes) - 1
    return [
        _Layer(
            i,
            sizes[i],
            sizes[i + 1],
            last=i == n - 1,
            lowp=precision == "bf16" and (i == 0 or sizes[i] * sizes[i + 1] >= _LOWP_MIN_WEIGHTS),
        )
        for i in range(n)
    ]


class _Stack:
    """Parameters, gradients and Adam state of K models in flat float32 buffers, with views.

    Each layer has a weight block ``(K, *w_shape)`` and (except layer 0) a bias block; blocks of
    bf16 layers come first, so that the bf16 copies of parameters and gradients cover one prefix.
    """

    def __init__(
        self,
        layers: list[_Layer],
        weights: list[torch.Tensor],
        biases: list[torch.Tensor | None],
        state: tuple[list[torch.Tensor], list[torch.Tensor]] | None,
        step: torch.Tensor,
    ) -> None:
        self.layers, self.step = layers, step
        self.K = K = weights[0].shape[0]
        order = sorted(range(len(layers)), key=lambda i: not layers[i].lowp)
        shapes: list[tuple[int, ...]] = []
        slots: dict[tuple[str, int], int] = {}
        for i in order:
            slots["w", i] = len(shapes)
            shapes.append(layers[i].w_shape)
            b_shape = layers[i].b_shape
            if b_shape is not None:
                slots["b", i] = len(shapes)
                shapes.append(b_shape)
        self.shapes, self.slots = shapes, slots
        numel = K * sum(math.prod(sh) for sh in shapes)
        total = -(-numel // _ALIGN) * _ALIGN
        self.P, self.G, self.m, self.v = (torch.zeros(total) for _ in range(4))
        self._p, self._g = self._views(self.P), self._views(self.G)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            self.weight(i).copy_(w)
            if b is not None:
                self.bias(i).copy_(b)
        if state is not None:
            for dst, src in zip(self._views(self.m) + self._views(self.v), state[0] + state[1], strict=True):
                dst.copy_(src)
        lowp_blocks = [j for i in range(len(layers)) if layers[i].lowp for j in self._slots_of(i)]
        self.n_lowp = K * sum(math.prod(shapes[j]) for j in lowp_blocks)
        if self.n_lowp:
            self.Pc = self.P[: self.n_lowp].to(torch.bfloat16)
            self.Gc = torch.zeros(self.n_lowp, dtype=torch.bfloat16)
            self._pc, self._gc = self._views(self.Pc), self._views(self.Gc)
        self._buffers: dict[str, torch.Tensor] = {}

    def _slots_of(self, i: int) -> list[int]:
        return [self.slots[k, i] for k in ("w", "b") if (k, i) in self.slots]

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out, off = [], 0
        for sh in self.shapes:
            n = self.K * math.prod(sh)
            if off + n > flat.numel():
                break
            out.append(flat[off : off + n].view(self.K, *sh))
            off += n
        return out

    # float32 master views
    def weight(self, i: int) -> torch.Tensor:
        return self._p[self.slots["w", i]]

    def bias(self, i: int) -> torch.Tensor:
        return self._p[self.slots["b", i]]

    # views used by the step: bf16 copies for bf16 layers
    def cweight(self, i: int) -> torch.Tensor:
        return (self._pc if self.layers[i].lowp else self._p)[self.slots["w", i]]

    def cbias(self, i: int) -> torch.Tensor:
        return (self._pc if self.layers[i].lowp else self._p)[self.slots["b", i]]

    def cgrad_w(self, i: int) -> torch.Tensor:
        return (self._gc if self.layers[i].lowp else self._g)[self.slots["w", i]]

    def cgrad_b(self, i: int) -> torch.Tensor:
        return (self._gc if self.layers[i].lowp else self._g)[self.slots["b", i]]

    def buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != dtype:
            buf = self._buffers[name] = torch.empty(shape, dtype=dtype)
        return buf

    @classmethod
    def initial(
        cls, spec: ModelSpec, layers: list[_Layer], inits: list[tuple[list[torch.Tensor], list[torch.Tensor]]]
    ) -> _Stack:
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor | None] = []
        for lay in layers:
            w = torch.stack([ws[lay.i] for ws, _ in inits])  # (K, in, out)
            b = torch.stack([bs[lay.i] for _, bs in inits])  # (K, out)
            if lay.folded:
                w = torch.cat([w, b.unsqueeze(1)], dim=1)
            weights.append(w.transpose(1, 2) if lay.last else w)
            biases.append(None if lay.folded else (b.unsqueeze(2) if lay.last else b.unsqueeze(1)))
        return cls(layers, weights, biases, None, torch.zeros(()))

    def select(self, keep: list[int]) -> _Stack:
        """A stack of the models at positions ``keep``, with their Adam state."""
        idx = torch.tensor(keep, dtype=torch.int64)
        n = len(self.layers)
        weights = [self.weight(i).index_select(0, idx) for i in range(n)]
        biases = [None if self.layers[i].folded else self.bias(i).index_select(0, idx) for i in range(n)]
        state = (
            [t.index_select(0, idx) for t in self._views(self.m)],
            [t.index_select(0, idx) for t in self._views(self.v)],
        )
        return _Stack(self.layers, weights, biases, state, self.step)

    def finite(self) -> torch.Tensor:
        """Bool tensor of shape (K,): which models' parameters are all finite."""
        ok = torch.ones(self.K, dtype=torch.bool)
        for p in self._p:
            # a sum is non-finite if any term is (or if it overflows: only weights of ~1e33, diverged
            # anyway); one pass instead of isfinite's several
            ok &= p.flatten(1).sum(dim=1).isfinite()
        return ok

    def export(self, spec: ModelSpec, k: int) -> MLPParams:
        weights, biases = [], []
        for lay in self.layers:
            w = self.weight(lay.i)[k]
            w = w.T if lay.last else w  # (in', out)
            if lay.folded:
                weights.append(w[:-1].contiguous().numpy().copy())
                biases.append(w[-1].contiguous().numpy().copy())
            else:
                weights.append(w.contiguous().numpy().copy())
                biases.append(self.bias(lay.i)[k].reshape(-1).numpy().copy())
        return MLPParams(spec=spec, weights=tuple(weights), biases=tuple(biases))


class _Stream:
    """One model's minibatches: its own epochs, each a fresh permutation, short batches padded."""

    def __init__(self, idx: np.ndarray, gen: torch.Generator, epochs: int, batch: int) -> None:
        self.idx = torch.from_numpy(idx)
        self.gen, self.batch = gen, batch
        n = len(idx)
        self.per_epoch = -(-n // batch)
        self.total = epochs * self.per_epoch
        pad = self.per_epoch * batch - n
        self.weights = torch.full((self.per_epoch, batch), 1.0 / batch)
        if pad:
            last = batch - pad
            self.weights[-1, :last] = 1.0 / last
            self.weights[-1, last:] = 0.0
        self.pad = pad
        self.taken = 0
        self._epoch: torch.Tensor | None = None

    def take(self, n_steps: int, out_idx: torch.Tensor, out_w: torch.Tensor) -> None:
        """Write the next ``n_steps`` batches: indices into ``out_idx`` and row weights into ``out_w``."""
        row = 0
        epoch = self._epoch
        while row < n_steps:
            pos = self.taken % self.per_epoch
            if pos == 0 or epoch is None:
                order = self.idx[torch.randperm(len(self.idx), generator=self.gen)]
                if self.pad:
                    order = torch.cat([order, torch.zeros(self.pad, dtype=order.dtype)])
                epoch = self._epoch = order.view(self.per_epoch, self.batch)
            n = min(n_steps - row, self.per_epoch - pos)
            out_idx[row : row + n] = epoch[pos : pos + n]
            out_w[row : row + n] = self.weights[pos : pos + n]
            row += n
            self.taken += n


def train_chunk(job: ChunkJob) -> list[MLPParams]:
    """Train the models of one chunk together; return their weights in the chunk's order.

    Meant to run through an executor (which gives the worker one torch thread and flushes denormals).
    """
    torch.set_flush_denormal(True)
    if job.fused:
        return [_train_fused(job, k) for k in range(len(job.seeds))]
    spec, tr = job.model, job.train
    layers = _layers(spec, job.precision)
    K, B = len(job.seeds), tr.batch_size
    gens = [torch_generator(s, "train") for s in job.seeds]
    stack = _Stack.initial(spec, layers, [init_params(spec, g) for g in gens])
    plan = _Plan(stack, job.pool, B, tr, spec.dropout)
    streams = [_Stream(s, g, tr.epochs, B) for s, g in zip(job.train_sets, gens, strict=True)]
    drop_gens = [[torch_generator(s, "dropout", i) for i in range(len(spec.hidden))] for s in job.seeds]
    keep_p = 1.0 - spec.dropout
    C = spec.n_classes
    results: list[MLPParams | None] = [None] * K
    active = list(range(K))
    t = 0
    with torch.no_grad():
        while active:
            Ka = len(active)
            L = min(min(streams[k].total for k in active) - t, _BLOCK_STEPS)
            if spec.dropout > 0:
                L = max(1, min(L, 2**22 // (Ka * B * sum(spec.hidden))))
            idx = torch.empty(L, Ka, B, dtype=torch.int64)
            w = torch.empty(L, Ka, B)
            for a, k in enumerate(active):
                streams[k].take(L, idx[:, a], w[:, a])
            # minus one-hot labels times row weights, laid out like the logits: (L, Ka, C, B)
            negyw = torch.zeros(L, Ka, C, B)
            negyw.scatter_(2, job.labels[idx].unsqueeze(2), w.neg().unsqueeze(2))
            rw = w.unsqueeze(2)
            masks = _dropout_masks(spec, layers, [drop_gens[k] for k in active], L, B, keep_p)
            step_masks = zip(*(mk.unbind(1) for mk in masks), strict=True) if masks else itertools.repeat(())
            per_step = zip(idx.view(L, -1).unbind(0), negyw.unbind(0), rw.unbind(0), step_masks, strict=False)
            for ix, ny, r, mk in per_step:
                plan.step(ix, ny, r, mk)
            t += L
            ok = stack.finite()
            if not bool(ok.all()):
                bad = [job.positions[active[a]] for a in range(Ka) if not ok[a]]
                raise TrainingError(
                    f"training diverged (non-finite weights) for models {bad} after {t} steps; lower the learning rate"
                )
            finished = [a for a, k in enumerate(active) if streams[k].total == t]
            if finished:
                for a in finished:
                    results[active[a]] = stack.export(spec, a)
                keep = sorted(set(range(Ka)) - set(finished))
                active = [active[a] for a in keep]
                if active:
                    stack = stack.select(keep)
                    plan = _Plan(stack, job.pool, B, tr, spec.dropout)
    return [r for r in results if r is not None]


def _fused_applies(spec: ModelSpec, train: TrainSpec, precision: str) -> bool:
    """Whether models train one at a time on the compiled AMX steps (:mod:`miaudit.training.native`).

    Where they apply (bf16, one hidden layer of a width that is a multiple of 32, no dropout, a
    batch size that is a multiple of 32, a CPU with AMX-BF16 and the kernels built), a model's
    weights and Adam state stay in the core's cache for its whole training, about twice as fast
    as the stacked path. Everything else (f32, deeper networks, dropout, other CPUs) is stacked.
    """
    return (
        precision == "bf16"
        and len(spec.hidden) == 1
        and spec.hidden[0] % _TILE == 0
        and spec.dropout == 0
        and train.batch_size % _TILE == 0
        and load_mlp1() is not None
    )


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _train_fused(job: ChunkJob, k: int) -> MLPParams:
    """Train model ``k`` of the job alone on the compiled steps (layouts in ``_native/mlp1.c``).

    Same initialisation and minibatch order as the stacked path and the plain loop (the model's
    ``torch_generator(seed, "train")``); short last batches are padded with zero-weight rows.
    """
    kernels = load_mlp1()
    if kernels is None:
        raise TrainingError("the compiled one-hidden-layer steps were planned for but cannot be loaded")
    spec, tr = job.model, job.train
    F, H, C, B = spec.n_features, spec.hidden[0], spec.n_classes, tr.batch_size
    D = job.pool.shape[1]
    gen = torch_generator(job.seeds[k], "train")
    (w1, w2), (b1, b2) = init_params(spec, gen)
    W1 = torch.zeros(D, H)
    W1[:F], W1[F] = w1, b1
    P2 = torch.cat([w2.T.reshape(-1), b2])  # W2 as (classes, hidden) rows, then the biases
    W1c = torch.empty(D // 2, H, 2, dtype=torch.bfloat16)
    kernels.copy_weights(W1, W1c)
    P1 = _blocks(W1, _TILE)  # the kernel's layout: 32 x 32 blocks, each contiguous
    state = (P1, torch.zeros_like(P1), torch.zeros_like(P1), W1c, P2, torch.zeros_like(P2), torch.zeros_like(P2))
    bf16 = torch.bfloat16
    scratch = (
        torch.empty(B, D, dtype=bf16),
        torch.empty(D, B, dtype=bf16),
        torch.empty(B, H),
        torch.empty(B, C),
        torch.empty(B // 2, H, 2, dtype=bf16),
        torch.empty(C * H + C + 17 * H),
    )
    stream = _Stream(job.train_sets[k], gen, tr.epochs, B)
    t = 0
    while t < stream.total:
        L = min(_BLOCK_STEPS, stream.total - t)
        idx = torch.empty(L, B, dtype=torch.int64)
        rw = torch.empty(L, B)
        stream.take(L, idx, rw)
        labels = job.labels[idx]
        kernels.train(
            job.pool, idx, rw, labels, state, scratch, t0=t, lr=tr.lr, weight_decay=tr.weight_decay, n_classes=C
        )
        t += L
        if not bool((P1.sum() + P2.sum()).isfinite()):
            raise TrainingError(
                f"training diverged (non-finite weights) for model {job.positions[k]} after {t} steps; "
                "lower the learning rate"
            )
    W1 = _unblocks(P1, D, H, _TILE)
    return MLPParams(
        spec=spec,
        weights=(W1[:F].numpy().copy(), P2[: C * H].view(C, H).T.contiguous().numpy()),
        biases=(W1[F].numpy().copy(), P2[C * H :].numpy().copy()),
    )


def _blocks(w: torch.Tensor, t: int) -> torch.Tensor:
    """(D, H) as contiguous t x t blocks, block row-major: shape (D/t, H/t, t, t)."""
    D, H = w.shape
    return w.view(D // t, t, H // t, t).permute(0, 2, 1, 3).contiguous()


def _unblocks(b: torch.Tensor, D: int, H: int, t: int) -> torch.Tensor:
    """The inverse of :func:`_blocks`: (D, H)."""
    return b.permute(0, 2, 1, 3).reshape(D, H)


def _dropout_masks(
    spec: ModelSpec, layers: list[_Layer], gens: list[list[torch.Generator]], L: int, B: int, keep: float
) -> list[torch.Tensor]:
    """Per hidden layer, a tensor (Ka, L, B, width) of 0 or 1/keep, each model's from its own stream."""
    if spec.dropout <= 0:
        return []
    masks = []
    for i, width in enumerate(spec.hidden):
        r = torch.empty(len(gens), L, B, width)
        for a, g in enumerate(gens):
            torch.rand(L, B, width, generator=g[i], out=r[a])
        dtype = torch.bfloat16 if layers[i].lowp else torch.float32
        masks.append((r < keep).to(dtype).mul_(1.0 / keep))
    return masks


class _Plan:
    """The training step of one stack, with every view and buffer bound once.

    A step is then a straight sequence of tensor operations (about 17 for one hidden layer) on
    preallocated memory: gather the minibatches, forward, softmax and loss gradient, hand-written
    backward (no input gradient for layer 1), then one Adam update over the flat buffers: the
    compiled step of :mod:`miaudit.training.native` (bf16 gradients in, bf16 weight copies out, one
    pass), or where it is unavailable bf16 gradients to float32, ``torch._fused_adam_`` and float32
    weights to their bf16 copies.
    """

    def __init__(self, stack: _Stack, pool: torch.Tensor, batch: int, train: TrainSpec, dropout: float) -> None:
        K, B = stack.K, batch
        layers = stack.layers
        self.stack, self.pool, self.train = stack, pool, train
        self.inv_keep = 1.0 / (1.0 - dropout) if dropout > 0 else None
        dts = [torch.bfloat16 if lay.lowp else torch.float32 for lay in layers]
        self.x = torch.empty(K * B, pool.shape[1], dtype=pool.dtype)
        x3 = self.x.view(K, B, -1)
        # hs[i]: input of layer i in its dtype; zs[i]: output of hidden layer i (after ReLU, dropout)
        self.x_conv = None if x3.dtype == dts[0] else (torch.empty(K, B, pool.shape[1], dtype=dts[0]), x3)
        hs = [x3 if self.x_conv is None else self.x_conv[0]]
        self.hidden = []
        for lay in layers[:-1]:
            z = torch.empty(K, B, lay.fan_out, dtype=dts[lay.i])
            h_next = z if dts[lay.i + 1] == z.dtype else torch.empty(K, B, lay.fan_out, dtype=dts[lay.i + 1])
            self.hidden.append(
                (lay, z, h_next, hs[-1], stack.cweight(lay.i), None if lay.folded else stack.cbias(lay.i))
            )
            hs.append(h_next)
        last = layers[-1]
        self.last = last
        self.w_last = stack.cweight(last.i)
        self.b_last = None if last.folded else stack.cbias(last.i)
        self.h_last_t = hs[-1].transpose(1, 2)
        self.h_last = hs[-1]
        self.p = torch.empty(K, last.fan_out, B)
        self.dzt = self.p if dts[-1] == torch.float32 else torch.empty(K, last.fan_out, B, dtype=dts[-1])
        self.gw_last = stack.cgrad_w(last.i)
        self.gb_last = None if last.folded else stack.cgrad_b(last.i)
        self.da_last = None if last.folded else torch.empty(K, B, last.fan_in, dtype=dts[-1])
        # backward through hidden layers, output side first: (relu input h_{i+1} in dt[i+1], dz buffer in
        # dt[i] or None, h_i^T, W_i^T, grads, da buffer for layer i's input or None)
        self.backward = []
        for lay in reversed(layers[:-1]):
            h_out = hs[lay.i + 1]
            dz = None if dts[lay.i] == h_out.dtype else torch.empty(K, B, lay.fan_out, dtype=dts[lay.i])
            da = None if lay.folded else torch.empty(K, B, lay.fan_in, dtype=dts[lay.i])
            self.backward.append(
                (
                    h_out,
                    dz,
                    hs[lay.i].transpose(1, 2),
                    stack.cweight(lay.i).transpose(1, 2),
                    stack.cgrad_w(lay.i),
                    None if lay.folded else stack.cgrad_b(lay.i),
                    da,
                )
            )
        n = stack.n_lowp
        self.lowp = (stack.P[:n], stack.G[:n]) if n else None
        # the compiled Adam step (miaudit.training.native) where it builds, else PyTorch's fused Adam
        # with the conversions around it; its calls: the bf16 prefix, then the float32 rest
        self.native = load_native()
        self.native_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        if n:
            self.native_parts.append((stack.P[:n], stack.m[:n], stack.v[:n], stack.Gc, stack.Pc))
        if n < stack.P.numel():
            self.native_parts.append((stack.P[n:], stack.m[n:], stack.v[n:], stack.G[n:], None))

    def step(self, ix: torch.Tensor, negyw: torch.Tensor, rw: torch.Tensor, masks: Sequence[torch.Tensor]) -> None:
        """One Adam step of every model in the stack, each on its own minibatch.

        Parameters
        ----------
        ix : Tensor of shape (K * batch,)
            Pool rows of the K minibatches.
        negyw : Tensor of shape (K, n_classes, batch)
            Minus one-hot labels times row weights.
        rw : Tensor of shape (K, 1, batch)
            Row weights: 1 / rows in the batch, 0 on padding rows.
        masks : sequence of Tensor of shape (K, batch, width)
            Dropout multipliers (0 or 1/keep) per hidden layer; empty without dropout.
        """
        st = self.stack
        torch.index_select(self.pool, 0, ix, out=self.x)
        if self.x_conv is not None:
            self.x_conv[0].copy_(self.x_conv[1])
        for lay, z, h_next, h_in, w, b in self.hidden:
            if b is None:
                torch.bmm(h_in, w, out=z)
            else:
                torch.baddbmm(b, h_in, w, out=z)
            z.relu_()
            if masks:
                z.mul_(masks[lay.i])
            if h_next is not z:
                h_next.copy_(z)
        if self.b_last is None:
            zt = torch.bmm(self.w_last, self.h_last_t)
        else:
            zt = torch.baddbmm(self.b_last, self.w_last, self.h_last_t)
        if zt.dtype != torch.float32:
            zt = zt.float()
        _softmax_out(zt, 1, False, out=self.p)  # (K, C, B), float32
        torch.addcmul(negyw, self.p, rw, out=self.p)  # d(mean loss)/d(logits); zero on padding rows
        dzt = self.dzt
        if dzt is not self.p:
            dzt.copy_(self.p)
        torch.bmm(dzt, self.h_last, out=self.gw_last)
        da = self.da_last
        if self.gb_last is not None:
            torch.sum(dzt, dim=2, keepdim=True, out=self.gb_last)
            torch.bmm(dzt.transpose(1, 2), self.w_last, out=da)
        for h_out, dz_buf, h_in_t, w_t, gw, gb, da_in in self.backward:
            # da: gradient w.r.t. this layer's output after ReLU and dropout (the next layer's input)
            dz = _threshold_backward_out(da, h_out, 0.0, grad_input=da)
            if self.inv_keep is not None:
                dz.mul_(self.inv_keep)  # h > 0 only where the mask kept the unit
            if dz_buf is not None:
                dz = dz_buf.copy_(dz)
            torch.bmm(h_in_t, dz, out=gw)
            if gb is not None:
                torch.sum(dz, dim=1, keepdim=True, out=gb)
                torch.bmm(dz, w_t, out=da_in)
                da = da_in
        st.step += 1
        tr = self.train
        if self.native is not None:
            # one pass: gradients in (bf16 or float32), float32 weights and state updated, bf16 copies out
            t = int(st.step)
            for p, m, v, g, pc in self.native_parts:
                self.native.adam_step(
                    p,
                    m,
                    v,
                    grad=g,
                    p_bf16=pc,
                    step=t,
                    lr=tr.lr,
                    beta1=0.9,
                    beta2=0.999,
                    eps=1e-8,
                    weight_decay=tr.weight_decay,
                )
            return
        if self.lowp is not None:
            self.lowp[1].copy_(st.Gc)  # bf16 gradients to float32
        torch._fused_adam_(
            [st.P],
            [st.G],
            [st.m],
            [st.v],
            [],
            [st.step],
            lr=tr.lr,
            beta1=0.9,
            beta2=0.999,
            weight_decay=tr.weight_decay,
            eps=1e-8,
            amsgrad=False,
            maximize=False,
        )
        if self.lowp is not None:
            st.Pc.copy_(self.lowp[0])  # float32 weights to their bf16 copies


_softmax_out = torch.ops.aten._softmax.out
_threshold_backward_out = torch.ops.aten.threshold_backward.grad_input

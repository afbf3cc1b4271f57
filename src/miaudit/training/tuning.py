"""Measured choices of the batched engine's path: precision, Adam step, chunk size, the fused path.

Rules written on one CPU choose wrong on another: on an AMD EPYC without AMX they picked bf16 where
float32 in chunks of 4 models was faster, and the compiled Adam step where PyTorch's was faster. So
the engine times the candidate paths on the workload's own shapes, once per machine, and keeps the
fastest (:func:`choose_path`). The candidates:

* precision: f32 and bf16 when the recipe says ``auto`` (bf16 only where the CPU has native bf16
  matrix units, :func:`~miaudit.training.hardware.native_bf16`: emulated bf16 is several times
  slower), else only the precision given (an explicit precision is always obeyed);
* the stacked path with the compiled Adam step (``_native/adam.c``, where it builds) and with
  PyTorch's fused Adam;
* chunk sizes (models per stack) from :data:`CHUNK_CANDIDATES` that fit the memory budget;
* the fused one-hidden-layer path (:mod:`~miaudit.training.engine.fused`: AMX tiles or AVX512-BF16
  dot products) where it applies.

Threads per worker are not a candidate: each chunk runs on one thread so that a model's weights do
not depend on the thread count (:mod:`miaudit.training.executors`).

Timing: a candidate runs training steps of a stack of models on synthetic records of the workload's
width, batch size, dropout and label smoothing, on as many threads at once as the engine has workers
(one stack each, one torch thread each, denormals flushed: the workers share caches and memory as in a
run), after a warm-up step; its cost is its fastest step per model, averaged over the threads. A
staged search (:func:`pick_fastest`) spends about :data:`DEFAULT_SECONDS` on a small network, a few
seconds on a large one.

The choice is cached in ``tuning.json`` in the user cache (``$MIAUDIT_CACHE_DIR`` or
``platformdirs.user_cache_dir("miaudit")``), written atomically, under a key of the CPU model, the
core count, the torch version, the compiled kernels (source digest, and which of them load) and the
workload's shape (layer sizes, batch size, dropout and label smoothing on or off, the precision asked
for). A damaged file is ignored with a warning and rewritten. A process chooses once per key and keeps
the choice: a run is never re-timed mid-way.

``MIAUDIT_TUNING=off`` restores the fixed rules (:func:`rule_choice`): bf16 where the CPU has native
bf16 units, the compiled Adam step where it builds, chunks of at most
:data:`~miaudit.training.engine.planning.MAX_CHUNK`, the fused path wherever it applies on AMX. DP-SGD
recipes are not tuned: float32 on the stacked path, by the rules.

Recipes for a GPU (``train.device`` ``cuda`` or ``mps``) are not tuned either (every candidate is
timed on the CPU): the stacked path with PyTorch's fused Adam (the compiled step and the fused AMX
path are CPU code), float32 for ``auto``, at most :data:`DEVICE_MAX_CHUNK` models per stack.

The seed determines the numbers, not the timing: with the same seed, path and precision a model's
weights are bitwise the same whatever the tuner measured (chunk size never changes them; precision,
the Adam step and the fused path change them at float rounding). :func:`describe_choice` says which
path a workload trains on and why, for run manifests.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import torch

from miaudit._io import atomic_write_text
from miaudit.errors import TrainingError
from miaudit.training import hardware
from miaudit.training.engine.fused import FusedModel, fused_applies, padded_width
from miaudit.training.engine.planning import (
    BLOCK_STEPS,
    MAX_CHUNK,
    ChunkJob,
    bytes_per_model,
    default_memory_budget,
)
from miaudit.training.engine.stack import Stack, layer_layout
from miaudit.training.engine.stacked import StepPlan, neg_targets
from miaudit.training.executors import default_workers, single_threaded_torch
from miaudit.training.native import load_mlp1, load_native
from miaudit.training.networks import init_params
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = [
    "CHUNK_CANDIDATES",
    "DEFAULT_SECONDS",
    "DEVICE_MAX_CHUNK",
    "TUNER_VERSION",
    "TUNING_ENV",
    "Candidate",
    "PathChoice",
    "candidates",
    "choices_made",
    "choose_path",
    "describe_choice",
    "measure_candidate",
    "path_for",
    "pick_fastest",
    "pinned",
    "rule_choice",
    "tune",
    "tuning_enabled",
    "tuning_file",
    "workload_key",
]

logger = logging.getLogger(__name__)

#: ``off`` (or 0, false, no): the fixed rules instead of measured choices.
TUNING_ENV = "MIAUDIT_TUNING"
#: Models per stack tried (those that fit the memory budget).
CHUNK_CANDIDATES = (4, 8, 16, 32)
#: Most models per stack on a GPU: larger stacks spread each kernel launch over more models.
DEVICE_MAX_CHUNK = 256
#: Measuring time in all, spread over about a dozen measurements (large networks take longer: every
#: measurement runs a warm-up step and at least two timed steps).
DEFAULT_SECONDS = 1.5
#: Records in the synthetic pool candidates gather their minibatches from (larger than the caches, as in a run).
POOL_ROWS = 32_768
#: distinct minibatches a stacked timing cycles through (with POOL_ROWS, the gathers miss the caches as in a run)
_STEPS = 32
_MIN_STEPS = 2
#: a larger chunk is tried only while each one is at least 3% faster per model than the best before it
_GAIN = 0.97
_FORMAT = 1
#: bump when the way candidates are timed or searched changes: earlier choices are then timed again
TUNER_VERSION = 3
_ADAMS = ("compiled", "torch")

#: (seconds per model-step) of a candidate given about ``seconds`` to measure; injectable for tests
Measure = Callable[["Candidate", float], float]


@dataclass(frozen=True)
class Candidate:
    """One way to train a workload: precision, path, Adam step and models per stack."""

    precision: str
    path: str
    adam: str
    chunk: int

    @property
    def label(self) -> str:
        if self.path == "fused":
            return f"{self.precision} fused one-hidden-layer path"
        adam = "compiled Adam" if self.adam == "compiled" else "PyTorch Adam"
        return f"{self.precision} stacked, {adam}, chunks of {self.chunk}"


@dataclass(frozen=True)
class PathChoice:
    """The path a workload trains on, and why.

    Attributes
    ----------
    precision : {"f32", "bf16"}
    path : {"stacked", "fused"}
    adam : {"compiled", "torch"}
        The stacked path's Adam step (the compiled one falls back to PyTorch's where it does not load).
    max_chunk : int
        Most models per stack (1 on the fused path).
    source : {"measured", "cache", "rules", "pinned"}
        Timed now, read from the tuning file, the fixed rules (tuning off, DP-SGD), or set by :func:`pinned`.
    reason : str
        One sentence: why this path.
    timings : tuple of (str, float)
        Each timed candidate's best seconds per model-step, fastest first (empty unless measured).
    key : str
        The hash of :func:`workload_key` (empty for the rules).
    """

    precision: str
    path: str
    adam: str
    max_chunk: int
    source: str
    reason: str
    timings: tuple[tuple[str, float], ...] = ()
    key: str = ""

    @property
    def fused(self) -> bool:
        return self.path == "fused"

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "path": self.path,
            "adam": self.adam,
            "max_chunk": self.max_chunk,
            "source": self.source,
            "reason": self.reason,
            "ms_per_model_step": {label: round(1e3 * s, 4) for label, s in self.timings},
            "key": self.key,
        }


_lock = threading.RLock()
_memo: dict[tuple[str, str], PathChoice] = {}
_described: dict[str, dict[str, Any]] = {}
_PINNED: ContextVar[dict[str, Any] | None] = ContextVar("miaudit_tuning_pinned", default=None)


def tuning_enabled() -> bool:
    """False when ``MIAUDIT_TUNING`` is ``off`` (or 0, false, no)."""
    return os.environ.get(TUNING_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def tuning_file() -> Path:
    """``$MIAUDIT_CACHE_DIR/tuning.json``, else ``platformdirs.user_cache_dir("miaudit")/tuning.json``."""
    root = os.environ.get("MIAUDIT_CACHE_DIR") or platformdirs.user_cache_dir("miaudit")
    return Path(root).expanduser() / "tuning.json"


def _kernel_digest() -> str:
    src = Path(__file__).with_name("_native")
    h = hashlib.sha256()
    for path in sorted([*src.glob("*.c"), *src.glob("*.h")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def workload_key(*, model: ModelSpec, train: TrainSpec) -> dict[str, Any]:
    """What a measured choice depends on: this machine and software, the tuner, and the workload's shape.

    Epochs, learning rate, weight decay and training-set sizes change how many steps run, not which
    step is fastest, so they are not part of it.
    """
    return {
        "tuner": TUNER_VERSION,
        "cpu": hardware.cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "kernels": _kernel_digest(),
        "compiled": {"adam": load_native() is not None, "mlp1": load_mlp1() is not None},
        "layers": list(model.layer_sizes),
        "batch_size": train.batch_size,
        "dropout": model.dropout > 0,
        "label_smoothing": train.label_smoothing > 0,
        "precision": train.precision,
        **_isa_key(),
    }


def _isa_key() -> dict[str, Any]:
    """The instruction sets in use where they are not the CPU's own (emulation): empty otherwise, so keys stay."""
    out: dict[str, Any] = {}
    if hardware.native_isa() != "native":
        out["native_isa"] = hardware.native_isa()
    if os.environ.get("ATEN_CPU_CAPABILITY") or os.environ.get("ONEDNN_MAX_CPU_ISA"):
        out["torch_isa"] = [torch.backends.cpu.get_cpu_capability(), os.environ.get("ONEDNN_MAX_CPU_ISA", "")]
    return out


def _hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def rule_choice(*, model: ModelSpec, train: TrainSpec, why: str = "") -> PathChoice:
    """The fixed rules (``MIAUDIT_TUNING=off``; DP-SGD and GPUs always): the engine's choices before tuning.

    DP-SGD on the CPU: the fused one-hidden-layer path in bf16 wherever it applies (precision ``auto`` or
    ``bf16`` on a CPU with bf16 units; about twice the float32 stacked path's speed on a 2-core EPYC),
    else the stacked path in float32 (its only precision for DP-SGD).

    On a GPU (``train.device`` not ``cpu``): the stacked path with PyTorch's fused Adam, float32 for
    ``auto`` (and DP-SGD), at most :data:`DEVICE_MAX_CHUNK` models per stack.
    """
    if train.device != "cpu":
        precision = "f32" if train.dp or train.precision == "auto" else train.precision
        rules = (
            f"device {train.device!r}: the stacked path with PyTorch's fused Adam (the compiled kernels are CPU "
            f"code), float32 for precision 'auto', at most {DEVICE_MAX_CHUNK} models per stack; not tuned (the "
            "tuner times CPU paths)"
        )
        return PathChoice(
            precision=precision,
            path="stacked",
            adam="torch",
            max_chunk=DEVICE_MAX_CHUNK,
            source="rules",
            reason=f"{why}: {rules}" if why else rules,
        )
    precision = hardware.resolve_precision(train.precision)
    mlp1 = load_mlp1()
    if train.dp:
        # DP-SGD: the fused path (bf16 products, exact clipping of the rounded gradients) wherever it applies
        # (about twice the float32 stacked path's speed on AVX512-BF16), else float32 on the stacked path
        fused = precision == "bf16" and fused_applies(model, train, "bf16")
        precision = "bf16" if fused else "f32"
        rules = (
            "fixed rules for DP-SGD: the fused one-hidden-layer path in bf16 where it applies and the CPU has bf16 "
            "units (precision 'auto' or 'bf16'), else float32 on the stacked path"
        )
    else:
        # the rules take the fused path on AMX only (where it is about twice the stacked path's speed); its
        # AVX512-BF16 build is a candidate the tuner times
        fused = fused_applies(model, train, precision) and mlp1 is not None and mlp1.kind == "AMX-BF16"
        rules = (
            "fixed rules: bf16 only where the CPU has native bf16 units, the compiled Adam step where it builds, "
            f"at most {MAX_CHUNK} models per stack, the fused AMX path wherever it applies"
        )
    adam = "compiled" if load_native() is not None else "torch"
    return PathChoice(
        precision=precision,
        path="fused" if fused else "stacked",
        adam=adam,
        max_chunk=1 if fused else MAX_CHUNK,
        source="rules",
        reason=f"{why}: {rules}" if why else rules,
    )


def candidates(*, model: ModelSpec, train: TrainSpec, n_workers: int | None = None) -> list[Candidate]:
    """The paths worth timing for this workload on this machine, the fixed rules' path first.

    Chunk sizes are those of :data:`CHUNK_CANDIDATES` whose stacks fit the default memory budget
    with ``n_workers`` (default: torch's threads) stacks at once; at least the smallest. The fixed
    rules' path is always a candidate.
    """
    if train.precision == "auto":
        precisions: tuple[str, ...] = ("f32", "bf16") if hardware.native_bf16() else ("f32",)
    else:
        precisions = (train.precision,)
    adams = _ADAMS if load_native() is not None else ("torch",)
    workers = max(1, n_workers or torch.get_num_threads())
    room = default_memory_budget() // workers
    out: list[Candidate] = []
    for p in precisions:
        if fused_applies(model, train, p):
            out.append(Candidate(p, "fused", "compiled", 1))
        per_model = bytes_per_model(model, train, p)
        chunks = [k for k in CHUNK_CANDIDATES if k * per_model <= room] or [min(CHUNK_CANDIDATES)]
        out.extend(Candidate(p, "stacked", a, k) for a in adams for k in chunks)
    rule = rule_choice(model=model, train=train)
    first = Candidate(rule.precision, rule.path, rule.adam, rule.max_chunk)
    return [first, *(c for c in out if c != first)]  # the rules' path always (a run caps chunks by memory)


def pick_fastest(
    cands: Sequence[Candidate], measure: Measure, *, seconds: float = DEFAULT_SECONDS
) -> tuple[Candidate, dict[Candidate, float]]:
    """The fastest candidate, and every timed candidate's best seconds per model-step.

    A staged search, about a dozen measurements of ``seconds / 12`` each (large networks take longer:
    every measurement runs a warm-up step and at least two timed steps):

    1. the first candidate (the fixed rules' path); then per precision, chunk sizes in ascending order
       with the first candidate's Adam step, stopping at the first size that is not at least 3% faster
       per model than the best before it (the cost per model falls with the chunk size while Python's share
       shrinks, then rises with cache misses; larger stacks also cost more to time); and the fused path
       where it is a candidate;
    2. the other Adam step at each precision's best chunk size;
    3. the two fastest timed again; the best time of each counts.

    The first candidate (the fixed rules' path) is kept unless another is at least 3% faster: smaller
    differences are within what the timing can tell. Otherwise ties go to
    the earlier candidate. A measurement that fails (raises, or gives a value that is not a
    positive number) counts as infinitely slow.

    Raises
    ------
    ValueError
        No candidates, or ``seconds`` not positive.
    """
    if not cands or not seconds > 0:
        raise ValueError(f"need at least one candidate and seconds > 0; got {len(cands)} candidates, {seconds=}")
    order: dict[Candidate, int] = {}
    for i, c in enumerate(cands):
        order.setdefault(c, i)
    best: dict[Candidate, float] = {}
    if len(order) == 1:
        return cands[0], best
    share = seconds / 12

    def timed(c: Candidate) -> float:
        try:
            t = float(measure(c, share))
        except (RuntimeError, TrainingError, MemoryError) as exc:
            logger.warning("timing %s failed (%s); it is not chosen", c.label, exc)
            t = math.inf
        best[c] = min(best.get(c, math.inf), t if t > 0 and math.isfinite(t) else math.inf)
        return best[c]

    def rank(c: Candidate) -> tuple[float, int]:
        return best[c], order[c]

    timed(cands[0])  # the fixed rules' path: always timed, it stays unless another is 3% faster
    precisions = list(dict.fromkeys(c.precision for c in cands))
    for p in precisions:
        mine = [c for c in order if c.precision == p]
        stacked = [c for c in mine if c.path == "stacked"]
        if stacked:
            adam = stacked[0].adam
            lead = math.inf
            for c in sorted((c for c in stacked if c.adam == adam), key=lambda c: c.chunk):
                t = timed(c)
                if t > _GAIN * lead:
                    break
                lead = min(lead, t)
        for c in mine:
            if c.path == "fused":
                timed(c)
    for p in precisions:
        done = [c for c in best if c.precision == p and c.path == "stacked"]
        if done:
            chunk = min(done, key=rank).chunk
            for c in order:
                if c.precision == p and c.path == "stacked" and c.chunk == chunk and c not in best:
                    timed(c)
    for c in sorted(best, key=rank)[:2]:
        timed(c)
    fastest = min(best, key=rank)
    first = cands[0]
    if first in best and best[first] <= best[fastest] / _GAIN:
        return first, best  # within 3%: the first candidate (the fixed rules' path) stays
    return fastest, best


def measure_candidate(
    candidate: Candidate, *, model: ModelSpec, train: TrainSpec, seconds: float, n_workers: int | None = None
) -> float:
    """Seconds per model-step of ``candidate`` (its fastest step) on synthetic records, about ``seconds``.

    The stacked path runs steps of a stack of ``candidate.chunk`` models (weights from a fixed
    generator, :data:`_STEPS` distinct minibatches drawn from :data:`POOL_ROWS` random records, more than
    the caches hold, as in a run); the fused path trains one model, set up once as in a run, for
    :data:`~miaudit.training.engine.planning.BLOCK_STEPS` steps per timing from the same records.
    At least two steps are timed after one warm-up; the fastest counts (on a shared machine, other
    processes only ever slow a step down). The global random state is not used.

    As in a run, ``n_workers`` threads (default: the engine's workers, :func:`default_workers`) each
    time their own stack at once, one torch thread each, and the mean of their CPU times counts: paths
    differ in how much memory traffic they make, and the workers share the caches and memory (on a
    2-core AMD EPYC the stacked path's step took 1.3x its time alone with two workers, the fused path's
    1.05x, which reversed the order the one-thread timing gave).
    """
    workers = max(1, n_workers if n_workers is not None else default_workers())
    timer = _time_fused if candidate.path == "fused" else _time_stacked

    def run(_: int) -> float:
        with single_threaded_torch(), torch.no_grad():
            return timer(candidate, model, train, seconds)

    if workers == 1:
        return run(0)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miaudit-tune") as pool:
        return statistics.fmean(pool.map(run, range(workers)))


def _timed(run: Callable[[int], None], seconds: float) -> list[float]:
    """Times of ``run(i)``, i = 1, 2, ..., for about ``seconds`` (at least :data:`_MIN_STEPS`), after ``run(0)``."""
    run(0)  # warm-up: oneDNN primitives, first touch of the buffers
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 1
    while len(times) < _MIN_STEPS or time.perf_counter() < deadline:
        t0 = time.thread_time()  # this thread's CPU time: other processes on shared cores do not count
        run(i)
        times.append(time.thread_time() - t0)
        i += 1
    return times


@functools.lru_cache(maxsize=2)
def _pool(n_features: int, n_classes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic records (POOL_ROWS, n_features + 1) in ``dtype`` with the ones column, and labels (only read)."""
    gen = torch.Generator().manual_seed(1)
    pool = torch.rand(POOL_ROWS, n_features + 1, generator=gen).to(dtype)
    pool[:, n_features] = 1.0
    return pool, torch.randint(n_classes, (POOL_ROWS,), generator=gen)


def _time_stacked(c: Candidate, model: ModelSpec, train: TrainSpec, seconds: float) -> float:
    gen = torch.Generator().manual_seed(0)
    layers = layer_layout(model, c.precision)
    K, B, C, S = c.chunk, train.batch_size, model.n_classes, _STEPS
    stack = Stack.initial(model, layers, [init_params(model, gen) for _ in range(K)])
    dtype = torch.bfloat16 if layers[0].lowp else torch.float32
    pool, labels = _pool(model.n_features, C, dtype)
    plan = StepPlan(stack, pool, B, train, model.dropout, adam=c.adam)
    idx = torch.randint(POOL_ROWS, (S, K, B), generator=gen)
    w = torch.full((S, K, B), 1.0 / B)
    negyw = neg_targets(labels[idx], w, C, train.label_smoothing)
    keep = 1.0 - model.dropout
    masks = [
        [
            (torch.rand(K, B, width, generator=gen) < keep)
            .to(torch.bfloat16 if lay.lowp else torch.float32)
            .mul_(1 / keep)
            for width, lay in zip(model.hidden, layers, strict=False)
        ]
        if model.dropout > 0
        else []
        for _ in range(S)
    ]
    ixs = [idx[s].reshape(-1) for s in range(S)]

    def run(i: int) -> None:
        s = i % S
        plan.step(ixs[s], negyw[s], w[s].unsqueeze(1), masks[s])

    return min(_timed(run, seconds)) / K


def _time_fused(c: Candidate, model: ModelSpec, train: TrainSpec, seconds: float) -> float:
    kernels = load_mlp1()
    if kernels is None:
        raise TrainingError("the fused path's kernels do not load here")
    gen = torch.Generator().manual_seed(0)
    rows, _ = _pool(model.n_features, model.n_classes, torch.bfloat16)
    pool = torch.zeros(POOL_ROWS, padded_width(model.n_features), dtype=torch.bfloat16)
    pool[:, : model.n_features + 1] = rows
    job = ChunkJob(
        pool=pool,
        labels=torch.randint(model.n_classes, (POOL_ROWS,), generator=gen),
        train_sets=(torch.randperm(POOL_ROWS, generator=gen).numpy(),),
        seeds=(0,),
        positions=(0,),
        model=model,
        train=dataclasses.replace(train, epochs=1_000_000),  # a stream that never runs out
        precision="bf16",
        fused=True,
    )
    m = FusedModel(kernels, job, 0)  # set up once, as a run does per model; each timing is one block

    def run(i: int) -> None:
        m.run(BLOCK_STEPS)

    return min(_timed(run, seconds)) / BLOCK_STEPS


def _real_measure(model: ModelSpec, train: TrainSpec) -> Measure:
    return lambda c, s: measure_candidate(c, model=model, train=train, seconds=s)


def tune(
    *,
    model: ModelSpec,
    train: TrainSpec,
    seconds: float = DEFAULT_SECONDS,
    measure: Measure | None = None,
    force: bool = False,
) -> PathChoice:
    """The measured path for this workload: from the tuning file, or timed now and stored there.

    Unlike :func:`choose_path` this ignores ``MIAUDIT_TUNING``; ``force`` times again even when a
    choice is cached (and replaces it, in the file and in this process). DP-SGD recipes and recipes
    for a GPU get the rules.

    Parameters
    ----------
    model, train : ModelSpec, TrainSpec
    seconds : float
        Measuring time in all (see :func:`pick_fastest`).
    measure : callable, optional
        ``measure(candidate, seconds) -> seconds per model-step``; default :func:`measure_candidate`.
    force : bool
    """
    if train.device != "cpu":
        return rule_choice(model=model, train=train)
    if train.dp:
        return rule_choice(model=model, train=train, why="DP-SGD (not tuned)")
    key = workload_key(model=model, train=train)
    h = _hash(key)
    path = tuning_file()
    with _lock:
        memo = _memo.get((str(path), h))
        if memo is not None and not force:
            return memo
        choice = None if force else _cached(path, h, model=model, train=train)
        if choice is None:
            choice = _measure_and_store(path, key, h, model=model, train=train, seconds=seconds, measure=measure)
        _memo[str(path), h] = choice
        return choice


def choose_path(*, model: ModelSpec, train: TrainSpec, measure: Measure | None = None) -> PathChoice:
    """The path the batched engine trains this workload on (what ``precision="auto"`` and the engine use).

    GPUs (``train.device`` not ``cpu``), DP-SGD (the fused path in bf16 where it applies, else float32 on
    the stacked path) and ``MIAUDIT_TUNING=off``: the fixed rules. Otherwise
    the measured choice (:func:`tune`): cached per machine and workload, timed at first use, fixed for
    the rest of the process. An explicit
    ``train.precision`` is kept; only the path for it is chosen. :func:`pinned` overrides parts of it.
    """
    if train.device != "cpu":
        choice = rule_choice(model=model, train=train)
    elif train.dp:
        choice = rule_choice(model=model, train=train, why="DP-SGD (not tuned)")
    elif not tuning_enabled():
        choice = rule_choice(model=model, train=train, why=f"{TUNING_ENV}=off")
    else:
        choice = tune(model=model, train=train, measure=measure)
    pin = _PINNED.get()
    if pin:
        fused = choice.fused and not pin.get("stacked", False)
        if pin.get("fused", False) and train.device == "cpu":
            fused = fused_applies(model, train, choice.precision)
        chunk = 1 if fused else pin.get("max_chunk", MAX_CHUNK if choice.fused else choice.max_chunk)
        choice = dataclasses.replace(
            choice,
            precision="f32" if train.dp and not fused else choice.precision,  # DP-SGD stacked: float32 only
            path="fused" if fused else "stacked",
            adam=pin.get("adam", choice.adam),
            max_chunk=chunk,
            source="pinned",
            reason=f"pinned ({', '.join(f'{k}={v}' for k, v in pin.items())}) over: {choice.reason}",
        )
    _described[_hash({"model": model.to_dict(), "train": train.to_dict()})] = {
        "model": f"{'-'.join(map(str, model.layer_sizes))} {model.name}",
        "batch_size": train.batch_size,
        **choice.to_dict(),
        **({"device": train.device} if train.device != "cpu" else {}),
    }
    return choice


def path_for(*, model: ModelSpec, train: TrainSpec, precision: str) -> PathChoice:
    """The path the engine trains ``train`` on once its precision is resolved to ``precision``.

    :func:`choose_path`'s choice, or, where the caller resolved another precision (tests of other CPUs
    replace :func:`~miaudit.training.hardware.resolve_precision`), the path chosen for that precision.
    The engine and the cache keys (:func:`miaudit.studies.cache.train_key`) both ask here.
    """
    choice = choose_path(model=model, train=train)
    if precision != choice.precision:
        choice = choose_path(model=model, train=dataclasses.replace(train, precision=precision))
    return choice


@contextmanager
def pinned(
    *, adam: str | None = None, max_chunk: int | None = None, stacked: bool = False, fused: bool = False
) -> Iterator[None]:
    """Within the block, override the chosen path in this thread (benchmarks compare paths this way).

    Parameters
    ----------
    adam : {"compiled", "torch"}, optional
    max_chunk : int, optional
        Most models per stack.
    stacked : bool
        Use the stacked path where the fused one was chosen.
    fused : bool
        Use the fused path wherever it applies (:func:`~miaudit.training.engine.fused.fused_applies`),
        chosen or not.

    Raises
    ------
    ValueError
        An unknown ``adam`` or a ``max_chunk`` below 1.
    """
    if adam is not None and adam not in _ADAMS:
        raise ValueError(f"adam must be one of {', '.join(map(repr, _ADAMS))}; got {adam!r}")
    if max_chunk is not None and (isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < 1):
        raise ValueError(f"max_chunk must be an integer >= 1; got {max_chunk!r}")
    if stacked and fused:
        raise ValueError("pin the stacked path or the fused one, not both")
    pin = {k: v for k, v in {"adam": adam, "max_chunk": max_chunk, "stacked": stacked, "fused": fused}.items() if v}
    token = _PINNED.set(pin)
    try:
        yield
    finally:
        _PINNED.reset(token)


def describe_choice(*, model: ModelSpec, train: TrainSpec) -> dict[str, Any]:
    """Which path this workload trains on and why, as a JSON-able dict for a run manifest.

    Keys: ``engine`` ("batched" or "loop"), ``precision``, ``path``, ``adam``, ``max_chunk``,
    ``source`` (measured, cache, rules, pinned), ``reason``, ``ms_per_model_step`` (each timed
    candidate), ``key``, ``tuning_file``. The plain loop (``train.engine == "loop"``) computes in
    float32 and has no path to choose. Chooses (and times, at first use) as the engine would.
    """
    if train.engine == "loop":
        return {"engine": "loop", "precision": "f32", "reason": "the plain PyTorch loop, one model at a time"}
    choice = choose_path(model=model, train=train)
    device = {"device": train.device} if train.device != "cpu" else {}
    return {"engine": "batched", **choice.to_dict(), **device, "tuning_file": str(tuning_file())}


def choices_made() -> list[dict[str, Any]]:
    """Every workload's path chosen in this process so far (:func:`describe_choice`'s fields, plus the model)."""
    with _lock:
        return list(_described.values())


def _clear_memo() -> None:
    """Forget this process's choices (tests)."""
    with _lock:
        _memo.clear()
        _described.clear()


def _read(path: Path) -> dict[str, Any]:
    """The tuning file's entries; an unreadable or damaged file is warned about and treated as empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning("cannot read the tuning cache %s (%s); measuring again", path, exc)
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("entries"), dict):
            raise ValueError(f"not a tuning cache of format {_FORMAT}")
    except ValueError as exc:
        logger.warning("ignoring the damaged tuning cache %s (%s); measuring again and rewriting it", path, exc)
        return {}
    entries: dict[str, Any] = data["entries"]
    return entries


def _cached(path: Path, h: str, *, model: ModelSpec, train: TrainSpec) -> PathChoice | None:
    entry = _read(path).get(h)
    if entry is None:
        return None
    try:
        c = entry["choice"]
        cand = Candidate(str(c["precision"]), str(c["path"]), str(c["adam"]), int(c["max_chunk"]))
        # any chunk size: the run's memory budget caps it again (plan_chunks)
        possible = {dataclasses.replace(x, chunk=cand.chunk) for x in candidates(model=model, train=train)}
        if cand not in possible or cand.chunk < 1:
            raise ValueError(
                f"precision {cand.precision!r}, path {cand.path!r}, Adam {cand.adam!r}, chunks of {cand.chunk}: "
                "not a path this workload can take here"
            )
        timings = tuple((str(label), float(s)) for label, s in entry.get("timings", []))
        reason = f"cached choice (measured {entry.get('measured', '?')}): {entry['reason']}"
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning("ignoring a damaged entry of the tuning cache %s (%s); measuring again", path, exc)
        return None
    return PathChoice(cand.precision, cand.path, cand.adam, cand.chunk, "cache", reason, timings, h)


def _measure_and_store(
    path: Path,
    key: dict[str, Any],
    h: str,
    *,
    model: ModelSpec,
    train: TrainSpec,
    seconds: float,
    measure: Measure | None,
) -> PathChoice:
    cands = candidates(model=model, train=train)
    t0 = time.perf_counter()
    try:
        winner, best = pick_fastest(cands, measure or _real_measure(model, train), seconds=seconds)
    finally:
        _pool.cache_clear()  # the synthetic records (over 100 MB for image-sized inputs) are not kept
    elapsed = time.perf_counter() - t0
    timed = sorted(best.items(), key=lambda kv: kv[1])
    if best and not math.isfinite(best.get(winner, math.inf)):
        return rule_choice(model=model, train=train, why="every timed path failed (see the warnings)")
    reason = _reason(winner, best, cands[0], elapsed)
    choice = PathChoice(
        precision=winner.precision,
        path=winner.path,
        adam=winner.adam,
        max_chunk=winner.chunk,
        source="measured",
        reason=reason,
        timings=tuple((c.label, t) for c, t in timed if math.isfinite(t)),
        key=h,
    )
    shape = "-".join(map(str, model.layer_sizes))
    logger.info("tuned the path for MLP %s, batch %d: %s", shape, train.batch_size, reason)
    entries = _read(path)
    entries[h] = {
        "key": key,
        "choice": {"precision": winner.precision, "path": winner.path, "adam": winner.adam, "max_chunk": winner.chunk},
        "reason": reason,
        "timings": [[label, t] for label, t in choice.timings],
        "measured": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_text(path, json.dumps({"format": _FORMAT, "entries": entries}, indent=1, sort_keys=True))
    except OSError as exc:
        logger.warning("cannot write the tuning cache %s (%s); the choice holds for this process only", path, exc)
    return choice


def _someone_faster(best: dict[Candidate, float], c: Candidate) -> bool:
    """Whether some other timed candidate was faster than ``c``."""
    return any(t < best[c] for o, t in best.items() if o != c)


def _reason(winner: Candidate, best: dict[Candidate, float], rule: Candidate, elapsed: float) -> str:
    if not best:
        return f"{winner.label}: the only path this workload can take here"
    t = best[winner]
    parts = [f"{winner.label}, {1e3 * t:.4f} ms per model-step (timed {len(best)} paths in {elapsed:.1f} s)"]
    others = sorted((c for c in best if c != winner and math.isfinite(best[c])), key=lambda c: best[c])
    if others:
        parts.append(f"next {others[0].label} {best[others[0]] / t:.2f}x the time")
    if rule != winner and rule in best and math.isfinite(best[rule]):
        parts.append(f"the fixed rules' {rule.label} {best[rule] / t:.2f}x the time")
    elif rule == winner and _someone_faster(best, winner):
        parts.append("the fixed rules' path kept: no other path is 3% faster")
    elif rule == winner:
        parts.append("the same path as the fixed rules")
    return "; ".join(parts)

"""Training throughput: scikit-learn, plain PyTorch loops and the batched engine, side by side.

The seed's recipe: MLP 784-128-10, Adam (lr 1e-3), batch 64, 30 epochs, 3,000 Fashion-MNIST training
images per model (each model its own random 3,000 of the 60,000), test accuracy on the 10,000 test
images. Everything is measured in this one run on this machine: seconds per model, models per
minute, achieved GFLOP/s (3 x forward FLOPs, 54.9 GFLOP per model for the full recipe) as a fraction
of the matrix-multiply peak measured in the same run for the precision the row computes in, and the
ratio to the fastest reference.

References (every one computes in float32):

* scikit-learn's MLPClassifier on float32 input. It keeps float32 data in float32: weights, Adam
  state and every product are float32 (``coefs_[0].dtype`` is checked and printed);
* miaudit's plain loop (``train_one``) with 2 torch threads and with 1;
* the loop a user would write for a multi-core machine: one single-threaded PyTorch loop per core
  in its own process, side by side, each training its share of the models, with fused Adam
  (``torch.optim.Adam(fused=True)``) and ``torch.set_flush_denormal(True)``.

The engine's path (precision for ``auto``, the Adam step, models per chunk, the fused path) is the
one :mod:`miaudit.training.tuning` measured and cached for this workload on this machine (timed before
the first row if not cached yet): the run prints it and why. ``--quick`` reads the same cached choice as
the full run (the key is the workload's shape, not its epochs), so both run the same path. Beside it:
the same engine with the compiled Adam step and with PyTorch's fused Adam (the rest as chosen), and
the engine under the fixed rules it used before tuning (``MIAUDIT_TUNING=off``).

Timing is interleaved: every repeat times every row once (the order rotates between repeats), and
each row reports the median of its repeats, so every K is timed as often as every reference and
load from other processes falls on all rows alike. The matrix-multiply peaks are measured after
every timed row; the best of them is the peak.

Usage::

    PYTHONPATH=src python benchmarks/train_throughput.py            # full run (8-10 minutes on a quiet 2-core machine)
    PYTHONPATH=src python benchmarks/train_throughput.py --quick    # about a minute, 3 epochs
    PYTHONPATH=src python benchmarks/train_throughput.py --quick --emulate-avx2   # as on an AVX2-only CPU

The last two lines are ``fraction_of_peak=<f>`` (the engine in ``auto`` precision at its best K, as
a fraction of the matmul peak of that precision) and ``speedup_vs_plain_loop=<x>`` (the same
engine row over the fastest reference of the run).

``--emulate-avx2`` runs the benchmark as on a CPU with AVX2 but without AVX-512 and AMX: the process
starts again with ``MIAUDIT_NATIVE_ISA=avx2`` (the compiled kernels built with AVX-512 off, no native
bf16, so ``auto`` is float32 and only f32 rows run unless ``--precisions`` says otherwise),
``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own vectorised kernels), ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's
kernels, which PyTorch's bf16 products use) and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL, which PyTorch's
float32 products use). The run prints what each of them did; what cannot be limited is said there too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from miaudit.data import load_dataset
from miaudit.seeding import torch_generator
from miaudit.training import batched, tuning
from miaudit.training.batched import predict_proba_stacked, train_batched
from miaudit.training.executors import InProcessExecutor, single_threaded_torch
from miaudit.training.hardware import matmul_peak_gflops, native_bf16
from miaudit.training.native import NativeKernels, load_mlp1, native_status
from miaudit.training.networks import MLPParams, build_module, init_params
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_one

N_TRAIN = 3000


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train (60000, 784) float32 in [0, 1], y_train (60000,), X_test (10000, 784), y_test (10000,))."""
    ds = load_dataset("fashion-mnist")
    n_train = 60000  # the official training files come first, then the 10,000 test images
    # copies: the loader's cached arrays are read-only
    return ds.X[:n_train].copy(), ds.y[:n_train].copy(), ds.X[n_train:].copy(), ds.y[n_train:].copy()


def cpu_model_name() -> str:
    """The CPU's model name as ``lscpu`` prints it (from /proc/cpuinfo), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def n_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def flops_per_model(spec: ModelSpec, n_train: int, epochs: int) -> float:
    """3 x forward FLOPs (forward, input gradient, weight gradient)."""
    s = spec.layer_sizes
    return 3.0 * 2.0 * sum(a * b for a, b in itertools.pairwise(s)) * n_train * epochs


# --------------------------------------------------------------------------------------------
# The trainers under test: each call trains its models once and returns (seconds per model, accuracies)
# --------------------------------------------------------------------------------------------


def time_sklearn(X, y, sets, Xte, yte, epochs: int) -> tuple[float, list[float], str]:
    """scikit-learn's MLPClassifier on float32 X; also returns the dtype it trained in (its ``coefs_``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    total, accs, dtype = 0.0, [], ""
    for k, s in enumerate(sets):
        clf = MLPClassifier(
            hidden_layer_sizes=(128,),
            solver="adam",
            learning_rate_init=1e-3,
            batch_size=64,
            max_iter=epochs,
            alpha=0.0,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=k,
        )
        Xs = X[s]  # float32: MLPClassifier keeps float32 data, weights and Adam state in float32
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Xs, y[s])
        total += time.perf_counter() - t0
        accs.append(float(clf.score(Xte, yte)))
        dtype = str(clf.coefs_[0].dtype)
    return total / len(sets), accs, dtype


def time_loop(X, y, sets, Xte, yte, spec, train, threads: int) -> tuple[float, list[float]]:
    """miaudit's plain loop (:func:`train_one`) with ``threads`` torch threads, one model after another."""
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    total, accs = 0.0, []
    try:
        for k, s in enumerate(sets):
            t0 = time.perf_counter()
            m = train_one(Xt, yt, s, seed=k, model=spec, train=train)
            total += time.perf_counter() - t0
            accs.append(m.accuracy(Xte, yte))
    finally:
        torch.set_num_threads(before)
    return total / len(sets), accs


def train_fused_loop(Xs: torch.Tensor, ys: torch.Tensor, *, seed: int, spec: ModelSpec, train: TrainSpec) -> MLPParams:
    """The loop a user writes: ``nn.Linear`` layers, ``F.cross_entropy``, ``torch.optim.Adam(fused=True)``.

    Parameters
    ----------
    Xs : Tensor of shape (n_train, n_features), float32
        This model's training set.
    ys : Tensor of shape (n_train,), int64
    seed : int
        Initial weights (miaudit's :func:`init_params`) and minibatch order, as in :func:`train_one`.
    """
    gen = torch_generator(seed, "train")
    weights, biases = init_params(spec, gen)
    net = build_module(spec)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, w, b in zip(linears, weights, biases, strict=True):
            lin.weight.copy_(w.T)
            lin.bias.copy_(b)
    opt = torch.optim.Adam(net.parameters(), lr=train.lr, fused=True)
    n = len(Xs)
    for _ in range(train.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, train.batch_size):
            batch = order[start : start + train.batch_size]
            loss = F.cross_entropy(net(Xs[batch]), ys[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return MLPParams(
        spec=spec,
        weights=tuple(m.weight.detach().T.contiguous().numpy().copy() for m in linears),
        biases=tuple(m.bias.detach().numpy().copy() for m in linears),
    )


_WORKER_DATA: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _fused_loop_worker(
    sets: list[np.ndarray], seeds: list[int], spec: ModelSpec, train: TrainSpec
) -> tuple[int, float, float, list[float]]:
    """One process of the side-by-side reference: (pid, start, end, test accuracies) of its models.

    ``start`` and ``end`` are ``time.perf_counter()`` values (CLOCK_MONOTONIC on Linux: comparable
    between processes).
    """
    global _WORKER_DATA
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if _WORKER_DATA is None:
        _WORKER_DATA = load_fashion_mnist()
    X, y, Xte, yte = _WORKER_DATA
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    subsets = [(Xt[torch.from_numpy(s)], yt[torch.from_numpy(s)]) for s in sets]
    t0 = time.perf_counter()
    models = [
        train_fused_loop(Xs, ys, seed=k, spec=spec, train=train) for (Xs, ys), k in zip(subsets, seeds, strict=True)
    ]
    t1 = time.perf_counter()
    return os.getpid(), t0, t1, [m.accuracy(Xte, yte) for m in models]


class SideBySideLoops:
    """One single-threaded fused-Adam loop per core, each in its own (spawned) process."""

    def __init__(self, n_procs: int) -> None:
        self.n_procs = n_procs
        self.pool = ProcessPoolExecutor(max_workers=n_procs, mp_context=mp.get_context("spawn"))

    def run(self, sets: list[np.ndarray], spec: ModelSpec, train: TrainSpec) -> tuple[float, list[float]]:
        """Train ``sets`` (model k on process k mod n_procs); return (wall seconds per model, accuracies)."""
        shares = [list(range(p, len(sets), self.n_procs)) for p in range(self.n_procs)]
        futures = [
            self.pool.submit(_fused_loop_worker, [sets[k] for k in share], share, spec, train)
            for share in shares
            if share
        ]
        results = [f.result() for f in futures]
        if len({pid for pid, *_ in results}) != len(results):
            raise RuntimeError("the side-by-side loops ran in fewer processes than cores; rerun the benchmark")
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        return wall / len(sets), [a for r in results for a in r[3]]

    def close(self) -> None:
        self.pool.shutdown()


def time_engine(
    X, y, sets, Xte, yte, spec, train, pin: dict | None = None, rules: bool = False
) -> tuple[float, list[float]]:
    """The batched engine on all cores: its chosen path, parts of it ``pin``-ned, or the fixed rules."""
    before = os.environ.get(tuning.TUNING_ENV)
    if rules:
        os.environ[tuning.TUNING_ENV] = "off"
    try:
        with tuning.pinned(**(pin or {})):
            t0 = time.perf_counter()
            models = train_batched(
                X, y, sets, seeds=list(range(len(sets))), model=spec, train=train, executor=InProcessExecutor()
            )
            s = (time.perf_counter() - t0) / len(sets)
    finally:
        if rules:
            if before is None:
                del os.environ[tuning.TUNING_ENV]
            else:
                os.environ[tuning.TUNING_ENV] = before
    accs = (predict_proba_stacked(models, Xte, dtype=np.float32).argmax(axis=2) == yte).mean(axis=1)
    return s, [float(a) for a in accs]


def _path_text(c: tuning.PathChoice) -> str:
    if c.fused:
        kernels = load_mlp1()
        return f"{c.precision} fused path ({kernels.kind if kernels is not None else 'kernels not loaded'})"
    return (
        f"{c.precision} stacked, {'compiled' if c.adam == 'compiled' else 'PyTorch'} Adam, <= {c.max_chunk} per chunk"
    )


def warm_up(X, y, spec, side: SideBySideLoops, precisions: tuple[str, ...] = ("f32", "bf16")) -> None:
    """One-time costs (imports on first optimizer step, oneDNN kernel generation, worker start-up) before timing."""
    one_epoch = TrainSpec(epochs=1, engine="loop")
    for threads in (torch.get_num_threads(), 1):
        time_loop(X, y, [np.arange(256)], X[:10], y[:10], spec, one_epoch, threads)
    side.run([np.arange(256)] * side.n_procs, spec, one_epoch)
    for prec in precisions:
        train = TrainSpec(epochs=1, precision=prec, engine="batched")
        train_batched(X, y, [np.arange(256)] * 2, seeds=[0, 1], model=spec, train=train)


# --------------------------------------------------------------------------------------------
# Where the stacked path's time goes
# --------------------------------------------------------------------------------------------

_CATEGORIES = {
    "aten::bmm": "matrix products",
    "aten::baddbmm": "matrix products",
    "aten::_fused_adam_": "Adam update",
    "miaudit::adam_step": "Adam update",
    "aten::copy_": "bf16/f32 copies",
    "aten::index_select": "minibatch gather",
}


def breakdown(X, y, sets, spec, train) -> dict[str, float]:
    """Share of wall time per category for one chunk trained on one thread.

    Python and dispatch: the wall time of the same number of steps of a tiny network (8-4-2), whose
    arithmetic is negligible. The rest is split between operators by their torch.profiler self time
    (the native Adam step is recorded as ``miaudit::adam_step``).
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    def run(X, y, spec) -> float:
        t0 = time.perf_counter()
        train_batched(
            X, y, sets, seeds=list(range(len(sets))), model=spec, train=train, executor=InProcessExecutor(n_workers=1)
        )
        return time.perf_counter() - t0

    tiny = ModelSpec(n_features=8, n_classes=2, hidden=(4,))
    with single_threaded_torch():
        wall = min(run(X, y, spec), run(X, y, spec))
        python = min(run(X[:, :8], y % 2, tiny), run(X[:, :8], y % 2, tiny))
        plain_step = NativeKernels.adam_step

        def recorded_step(self, *args, **kwargs):
            with record_function("miaudit::adam_step"):
                plain_step(self, *args, **kwargs)

        NativeKernels.adam_step = recorded_step  # type: ignore[method-assign]
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run(X, y, spec)
        finally:
            NativeKernels.adam_step = plain_step  # type: ignore[method-assign]
    ops: dict[str, float] = {}
    for ev in prof.key_averages():
        cat = _CATEGORIES.get(ev.key, "other operators")
        ops[cat] = ops.get(cat, 0.0) + ev.self_cpu_time_total
    total = sum(ops.values())
    python = min(python / wall, 1.0)
    shares = {k: (1.0 - python) * v / total for k, v in ops.items()}
    shares["Python and dispatch"] = python
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process and its reaped children).

    The difference between two calls, machine minus own, is what other processes used in between.
    """
    own = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return float("nan"), own
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6) if i < len(fields))  # user, nice, system, irq, softirq
    return busy / os.sysconf("SC_CLK_TCK"), own


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------------------------
# The interleaved run
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One trainer under test; ``run()`` trains its models once and returns (s/model, accuracies)."""

    name: str
    precision: str  # what it computes in: "f32" or "bf16"
    reference: bool  # a reference (the engine's rows are not)
    run: Callable[[], tuple[float, list[float]]]
    key: tuple[str, int] | None = None  # (precision, K) for the engine's main rows
    times: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def interleave(rows: list[Row], peaks: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Time every row once per repeat, rotating the order, and every peak after every row; return the peaks seen.

    The peaks are measured that often because other processes' load comes in bursts: one short
    measurement can fall into a burst that a row of several seconds averages over. The best of
    them is the machine's peak.
    """
    seen: dict[str, list[float]] = {p: [] for p in peaks}
    for rep in range(repeats):
        shift = (rep * len(rows)) // max(repeats, 1)
        for row in rows[shift:] + rows[:shift]:
            s, accs = row.run()
            row.times.append(s)
            row.accs = accs  # accuracy of the last repeat's models
            for name, measure in peaks.items():
                seen[name].append(measure())
            print(f"# repeat {rep + 1}/{repeats}: {row.name} ({row.precision}) {s:.3f} s/model", file=sys.stderr)
    return seen


#: What ``--emulate-avx2`` sets before the process starts again: the engine's kernels and PyTorch's libraries.
EMULATE_AVX2_ENV = {
    "MIAUDIT_NATIVE_ISA": "avx2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def restart_emulating_avx2(argv: list[str] | None) -> None:
    """Start this benchmark again in a process whose environment limits every library to AVX2 (never returns).

    PyTorch, oneDNN and MKL read their limits when they first run: the variables must be set before torch
    is imported, hence a new process (the side-by-side loops' processes inherit them).
    """
    env = {**os.environ, **EMULATE_AVX2_ENV}
    args = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *args], env)


def emulating_avx2() -> bool:
    return all(os.environ.get(k) == v for k, v in EMULATE_AVX2_ENV.items())


def mkl_limit_works() -> tuple[float, float]:
    """GFLOP/s of a float32 batched product (one thread) in processes with MKL_ENABLE_INSTRUCTIONS=SSE4_2 and =AVX2.

    Equal rates mean MKL ignored the limit (it picks its own code path on some CPUs).
    """
    code = "\n".join(
        [
            "import time, torch",
            "torch.set_num_threads(1)",
            "a, w = torch.rand(16, 64, 785), torch.rand(16, 785, 128)",
            "torch.bmm(a, w)",
            "best = float('inf')",
            "for _ in range(40):",
            "    t0 = time.perf_counter(); torch.bmm(a, w); best = min(best, time.perf_counter() - t0)",
            "print(2 * 16 * 64 * 785 * 128 / best / 1e9)",
        ]
    )
    rates = []
    for isa in ("SSE4_2", "AVX2"):
        env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": isa}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        rates.append(float(out.stdout.strip() or "nan"))
    return rates[0], rates[1]


def emulation_notes() -> list[str]:
    """What --emulate-avx2 limited, as measured in this process, and what it could not."""
    cap = torch.backends.cpu.get_cpu_capability()
    sse, avx2 = mkl_limit_works()
    mkl = (
        f"MKL_ENABLE_INSTRUCTIONS=AVX2: had no effect here (a float32 batched product ran at {sse:.0f} GFLOP/s "
        f"limited to SSE4.2 and {avx2:.0f} limited to AVX2: MKL chose its own code path on this CPU), so the "
        "float32 matrix products may still use AVX-512"
        if abs(sse - avx2) < 0.2 * max(sse, avx2)
        else f"MKL_ENABLE_INSTRUCTIONS=AVX2: obeyed (float32 batched product {sse:.0f} GFLOP/s with SSE4.2, "
        f"{avx2:.0f} with AVX2)"
    )
    return [
        "# EMULATED AVX2-ONLY CPU (--emulate-avx2): " + ", ".join(f"{k}={v}" for k, v in EMULATE_AVX2_ENV.items()),
        f"# - the engine's compiled kernels: {native_status()}",
        f"# - native bf16: {native_bf16()} (AVX-512 and AMX flags hidden), so precision auto is float32",
        f"# - ATEN_CPU_CAPABILITY=avx2: PyTorch's own kernels (elementwise, softmax, Adam) report CPU capability {cap}",
        "# - ONEDNN_MAX_CPU_ISA=AVX2: oneDNN's AVX-512 and AVX512-BF16 kernels off (bf16 products are emulated, "
        "as on an AVX2 CPU)",
        f"# - {mkl}",
        "# - not emulated: this CPU's caches, memory bandwidth, clock and core count: the rows are those of an "
        "AVX2 CPU with this machine's memory system",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs, K up to 16: about a minute")
    ap.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    ap.add_argument("--ks", type=str, default=None, help="comma-separated K values for the engine")
    ap.add_argument(
        "--precisions", type=str, default=None, help="comma-separated (default f32,bf16; f32 with --emulate-avx2)"
    )
    ap.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="run as on a CPU with AVX2 but no AVX-512 or AMX (kernels built without them, PyTorch limited)",
    )
    ap.add_argument("--repeats", type=int, default=None, help="timings per row (default 3, or 2 for the full run)")
    ap.add_argument("--no-sklearn", action="store_true")
    args = ap.parse_args(argv)
    if args.emulate_avx2 and not emulating_avx2():
        restart_emulating_avx2(argv)
    precisions = tuple((args.precisions or ("f32" if args.emulate_avx2 else "f32,bf16")).split(","))

    epochs = args.epochs or (3 if args.quick else 30)
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 4, 16] if args.quick else [1, 4, 16, 64, 256])
    repeats = args.repeats or (3 if args.quick else 2)
    if repeats < 1 or not ks or min(ks) < 1:
        ap.error(f"--repeats and every K must be >= 1; got repeats={repeats}, ks={ks}")
    # models per timing: one for the one-process references (a 2-thread loop can stall 30-50x while another
    # process holds a core), an equal share per core for the side-by-side loops
    n_baseline = 1
    cores = n_cores()
    n_side = cores * (1 if args.quick else 2)
    torch.set_flush_denormal(True)
    load0 = loadavg()
    busy0, own0 = cpu_seconds()
    started = datetime.datetime.now().astimezone()
    t_start = time.perf_counter()
    X, y, Xte, yte = load_fashion_mnist()
    rng = np.random.default_rng(0)
    sets = [rng.choice(len(X), N_TRAIN, replace=False) for _ in range(max([*ks, n_baseline, n_side]))]
    spec = ModelSpec(n_features=784, n_classes=10, hidden=(128,), name="simple")
    flops = flops_per_model(spec, N_TRAIN, epochs)
    # the tuned choices (timed now if this machine has none cached for the workload): auto, and per precision
    auto_train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, precision="auto", engine="batched")
    choice = tuning.choose_path(model=spec, train=auto_train)
    auto = choice.precision
    rules = tuning.rule_choice(model=spec, train=auto_train)

    print(f"# CPU: {cpu_model_name()} ({cores} cores, {platform.machine()}); started {started:%Y-%m-%d %H:%M %Z}")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}; "
        f"native kernels: {native_status()}"
    )
    if args.emulate_avx2:
        print("\n".join(emulation_notes()))
    print(f"# tuned path ({choice.source}; {tuning.tuning_file()}): {_path_text(choice)}; why: {choice.reason}")
    print(f"# previous fixed rules' path: {_path_text(rules)}")
    print(
        f"# recipe: MLP 784-128-10, Adam lr 1e-3, batch 64, {epochs} epochs, {N_TRAIN} images/model; "
        f"{flops / 1e9:.1f} GFLOP/model (3x forward)"
    )

    side = SideBySideLoops(cores)
    try:
        warm_up(X, y, spec, side, precisions)
        loop_train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, engine="loop")
        threads = torch.get_num_threads()
        rows: list[Row] = []
        sk_dtype: list[str] = []
        if not args.no_sklearn:

            def run_sklearn() -> tuple[float, list[float]]:
                s, accs, dtype = time_sklearn(X, y, sets[:n_baseline], Xte, yte, epochs)
                sk_dtype.append(dtype)
                return s, accs

            rows.append(Row("scikit-learn MLPClassifier (float32 X)", "f32", True, run_sklearn))
        for n in sorted({threads, 1}, reverse=True):
            rows.append(
                Row(
                    f"miaudit plain loop, {n} thread{'s' if n > 1 else ''}",
                    "f32",
                    True,
                    lambda n=n: time_loop(X, y, sets[:n_baseline], Xte, yte, spec, loop_train, n),
                )
            )
        rows.append(
            Row(
                f"PyTorch loop, fused Adam, {cores} processes x 1 thread",
                "f32",
                True,
                lambda: side.run(sets[:n_side], spec, loop_train),
            )
        )
        for prec in precisions:
            # the tuned precision runs as "auto" (its path is the auto choice); the other one explicitly, on the
            # path tuned for it
            train = auto_train if prec == auto else dataclasses.replace(auto_train, precision=prec)
            path = _path_text(tuning.choose_path(model=spec, train=train))
            for K in ks:
                rows.append(
                    Row(
                        f"engine K={K}{' (auto)' if prec == auto else ''}: {path}",
                        prec,
                        False,
                        lambda K=K, train=train: time_engine(X, y, sets[:K], Xte, yte, spec, train),
                        key=(prec, K),
                    )
                )
        # at the largest K <= 64, auto precision: the stacked path with each Adam step (the rest as tuned),
        # and the fixed rules the engine used before tuning
        k_cmp = max([k for k in ks if k <= 64] or [min(ks)])
        for adam, label in (("compiled", "compiled Adam"), ("torch", "PyTorch Adam")):
            rows.append(
                Row(
                    f"engine K={k_cmp}, stacked, {label}",
                    auto,
                    False,
                    lambda adam=adam: time_engine(
                        X, y, sets[:k_cmp], Xte, yte, spec, auto_train, {"adam": adam, "stacked": True}
                    ),
                )
            )
        rows.append(
            Row(
                f"engine K={k_cmp}, previous fixed rules: {_path_text(rules)}",
                rules.precision,
                False,
                lambda: time_engine(X, y, sets[:k_cmp], Xte, yte, spec, auto_train, rules=True),
            )
        )
        dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
        used = {"f32", *(r.precision for r in rows)}  # f32 always: the f32-peak column
        peak_fns = {p: (lambda dt=dtypes[p]: matmul_peak_gflops(dt, seconds=0.5)) for p in ("f32", "bf16") if p in used}
        peaks_seen = interleave(rows, peak_fns, repeats)
    finally:
        side.close()
    peak = {p: max(v) for p, v in peaks_seen.items()}  # a peak: the best of the measurements

    k_prof = min(choice.max_chunk if not choice.fused else batched.MAX_CHUNK, max(ks))
    prof_train = TrainSpec(epochs=min(epochs, 3), batch_size=64, lr=1e-3, precision=auto, engine="batched")
    # the stacked path (the fused one-hidden-layer steps are one opaque call), one chunk
    with tuning.pinned(stacked=True, max_chunk=k_prof):
        shares = breakdown(X, y, sets[:k_prof], spec, prof_train)

    refs = [r for r in rows if r.reference]
    ref = min(refs, key=lambda r: r.seconds)  # the fairest reference is the fastest one
    s_ref = ref.seconds

    def gflops(r: Row) -> float:
        return flops / r.seconds / 1e9

    print(
        f"# matmul peak (2048^2, best of {len(peaks_seen['f32'])} measurements, one after every timed row): "
        + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peak.items())
    )
    if sk_dtype:
        print(
            f"# scikit-learn {__import__('sklearn').__version__}: MLPClassifier given float32 X trains in "
            f"{sk_dtype[-1]} (coefs_[0].dtype; weights, Adam state and products all in that dtype)"
        )
    print()
    print(
        "| trainer | precision | s/model | models/min | GFLOP/s | % of f32 peak | % of own peak | vs fastest reference "
        "| test acc |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gf = gflops(r)
        print(
            f"| {r.name} | {r.precision} | {r.seconds:.3f} | {60 / r.seconds:.1f} | {gf:.0f} | "
            f"{100 * gf / peak['f32']:.0f}% | {100 * gf / peak[r.precision]:.0f}% | {s_ref / r.seconds:.2f}x | "
            f"{float(np.mean(r.accs)):.3f} |"
        )
    elapsed = time.perf_counter() - t_start
    busy1, own1 = cpu_seconds()
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    share = others / (cores * elapsed)
    print(
        f"\n# Each row: median of {repeats} timings, interleaved (each repeat times every row once, in a rotating "
        f"order). One-process references train {n_baseline} model(s) per timing, the side-by-side loops "
        f"{n_side} ({n_side // cores} per process), engine rows K. s/model of the side-by-side loops is their "
        f"wall time over all models. % of own peak: against the matmul peak of the row's precision."
    )
    print(
        f"# Shared machine: other processes used {others:.0f} of the {cores * elapsed:.0f} core-seconds of "
        f"this run ({100 * share:.0f}% of its {cores} cores). Load average at start (before this run) / end: "
        f"{load0} / {loadavg()}. Run time {elapsed:.0f} s. Rows that split one "
        f"model over {threads} threads (scikit-learn's BLAS, the {threads}-thread loop) slow down most when other "
        f"processes take a core."
    )
    print(
        f"# where the stacked path's time goes ({auto}, stacked (pinned), {k_prof} models in one chunk, "
        f"one thread, share of wall time): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    )
    print(f"# fastest (fairest) reference: {ref.name}, {s_ref:.3f} s/model (f32); every reference computes in f32")

    def best(prec: str) -> Row | None:
        cands = [r for r in rows if r.key is not None and r.key[0] == prec]
        return min(cands, key=lambda r: r.seconds) if cands else None

    for prec, label in (("f32", "equal precision"), ("bf16", "mixed precision")):
        b = best(prec)
        if b is not None:
            print(
                f"# {label}: engine {prec} best at {b.name.removeprefix('engine ')}: {b.seconds:.3f} s/model "
                f"vs f32 reference {s_ref:.3f} s/model = {s_ref / b.seconds:.2f}x"
            )
    b_auto = best(auto)
    print(f"# tuned path ({choice.source}): {_path_text(choice)}; why: {choice.reason}")
    if b_auto is None:
        print("fraction_of_peak=nan")
        print("speedup_vs_plain_loop=nan")
        return 0
    rule_row = next(r for r in rows if "previous fixed rules" in r.name)
    tuned_row = next((r for r in rows if r.key == (auto, k_cmp)), None)
    if tuned_row is not None:
        print(
            f"# K={k_cmp}: tuned {tuned_row.seconds:.3f} s/model, previous fixed rules {rule_row.seconds:.3f} s/model "
            f"= {rule_row.seconds / tuned_row.seconds:.2f}x"
        )
    print(
        f"# engine auto ({auto}) best at {b_auto.name.removeprefix('engine ')}: {b_auto.seconds:.3f} s/model, "
        f"{gflops(b_auto):.0f} GFLOP/s of a {peak[auto]:.0f} GFLOP/s {auto} peak"
    )
    if args.emulate_avx2:
        faster = "still the fastest way" if s_ref / b_auto.seconds > 1.0 else "NOT the fastest way"
        print(
            f"# emulated AVX2-only CPU: the engine ({auto}) is {faster} to train many models here: "
            f"{s_ref / b_auto.seconds:.2f}x the fastest reference ({ref.name})"
        )
    print(f"fraction_of_peak={gflops(b_auto) / peak[auto]:.2f}")
    print(f"speedup_vs_plain_loop={s_ref / b_auto.seconds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput: scikit-learn, the plain PyTorch loop and the batched engine, side by side.

The seed's recipe: MLP 784-128-10, Adam (lr 1e-3), batch 64, 30 epochs, 3,000 Fashion-MNIST training
images per model (each model its own random 3,000 of the 60,000), test accuracy on the 10,000 test
images. Everything is measured in this one run on this machine: seconds per model, models per
minute, achieved GFLOP/s (3 x forward FLOPs, 54.9 GFLOP per model for the full recipe) as a fraction
of the matrix-multiply peak measured here, the ratio to the plain loop, and mean test accuracy.

Usage::

    PYTHONPATH=src python benchmarks/train_throughput.py            # full run (several minutes)
    PYTHONPATH=src python benchmarks/train_throughput.py --quick    # under a minute, 3 epochs

The machine is shared: figures are medians of repeats where repeats are cheap, and vary by 10-30%
between runs. The last line is ``speedup_vs_plain_loop=<x>``: the engine in ``auto`` precision at
its best K over the plain loop.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from miaudit.data import load_dataset
from miaudit.training import batched
from miaudit.training.batched import predict_proba_stacked, train_batched
from miaudit.training.executors import InProcessExecutor, single_threaded_torch
from miaudit.training.hardware import matmul_peak_gflops, native_bf16, resolve_precision
from miaudit.training.native import NATIVE_ENV, NativeKernels, native_status
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_one


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train (60000, 784) float32 in [0, 1], y_train, X_test (10000, 784), y_test)."""
    ds = load_dataset("fashion-mnist")
    n_train = 60000  # the official training files come first, then the 10,000 test images
    # copies: the loader's cached arrays are read-only
    return ds.X[:n_train].copy(), ds.y[:n_train].copy(), ds.X[n_train:].copy(), ds.y[n_train:].copy()


def flops_per_model(spec: ModelSpec, n_train: int, epochs: int) -> float:
    """3 x forward FLOPs (forward, input gradient, weight gradient)."""
    s = spec.layer_sizes
    return 3.0 * 2.0 * sum(a * b for a, b in itertools.pairwise(s)) * n_train * epochs


def time_sklearn(X, y, sets, Xte, yte, epochs: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    times, accs = [], []
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
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[s], y[s])
        times.append(time.perf_counter() - t0)
        accs.append(clf.score(Xte, yte))
    return statistics.median(times), float(np.mean(accs))


def time_loop(X, y, sets, Xte, yte, spec, train, threads: int) -> tuple[list[float], list[float]]:
    """Seconds and test accuracy of each model trained by the plain loop with ``threads`` torch threads."""
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times, accs = [], []
    try:
        for k, s in enumerate(sets):
            t0 = time.perf_counter()
            m = train_one(Xt, yt, s, seed=k, model=spec, train=train)
            times.append(time.perf_counter() - t0)
            accs.append(m.accuracy(Xte, yte))
    finally:
        torch.set_num_threads(before)
    return times, accs


def time_engine(X, y, sets, Xte, yte, spec, train, repeats: int) -> tuple[float, float]:
    times = []
    models: list[MLPParams] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        models = train_batched(
            X, y, sets, seeds=list(range(len(sets))), model=spec, train=train, executor=InProcessExecutor()
        )
        times.append((time.perf_counter() - t0) / len(sets))
    acc = (predict_proba_stacked(models, Xte, dtype=np.float32).argmax(axis=2) == yte).mean()
    return statistics.median(times), float(acc)


def warm_up(X, y, spec) -> None:
    """One-time costs (imports on first optimizer step, oneDNN kernel generation) before any timing."""
    for threads in (torch.get_num_threads(), 1):
        time_loop(X, y, [np.arange(256)], X[:10], y[:10], spec, TrainSpec(epochs=1, engine="loop"), threads)
    for prec in ("f32", "bf16"):
        train_batched(
            X,
            y,
            [np.arange(256)] * 2,
            seeds=[0, 1],
            model=spec,
            train=TrainSpec(epochs=1, precision=prec, engine="batched"),
        )


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


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs, K up to 16: under a minute")
    ap.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    ap.add_argument("--ks", type=str, default=None, help="comma-separated K values for the engine")
    ap.add_argument("--precisions", type=str, default="f32,bf16")
    ap.add_argument("--no-sklearn", action="store_true")
    args = ap.parse_args(argv)

    epochs = args.epochs or (3 if args.quick else 30)
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 4, 16] if args.quick else [1, 4, 16, 64, 256])
    n_baseline = 1 if args.quick else 3
    n_train = 3000
    torch.set_flush_denormal(True)
    load0 = loadavg()
    X, y, Xte, yte = load_fashion_mnist()
    rng = np.random.default_rng(0)
    sets = [rng.choice(len(X), n_train, replace=False) for _ in range(max([*ks, n_baseline]))]
    spec = ModelSpec(n_features=784, n_classes=10, hidden=(128,), name="simple")
    flops = flops_per_model(spec, n_train, epochs)

    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}; "
        f"auto precision -> {resolve_precision('auto')}; native kernels: {native_status()}"
    )
    print(
        f"# recipe: MLP 784-128-10, Adam lr 1e-3, batch 64, {epochs} epochs, {n_train} images/model; "
        f"{flops / 1e9:.1f} GFLOP/model (3x forward)"
    )
    peak = {
        "f32": matmul_peak_gflops(torch.float32, seconds=2.0),
        "bf16": matmul_peak_gflops(torch.bfloat16, seconds=2.0),
    }
    print(f"# measured matmul peak (2048^2, this run): f32 {peak['f32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")

    warm_up(X, y, spec)
    rows: list[tuple[str, str, float, float]] = []  # name, precision, s/model, accuracy
    if not args.no_sklearn:
        s, a = time_sklearn(X, y, sets[:n_baseline], Xte, yte, epochs)
        rows.append(("scikit-learn MLPClassifier", "f64", s, a))
        print(f"# done: sklearn {s:.3f} s/model", file=sys.stderr)
    loop_train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, engine="loop")
    threads = torch.get_num_threads()
    # the plain loop is timed at the start and again at the end of the run (the machine is shared)
    loops = {n: time_loop(X, y, sets[:n_baseline], Xte, yte, spec, loop_train, n) for n in (threads, 1)}
    print(f"# done: plain loop {[statistics.median(v[0]) for v in loops.values()]} s/model", file=sys.stderr)
    n_before = len(rows)
    engine_rows: dict[tuple[str, int], float] = {}
    for prec in args.precisions.split(","):
        train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, precision=prec, engine="batched")
        for K in ks:
            repeats = 3 if K * epochs <= 16 * 30 and not args.quick else 1
            s, a = time_engine(X, y, sets[:K], Xte, yte, spec, train, repeats)
            rows.append((f"engine K={K}", prec, s, a))
            engine_rows[(prec, K)] = s
            print(f"# done: engine {prec} K={K} {s:.3f} s/model", file=sys.stderr)
    # the same engine without its compiled parts, auto precision, at the largest K <= 64: the stacked path with the
    # compiled Adam step (MIAUDIT_NATIVE=adam), and PyTorch operations only (MIAUDIT_NATIVE=0)
    k_cmp = max(k for k in ks if k <= 64)
    auto_train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, precision="auto", engine="batched")
    for setting, label in (("adam", "stacked, compiled Adam"), ("0", "stacked, PyTorch ops only")):
        os.environ[NATIVE_ENV] = setting
        try:
            s, a = time_engine(X, y, sets[:k_cmp], Xte, yte, spec, auto_train, 1)
        finally:
            del os.environ[NATIVE_ENV]
        rows.append((f"engine K={k_cmp}, {label}", resolve_precision("auto"), s, a))
        print(f"# done: engine {label} K={k_cmp} {s:.3f} s/model", file=sys.stderr)
    for n, (times, accs) in loops.items():
        t, a = time_loop(X, y, sets[:n_baseline], Xte, yte, spec, loop_train, n)
        times += t
        accs += a
        name = f"plain PyTorch loop ({n} thread{'s' if n > 1 else ''})"
        rows.insert(n_before, (name, "f32", statistics.median(times), float(np.mean(accs))))
        n_before += 1
    s_ref = min(statistics.median(times) for times, _ in loops.values())  # the faster plain loop is the reference
    auto = resolve_precision("auto")
    k_prof = min(16, max(ks))
    prof_train = TrainSpec(epochs=min(epochs, 3), batch_size=64, lr=1e-3, precision=auto, engine="batched")
    os.environ[NATIVE_ENV] = "adam"  # the stacked path: the one-hidden-layer AMX steps are one opaque call
    try:
        shares = breakdown(X, y, sets[: min(k_prof, batched.MAX_CHUNK)], spec, prof_train)
    finally:
        del os.environ[NATIVE_ENV]

    print()
    print(
        "| trainer | precision | s/model | models/min | GFLOP/s | % of f32 peak | % of own peak | vs plain loop "
        "| test acc |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, prec, s, acc in rows:
        gf = flops / s / 1e9
        own = peak.get(prec, peak["f32"])
        print(
            f"| {name} | {prec} | {s:.3f} | {60 / s:.1f} | {gf:.0f} | {100 * gf / peak['f32']:.0f}% | "
            f"{100 * gf / own:.0f}% | {s_ref / s:.2f}x | {acc:.3f} |"
        )
    print(
        f"\n# 'vs plain loop' divides by the faster plain loop of this run ({s_ref:.3f} s/model; each plain loop "
        f"row is the median of {2 * n_baseline} models, timed at the start and at the end of the run). "
        f"Load average at start / end: {load0} / {loadavg()} (2 cores; other processes share them)."
    )
    print(
        f"# where the stacked path's time goes ({auto}, {min(k_prof, batched.MAX_CHUNK)} models in one chunk, "
        f"one thread, share of wall time): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
    )
    best = [(s, K) for (p, K), s in engine_rows.items() if p == auto]
    if not best:
        print("speedup_vs_plain_loop=nan")
        return 0
    s_best, k_best = min(best)
    print(f"# engine auto ({auto}) best at K={k_best}: {s_best:.3f} s/model vs plain loop {s_ref:.3f} s/model")
    print(f"speedup_vs_plain_loop={s_ref / s_best:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

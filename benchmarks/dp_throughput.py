"""DP-SGD throughput and utility: the batched engine against Opacus on the same recipe, side by side.

The recipe: MLP 784-128-10, Adam (lr 1e-3), expected batch 64 (Poisson sampling), 30 epochs, 3,000
Fashion-MNIST training images per model (each model its own random 3,000 of the 60,000), per-example
gradients clipped to max_grad_norm 1.0, Gaussian noise calibrated by Opacus's RDP accountant to
epsilon 1, 4 and 8 at delta 1/3000; test accuracy on the 10,000 test images.

Rows:

* **Opacus 1.6**: ``PrivacyEngine.make_private_with_epsilon`` (GradSampleModule, DPOptimizer over
  ``torch.optim.Adam``, DPDataLoader with Poisson sampling), one model per process, single-threaded,
  one process per core side by side (the fair use of a multi-core machine for one-model training: a
  tiny model split over two threads crawls when other processes share the cores); seconds per model =
  wall time of the side-by-side batch / models in it. Seeded generators for sampling and noise, the
  engine's initial weights;
* **the engine**: K models trained together by ``train_batched`` with its default choice (on CPUs with
  AVX512-BF16 or AMX the fused one-hidden-layer path, bf16 products with exact clipping of the rounded
  gradients; elsewhere the stacked path in float32), all cores; seconds per model = wall time / K;
* **the engine in float32** (``precision="f32"``: the stacked path, the arithmetic of Opacus), K models
  the same way, for comparison;
* without DP, for reference: the engine (float32) and miaudit's plain loop (one model).

Timing is interleaved: each round trains, for each epsilon, one side-by-side batch of Opacus models
and then one engine batch of K models, so load from other processes falls on both alike; a row reports the median of
its rounds. Accuracy is the mean (and standard deviation) over every model of the row.

Usage::

    PYTHONPATH=src python benchmarks/dp_throughput.py            # full run (about 4 minutes on 2 quiet cores)
    PYTHONPATH=src python benchmarks/dp_throughput.py --quick    # smoke run, 3 epochs (under a minute)

The last line is ``speedup_vs_opacus=<x>``: Opacus's seconds per model over the engine's, the median
of the per-epsilon ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_model_name, cpu_seconds, load_fashion_mnist, loadavg, n_cores

from miaudit.seeding import derive_seed, torch_generator
from miaudit.training.batched import train_batched
from miaudit.training.dp import dp_schedule
from miaudit.training.executors import single_threaded_torch
from miaudit.training.networks import MLPParams, build_module, init_params, params_from_module
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_one
from miaudit.training.tuning import choose_path

N_TRAIN = 3000
EPSILONS = (1.0, 4.0, 8.0)
MAX_GRAD_NORM = 1.0


@dataclass
class Row:
    name: str
    epsilon: float | None
    seconds: list[float] = field(default_factory=list)  # per model, one entry per timed run
    accuracy: list[float] = field(default_factory=list)  # one entry per model
    sigma: float | None = None
    spent: list[float] = field(default_factory=list)  # accounted epsilon per model

    @property
    def s_per_model(self) -> float:
        return statistics.median(self.seconds)


SPEC = ModelSpec(n_features=784, n_classes=10, hidden=(128,), name="simple")


def train_opacus(
    Xs: np.ndarray, ys: np.ndarray, *, seed: int, epochs: int, epsilon: float
) -> tuple[float, MLPParams, float, float]:
    """One model by Opacus on (Xs, ys): (seconds, weights, noise multiplier, epsilon its accountant spent)."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    module = build_module(SPEC)
    ws, bs = init_params(SPEC, torch_generator(seed, "train"))  # the engine's initial weights
    with torch.no_grad():
        for lin, w, b in zip([m for m in module if isinstance(m, torch.nn.Linear)], ws, bs, strict=True):
            lin.weight.copy_(w.T)
            lin.bias.copy_(b)
    data = TensorDataset(torch.from_numpy(Xs), torch.from_numpy(ys))
    loader = DataLoader(data, batch_size=64, generator=torch_generator(seed, "opacus-sample"))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus's notes on secure RNG and on hooks
        t0 = time.perf_counter()
        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=1 / len(ys),
            epochs=epochs,
            max_grad_norm=MAX_GRAD_NORM,
            poisson_sampling=True,
            noise_generator=torch_generator(seed, "opacus-noise"),
        )
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                optimizer.step()
        seconds = time.perf_counter() - t0
        spent = engine.get_epsilon(delta=1 / len(ys))
    return seconds, params_from_module(module, SPEC), optimizer.noise_multiplier, spent


def _worker_init() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def _opacus_job(job: tuple[np.ndarray, np.ndarray, int, int, float]) -> tuple[float, MLPParams, float, float]:
    Xs, ys, seed, epochs, epsilon = job
    return train_opacus(Xs, ys, seed=seed, epochs=epochs, epsilon=epsilon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, one round, 4 engine models: a smoke run")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--k", type=int, default=None, help="engine models per batch (default 8; quick 4)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; quick 1)")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 30)
    K = args.k or (4 if args.quick else 8)
    rounds = args.rounds or (1 if args.quick else 2)
    cores = n_cores()
    torch.set_flush_denormal(True)
    load0, (busy0, own0) = loadavg(), cpu_seconds()
    started = datetime.datetime.now().astimezone()
    t_start = time.perf_counter()

    import opacus

    X, y, Xte, yte = load_fashion_mnist()
    spec = SPEC
    rng = np.random.default_rng(0)
    n_models = rounds * (2 * K + cores) * len(EPSILONS) + K + 1
    sets = [rng.choice(len(X), N_TRAIN, replace=False) for _ in range(n_models)]
    seeds = [derive_seed(0, "dp-bench", i) for i in range(n_models)]
    nxt = iter(range(n_models))
    print(f"# CPU: {cpu_model_name()} ({cores} cores); started {started:%Y-%m-%d %H:%M %Z}")
    print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads), opacus {opacus.__version__}")
    print(
        f"# recipe: MLP 784-128-10, Adam lr 1e-3, expected batch 64 (Poisson), {epochs} epochs, {N_TRAIN} "
        f"images/model, max_grad_norm {MAX_GRAD_NORM}, delta 1/{N_TRAIN}, RDP accountant; engine K={K} per batch, "
        f"{rounds} round(s)"
    )
    opacus_rows = {e: Row(f"Opacus 1.6, {cores} processes x 1 thread", e) for e in EPSILONS}
    one_model: list[float] = []  # an Opacus model's own wall time (single-threaded, beside the others)
    pool = ProcessPoolExecutor(max_workers=cores, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    auto = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, dp_epsilon=8.0, max_grad_norm=MAX_GRAD_NORM)
    chosen = choose_path(model=spec, train=auto)
    print(f"# the engine's DP-SGD path here: {chosen.precision} {chosen.path} ({chosen.reason})")
    engine_rows = {e: Row(f"engine, K={K}, {chosen.precision} {chosen.path} path", e) for e in EPSILONS}
    f32_rows = {e: Row(f"engine, K={K}, f32 stacked path", e) for e in EPSILONS}

    # warm-up (compiled Adam, Opacus's import, the accountant): one short engine and Opacus run, not timed
    warm = TrainSpec(epochs=1, dp_epsilon=8.0)
    train_batched(X, y, [sets[0]], seeds=[seeds[0]], model=spec, train=warm)
    warm_jobs = [(X[sets[0][:640]], y[sets[0][:640]], seeds[0], 1, 8.0)] * cores
    list(pool.map(_opacus_job, warm_jobs))
    # the engine calibrates each epsilon's noise once per recipe and training-set size (cached for the process;
    # Opacus calibrates inside every make_private_with_epsilon, so its rows include it): done here, timed apart
    t0 = time.perf_counter()
    for eps in EPSILONS:
        dp_schedule(TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, dp_epsilon=eps, max_grad_norm=MAX_GRAD_NORM),
                    N_TRAIN)  # fmt: skip
    print(f"# the engine's noise calibration for {len(EPSILONS)} epsilons: {time.perf_counter() - t0:.2f} s, once")

    for r in range(rounds):
        for eps in EPSILONS:
            jobs = [(X[sets[i]], y[sets[i]], seeds[i], epochs, eps) for i in [next(nxt) for _ in range(cores)]]
            t0 = time.perf_counter()
            done = list(pool.map(_opacus_job, jobs))
            wall = time.perf_counter() - t0
            row = opacus_rows[eps]
            row.seconds.append(wall / len(jobs))
            for seconds, params, sigma, spent in done:
                one_model.append(seconds)
                row.accuracy.append(params.accuracy(Xte, yte))
                row.sigma, row.spent = sigma, [*row.spent, spent]
            print(f"# round {r + 1}/{rounds}, epsilon {eps:g}: Opacus {wall / len(jobs):.2f} s/model ({len(jobs)} side "
                  f"by side in {wall:.1f} s), sigma {row.sigma:.4f}, spent {max(row.spent):.3f}, "
                  f"acc {np.mean(row.accuracy[-len(jobs):]):.4f}", flush=True)  # fmt: skip
            idx = [next(nxt) for _ in range(K)]
            train = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, dp_epsilon=eps, max_grad_norm=MAX_GRAD_NORM)
            t0 = time.perf_counter()
            models = train_batched(X, y, [sets[j] for j in idx], seeds=[seeds[j] for j in idx], model=spec, train=train)
            seconds = (time.perf_counter() - t0) / K
            row = engine_rows[eps]
            row.seconds.append(seconds)
            row.accuracy += [m.accuracy(Xte, yte) for m in models]
            row.sigma = dp_schedule(train, N_TRAIN).noise_multiplier
            row.spent += [m.privacy.epsilon for m in models if m.privacy is not None]
            print(f"# round {r + 1}/{rounds}, epsilon {eps:g}: engine {seconds:.3f} s/model, sigma {row.sigma:.4f}, "
                  f"spent {row.spent[-1]:.3f}, acc {np.mean(row.accuracy[-K:]):.4f}", flush=True)  # fmt: skip
            if chosen.precision != "f32":
                idx = [next(nxt) for _ in range(K)]
                f32 = dataclasses.replace(train, precision="f32")
                t0 = time.perf_counter()
                models = train_batched(X, y, [sets[j] for j in idx], seeds=[seeds[j] for j in idx], model=spec,
                                       train=f32)  # fmt: skip
                row = f32_rows[eps]
                row.seconds.append((time.perf_counter() - t0) / K)
                row.accuracy += [m.accuracy(Xte, yte) for m in models]
                row.sigma = engine_rows[eps].sigma
                row.spent += [m.privacy.epsilon for m in models if m.privacy is not None]
                print(f"# round {r + 1}/{rounds}, epsilon {eps:g}: engine f32 stacked {row.seconds[-1]:.3f} s/model, "
                      f"acc {np.mean(row.accuracy[-K:]):.4f}", flush=True)  # fmt: skip

    # without DP: the engine (float32) and the plain loop
    plain = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, precision="f32")
    idx = [next(nxt) for _ in range(K)]
    t0 = time.perf_counter()
    models = train_batched(X, y, [sets[j] for j in idx], seeds=[seeds[j] for j in idx], model=spec, train=plain)
    engine_plain = Row(f"engine, K={K}, no DP", None, [(time.perf_counter() - t0) / K],
                       [m.accuracy(Xte, yte) for m in models])  # fmt: skip
    j = next(nxt)
    t0 = time.perf_counter()
    with single_threaded_torch():
        m = train_one(torch.from_numpy(X), torch.from_numpy(y), sets[j], seed=seeds[j], model=spec,
                      train=TrainSpec(epochs=epochs, engine="loop"))  # fmt: skip
    loop_plain = Row("plain loop, one model, 1 thread, no DP", None, [time.perf_counter() - t0], [m.accuracy(Xte, yte)])

    pool.shutdown()
    elapsed = time.perf_counter() - t_start
    busy1, own1 = cpu_seconds()
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    print(
        f"# shared machine: other processes used {others:.0f} of the {cores * elapsed:.0f} core-seconds of this run; "
        f"load average at start / end: {load0} / {loadavg()}; run time {elapsed:.0f} s"
    )
    print()
    print(
        "| trainer | epsilon | sigma | epsilon spent | s/model | models | test acc (mean ± sd) | Opacus s / engine s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    gaps = []
    for eps in EPSILONS:
        o, e = opacus_rows[eps], engine_rows[eps]
        ratio = o.s_per_model / e.s_per_model
        ratios.append(ratio)
        gaps.append(float(np.mean(e.accuracy) - np.mean(o.accuracy)))
        rows = [(o, "1.00x"), (e, f"{ratio:.1f}x")]
        if f32_rows[eps].seconds:
            rows.append((f32_rows[eps], f"{o.s_per_model / f32_rows[eps].s_per_model:.1f}x"))
        for row, cell in rows:
            print(
                f"| {row.name} | {eps:g} | {row.sigma:.4f} | {max(row.spent):.3f} | {row.s_per_model:.3f} | "
                f"{len(row.accuracy)} | {np.mean(row.accuracy):.4f} ± {np.std(row.accuracy):.4f} | {cell} |"
            )
    for row in (engine_plain, loop_plain):
        print(
            f"| {row.name} | none | - | - | {row.s_per_model:.3f} | {len(row.accuracy)} | "
            f"{np.mean(row.accuracy):.4f} ± {np.std(row.accuracy):.4f} | - |"
        )
    print()
    dp_cost = statistics.median(engine_rows[e].s_per_model for e in EPSILONS) / engine_plain.s_per_model
    print(f"# engine DP-SGD (its default path) over the engine without DP (float32 stacked): {dp_cost:.2f}x the time")
    if all(f32_rows[e].seconds for e in EPSILONS):
        path_gain = statistics.median(f32_rows[e].s_per_model / engine_rows[e].s_per_model for e in EPSILONS)
        print(f"# the engine's DP-SGD path over its float32 stacked path: {path_gain:.2f}x faster")
        for eps in EPSILONS:
            gap = float(np.mean(engine_rows[eps].accuracy) - np.mean(f32_rows[eps].accuracy))
            print(f"# accuracy, engine path minus f32 stacked path, epsilon {eps:g}: {gap:+.4f}")
    print(f"# one Opacus model alone takes {statistics.median(one_model):.2f} s (median wall time, single-threaded)")
    for eps, gap in zip(EPSILONS, gaps, strict=True):
        print(f"accuracy_gap_eps{eps:g}={gap:+.4f}  # engine mean minus Opacus mean")
    print(f"speedup_vs_opacus={statistics.median(ratios):.1f}")


if __name__ == "__main__":
    main()

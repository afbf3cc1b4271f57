"""Scale-out: LiRA's reference models trained in process and on 1 and 2 Dask workers, side by side.

The setting is ``miaudit compare``'s default target (Fashion-MNIST, 3,000 members, MLP 784-128-10,
Adam, batch 64, 30 epochs) attacked by LiRA with 64 reference models of 3,000 records each; ``--quick``
takes 1,000 members, 10 epochs and 16 references. Every mode runs the same :class:`Experiment` with a
fresh cache (so every model is trained) and reports training time, models per minute, and the LiRA AUC,
which must be the same number in every row (the models are bitwise the same).

Modes: in process with 1 and 2 torch threads (the engine's in-process executor, one chunk per thread),
and a local Dask cluster of 1 and 2 worker processes with one thread each (``RunSpec(workers=N)``). The
cluster is started before the run and its start-up is reported apart. Modes alternate and repeat
(``--repeats``); each row is the fastest repeat (the machine is shared: other work only slows a run).

``dask_overhead`` is the distributed path's extra training wall time at equal cores (2 workers against
2 threads in process), the median over repeats of the ratio of back-to-back runs; the goal is under
0.10, and near-linear scaling from 1 to 2 workers. On a machine shared with other work wall times swing
by tens of percent from minute to minute, so the table also gives the best of the repeats and the CPU
seconds per model of all processes (this one, with the local cluster's scheduler, and the workers),
which other work barely moves: the CPU cost of the distributed path itself.

Then a simulation of larger clusters for 256 references, built from what was measured: single-thread
seconds per model at the chunk sizes the engine would use (timed here), the overhead per job of the
Dask path (on 1 worker: each call's wall time less its scatter and its jobs' compute, per job), the bytes
each call sends (the record pool once to every worker through the scheduler, one after another),
each job's index arrays and each result's weights, over an assumed network (``--bandwidth-gbit``,
default 10). The Experiment sends ``max(32, 16 x workers)`` models per engine call (a full chunk for
every worker, each call a cache checkpoint) and the engine cuts a call into
``max(ceil(K / 16), workers)`` chunks.

One run's output, on the 2-core development machine shared with other work, is in
``benchmarks/results/scale_out-2core-shared-2026-11-29.txt`` and discussed in ``docs/cluster.md``.

Usage::

    .venv/bin/python benchmarks/scale_out.py            # 64 references, two repeats (10-15 minutes on 2 cores)
    .venv/bin/python benchmarks/scale_out.py --quick    # 16 references, smaller target (about 2 minutes)
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miaudit.studies.cache import TRAIN_CHUNK, Cache
from miaudit.studies.experiment import Experiment
from miaudit.studies.schema import RunSpec, Setting, parse_config
from miaudit.training.engine.planning import MAX_CHUNK, bytes_per_model, default_memory_budget, plan_chunks
from miaudit.training.executors import InProcessExecutor
from miaudit.training.hardware import resolve_precision
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models


@dataclass
class Measured:
    mode: str
    cores: int
    start_s: float
    training_s: float
    cpu_s: float
    models: int
    auc: float
    overhead_s: list[float]  # per job, from the 1-worker cluster: (call wall - scatter - its jobs) / jobs
    scatter: list[tuple[int, float]]  # (bytes, seconds) per call

    @property
    def per_min(self) -> float:
        return 60.0 * self.models / self.training_s


def setting(quick: bool) -> Setting:
    if quick:
        return parse_config(Setting, {"attack": "lira", "n_refs": 16, "target_size": 1000, "train": {"epochs": 10}})
    return parse_config(Setting, {"attack": "lira", "n_refs": 64})


def _cpu_s() -> float:
    """User plus system CPU seconds of the calling process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_mode(st: Setting, mode: str, cores: int) -> Measured:
    """One LiRA evaluation with a fresh cache: in process on ``cores`` threads, or on ``cores`` Dask workers.

    Training is the Experiment's planning step (every model the evaluation needs, in batches); its wall
    time is the Experiment's own count and its CPU time that of this process (with the local cluster's
    scheduler, which runs in it) plus every worker process.
    """
    torch.set_num_threads(cores)
    run = RunSpec(engine="batched", workers=cores) if mode == "dask" else RunSpec(engine="batched")
    with tempfile.TemporaryDirectory(prefix="miaudit-scale-") as tmp:
        ex = Experiment(run, cache=Cache(Path(tmp)))
        start_s = 0.0
        try:
            if ex.executor is not None:
                t0 = time.perf_counter()
                ex.executor.start()
                start_s = time.perf_counter() - t0
            workers_cpu = (lambda: sum(ex.executor.client.run(_cpu_s).values())) if ex.executor else (lambda: 0.0)
            cpu0 = _cpu_s() + workers_cpu()
            ex.plan([(st, 0)])
            cpu_s = _cpu_s() + workers_cpu() - cpu0
            ev = ex.evaluate(st, 0)
        finally:
            ex.close()
    records = ex.executor.records if ex.executor is not None else []
    return Measured(
        mode=mode,
        cores=cores,
        start_s=start_s,
        training_s=ex.stats.training_s,
        cpu_s=cpu_s,
        models=ex.stats.models_trained,
        auc=float(ev.metrics["auc"]),
        # on one worker the jobs run one after another: what the call took beyond them, per job
        overhead_s=[(r.wall_s - r.scatter_s - sum(r.job_s)) / r.n_jobs for r in records] if cores == 1 else [],
        scatter=[(r.shared_bytes, r.scatter_s) for r in records if r.shared_bytes],
    )


def per_model_seconds(st: Setting, sizes: list[int]) -> dict[int, float]:
    """Single-thread seconds per model when a chunk holds k models (one chunk, one thread), for each k."""
    from miaudit.data import load_dataset

    ds = load_dataset(st.dataset)
    spec = ModelSpec.from_arch(st.arch, n_features=ds.n_features, n_classes=ds.n_classes)
    r = st.train
    train = TrainSpec(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, engine="batched")
    rng = np.random.default_rng(0)
    out = {}
    torch.set_num_threads(1)
    for k in sizes:
        sets = [rng.choice(ds.n_samples, st.target_size, replace=False) for _ in range(k)]
        t0 = time.perf_counter()
        train_models(ds.X, ds.y, sets, seeds=list(range(k)), model=spec, train=train, executor=InProcessExecutor(1))
        out[k] = (time.perf_counter() - t0) / k
    return out


def interpolate(table: dict[int, float], k: int) -> float:
    ks = sorted(table)
    return float(np.interp(k, ks, [table[x] for x in ks]))


def simulate(
    n_refs: int,
    workers: int,
    *,
    t_model: dict[int, float],
    job_overhead_s: float,
    pool_bytes: float,
    job_bytes_per_model: float,
    result_bytes_per_model: float,
    bandwidth: float,
    spec_bytes: int,
) -> dict[str, float]:
    """Predicted training time of ``n_refs`` references on ``workers`` one-thread workers."""
    per_call = max(TRAIN_CHUNK, MAX_CHUNK * workers)
    total = 0.0
    n_jobs = 0
    sizes: list[int] = []
    for start in range(0, n_refs, per_call):
        K = min(per_call, n_refs - start)
        chunks = plan_chunks([1] * K, per_model_bytes=spec_bytes, shared_bytes=0,
                             budget_bytes=default_memory_budget(), n_workers=workers)  # fmt: skip
        scatter = workers * pool_bytes / bandwidth  # the scheduler sends the pool to each worker in turn
        finish = [0.0] * workers  # longest-processing-time-first list scheduling
        heapq.heapify(finish)
        for c in sorted(chunks, key=len, reverse=True):
            k = len(c)
            transfer = k * (job_bytes_per_model + result_bytes_per_model) / bandwidth
            t = k * interpolate(t_model, k) + job_overhead_s + transfer
            heapq.heappush(finish, heapq.heappop(finish) + t)
            sizes.append(k)
        total += scatter + max(finish)
        n_jobs += len(chunks)
    calls = math.ceil(n_refs / per_call)
    return {"seconds": total, "jobs": n_jobs, "models_per_job": statistics.mean(sizes), "calls": calls}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 references on a 1,000-member target, 10 epochs")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode (the fastest is reported)")
    ap.add_argument("--bandwidth-gbit", type=float, default=10.0, help="network of the simulated clusters")
    ap.add_argument("--simulate-refs", type=int, default=256, help="references in the simulation")
    args = ap.parse_args(argv)
    st = setting(args.quick)
    precision = resolve_precision("auto")
    cpu = platform.processor() or platform.machine()
    print(f"# scale-out benchmark: LiRA, {st.n_refs} references on the {st.dataset} target ({st.target_size} members, "
          f"{st.arch}, {st.train.epochs} epochs, {precision}); {os.cpu_count()} cores ({cpu}), torch "
          f"{torch.__version__}; the machine is shared with other work")  # fmt: skip
    modes = [("in process", 2), ("dask", 2), ("in process", 1), ("dask", 1)]
    runs: dict[tuple[str, int], list[Measured]] = {m: [] for m in modes}
    for rep in range(args.repeats):
        for mode, cores in modes:
            m = run_mode(st, mode, cores)
            runs[(mode, cores)].append(m)
            print(f"  repeat {rep + 1}: {mode:10s} {cores} core(s): training {m.training_s:6.1f} s for {m.models} "
                  f"models ({m.per_min:5.1f}/min), {m.cpu_s / m.models:.3f} CPU s/model, start-up {m.start_s:.1f} s, "
                  f"AUC {m.auc:.6f}", flush=True)  # fmt: skip
    all_runs = [m for ms in runs.values() for m in ms]
    best = {k: min(ms, key=lambda m: m.training_s) for k, ms in runs.items()}

    def paired(a: tuple[str, int], b: tuple[str, int], attr: str = "training_s") -> float:
        """Median over repeats of a's over b's (each repeat runs the modes back to back)."""
        return statistics.median(getattr(x, attr) / getattr(y, attr) for x, y in zip(runs[a], runs[b], strict=True))

    def cpu_per_model(k: tuple[str, int]) -> float:
        return statistics.median(m.cpu_s / m.models for m in runs[k])

    aucs = {m.auc for m in all_runs}
    print()
    print("| training on | cores | cluster start-up s | training s (best) | models | models/min (best) | "
          "vs in process, same cores (best; paired median) | CPU s/model (median) | LiRA AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, cores in sorted(best, key=lambda k: (k[1], k[0] != "in process")):
        m, ref = best[(mode, cores)], best[("in process", cores)]
        label = "in process (threads)" if mode == "in process" else "Dask workers (processes)"
        vs = paired(("in process", cores), (mode, cores))
        print(f"| {label} | {cores} | {m.start_s:.1f} | {m.training_s:.1f} | {m.models} | {m.per_min:.1f} | "
              f"{ref.training_s / m.training_s:.2f}x; {vs:.2f}x | {cpu_per_model((mode, cores)):.3f} | "
              f"{m.auc:.6f} |")  # fmt: skip
    d1, d2, p1, p2 = ("dask", 1), ("dask", 2), ("in process", 1), ("in process", 2)
    overhead = paired(d2, p2) - 1
    print()
    print(f"same AUC in every run: {len(aucs) == 1} ({', '.join(f'{a:.6f}' for a in sorted(aucs))})")
    print(f"wall-time overhead of Dask at equal cores (paired median; best of {args.repeats}): 2 cores "
          f"{overhead:+.3f} ({best[d2].training_s / best[p2].training_s - 1:+.3f}), 1 core {paired(d1, p1) - 1:+.3f} "
          f"({best[d1].training_s / best[p1].training_s - 1:+.3f})")  # fmt: skip
    print(
        f"CPU-time overhead of Dask (all processes, per model): 2 cores "
        f"{cpu_per_model(d2) / cpu_per_model(p2) - 1:+.3f}, 1 core {cpu_per_model(d1) / cpu_per_model(p1) - 1:+.3f}"
    )
    print(f"1 -> 2 workers (paired median; best): Dask {paired(d1, d2):.2f}x "
          f"({best[d1].training_s / best[d2].training_s:.2f}x), in process {paired(p1, p2):.2f}x "
          f"({best[p1].training_s / best[p2].training_s:.2f}x)")  # fmt: skip

    # ---- simulation of larger clusters
    overheads = [o for m in all_runs if m.mode == "dask" for o in m.overhead_s]
    job_overhead = statistics.median(overheads) if overheads else 0.05
    scatters = [s for m in all_runs if m.mode == "dask" for s in m.scatter]
    pool_bytes = max(b for b, _ in scatters) if scatters else 0
    loopback = statistics.median(b / s for b, s in scatters if s > 0) if scatters else float("nan")
    from miaudit.data import load_dataset

    ds = load_dataset(st.dataset)
    spec = ModelSpec.from_arch(st.arch, n_features=ds.n_features, n_classes=ds.n_classes)
    ref_size = st.ref_train_size or st.target_size
    sizes = [2, 8, 16] if not args.quick else [2, 16]
    t_model = per_model_seconds(st, sizes)
    bandwidth = args.bandwidth_gbit * 1e9 / 8
    train = TrainSpec(epochs=st.train.epochs, batch_size=st.train.batch_size, engine="batched")
    spec_bytes = bytes_per_model(spec, train, precision)
    job_b = ref_size * 8  # int64 row indices
    result_b = 4 * spec.n_parameters
    print()
    print(f"measured: single-thread s/model by chunk size {', '.join(f'{k}: {v:.3f}' for k, v in t_model.items())}; "
          f"Dask overhead {1000 * job_overhead:.0f} ms per job (median over {len(overheads)} calls on 1 worker); pool "
          f"{pool_bytes / 2**20:.1f} MiB per call (LiRA's pool of candidates and padding, the same for every call), "
          f"scattered at {loopback / 2**20:.0f} MiB/s on loopback; "
          f"{job_b / 1024:.0f} KiB of indices and {result_b / 1024:.0f} KiB of weights per model")  # fmt: skip
    print(f"simulated: {args.simulate_refs} references on one-thread workers, {args.bandwidth_gbit:g} Gbit/s network, "
          "the pool sent to each worker in turn")  # fmt: skip
    print()
    print("| workers | engine calls | jobs | models/job | predicted s | models/min | speedup vs 1 | efficiency |")
    print("|---|---|---|---|---|---|---|---|")
    base = None
    for w in (1, 2, 8, 32, 128):
        sim = simulate(args.simulate_refs, w, t_model=t_model, job_overhead_s=job_overhead, pool_bytes=pool_bytes,
                       job_bytes_per_model=job_b, result_bytes_per_model=result_b, bandwidth=bandwidth,
                       spec_bytes=spec_bytes)  # fmt: skip
        base = base or sim["seconds"]
        speedup = base / sim["seconds"]
        print(f"| {w} | {sim['calls']} | {sim['jobs']} | {sim['models_per_job']:.1f} | {sim['seconds']:.1f} | "
              f"{60 * args.simulate_refs / sim['seconds']:.0f} | {speedup:.1f}x | {speedup / w:.0%} |")  # fmt: skip
    print()
    print(f"dask_overhead={overhead:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

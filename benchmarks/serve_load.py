"""Load on ``miaudit serve`` over loopback, and what attacking over HTTP costs against attacking in process.

A target MLP (64-64-10) is trained on scikit-learn's digits, stored as a study cache's model entry and served
by ``miaudit serve`` in a subprocess on 127.0.0.1 (one uvicorn worker, a bearer token, the query log on). Then:

1. **Load**: ``--requests`` requests (default 20,000; ``--quick`` 2,000) of ``--records`` records each
   (default 8) from ``--concurrency`` clients at once (default 32; asyncio + httpx in this process), and a
   bulk row of requests of 256 records (a twentieth as many requests). Each row stops by itself once its
   requests are answered. Printed: throughput (requests/s, records/s), latency p50/p99 (ms), errors
   (anything but 200). The load generator shares the machine with the service (2 cores here): the numbers are
   the pair's, not the service's alone.
2. **Attack cost**: the loss attack (Yeom et al.; one shadow model, fitted once in process) scores the same
   records through :class:`~miaudit.targets.local.LocalTarget` (in process) and through
   :class:`~miaudit.targets.http.HttpTarget` (the service; no answer cache, batches of 256, 4 in flight); the
   scores must be identical; the ratio of the times is the price of the network. In process it is timed with
   torch's default threads and with one thread: in a process that has trained models (the attacker's shadow
   models here), a small two-thread matrix product was measured 100x slower than a one-thread one on this
   shared 2-core machine. Minimum and median of ``--repeats`` are printed.

Usage::

    PYTHONPATH=src python benchmarks/serve_load.py            # 20,000 + 1,000 requests
    PYTHONPATH=src python benchmarks/serve_load.py --quick    # 2,000 + 100 requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from miaudit.attacks.base import AttackerKnowledge
from miaudit.attacks.registry import create_attack
from miaudit.data.datasets import load_digits
from miaudit.targets import LocalTarget
from miaudit.targets.http import HttpTarget
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

TOKEN = "load-test-token-0123456789abcdef"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _train_target(X: np.ndarray, y: np.ndarray, members: np.ndarray, seed: int):
    spec = ModelSpec(n_features=X.shape[1], n_classes=10, hidden=(64,))
    train = TrainSpec(epochs=30, batch_size=32)
    (model,) = train_models(X, y, [members], seeds=[seed], model=spec, train=train)
    return model, spec, train


def _save_model(model, path: Path) -> None:
    from safetensors.numpy import save_file

    arrays = {f"w{i}": w for i, w in enumerate(model.weights)} | {f"b{i}": b for i, b in enumerate(model.biases)}
    save_file(arrays, str(path), metadata={"meta": json.dumps({"spec": model.spec.to_dict()})})


def _start_service(model_path: Path, folder: Path) -> tuple[subprocess.Popen, str, list[str]]:
    tokens = folder / "tokens.txt"
    tokens.write_text(f"load:{TOKEN}\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "miaudit", "serve", str(model_path), "--port", "0", "--token-file", str(tokens),
           "--query-log", str(folder / "queries.jsonl")]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"at (http://127\.0\.0\.1:\d+) ", "".join(lines))
        if found:
            return proc, found.group(1), lines
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the service did not start:\n" + "".join(lines))


async def _load(url: str, X: np.ndarray, *, n_requests: int, records: int, concurrency: int, seed: int) -> dict:
    """Send n_requests requests of `records` rows from `concurrency` workers; latencies and errors."""
    rng = np.random.default_rng(seed)
    bodies = [
        json.dumps({"records": X[rng.integers(0, len(X), size=records)].astype(np.float64).tolist()}).encode()
        for _ in range(min(n_requests, 64))
    ]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    next_request = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal next_request, errors
            while next_request < n_requests:
                i = next_request
                next_request += 1
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", content=bodies[i % len(bodies)])
                    ok = r.status_code == 200 and len(r.json()["probabilities"]) == records
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    return {
        "requests": n_requests, "records": records, "concurrency": concurrency, "wall_s": wall,
        "req_s": n_requests / wall, "rec_s": n_requests * records / wall,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "errors": errors,
    }  # fmt: skip


def _attack_cost(url: str, model, spec: ModelSpec, train: TrainSpec, data, *, seed: int, repeats: int) -> dict:
    X, y, population, scored = data
    knowledge = AttackerKnowledge(X=X[population], y=y[population], n_classes=10, model=spec, train=train)
    n_pop = len(population)
    attack = create_attack("loss", n_shadows=1, shadow_train_size=n_pop // 2, shadow_test_size=n_pop - n_pop // 2,
                           seed=seed).fit(knowledge)  # fmt: skip
    Xs, ys = X[scored], y[scored]
    local = LocalTarget(model)
    attack.score(local, Xs[:10], ys[:10])  # warm up (first calls pay for imports and allocations)
    times: dict[str, list[float]] = {"local": [], "local_1": [], "http": []}
    threads = torch.get_num_threads()
    for _ in range(repeats):
        start = time.perf_counter()
        s_local = attack.score(local, Xs, ys)
        times["local"].append(time.perf_counter() - start)
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            s_one = attack.score(local, Xs, ys)
            times["local_1"].append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(threads)
        with HttpTarget(url, token=TOKEN, batch_size=256, concurrency=4) as remote:  # no cache: every record sent
            start = time.perf_counter()
            s_http = attack.score(remote, Xs, ys)
            times["http"].append(time.perf_counter() - start)
            assert remote.n_sent == len(scored)
        if not (np.array_equal(s_local, s_http) and np.array_equal(s_one, s_http)):
            raise SystemExit("the scores through HTTP differ from the scores in process")
    return {"n": len(scored), "threads": threads, **{k: np.array(v) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--records", type=int, default=8, help="records per request of the main row")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="2,000 requests (and 100 bulk ones)")
    parser.add_argument("--repeats", type=int, default=7, help="timings of the attack cost (min and median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_requests = 2_000 if args.quick else args.requests

    data = load_digits()
    X, y = np.asarray(data.X, dtype=np.float32), np.asarray(data.y)
    order = np.random.default_rng(args.seed).permutation(len(y))
    members, nonmembers, population = order[:600], order[600:1000], order[1000:]
    scored = np.concatenate([members[:400], nonmembers])
    model, spec, train = _train_target(X, y, members, args.seed)

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# serve_load: {_cpu()}, {os.cpu_count()} cores visible (load average {load}), "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"# target MLP {spec.layer_sizes} on digits, {len(members)} members; service: miaudit serve, 1 worker, "
          "token auth, query log on, output policy full")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _save_model(model, folder / "model.safetensors")
        proc, url, _lines = _start_service(folder / "model.safetensors", folder)
        try:
            rows = [
                asyncio.run(_load(url, X, n_requests=n_requests, records=args.records,
                                  concurrency=args.concurrency, seed=args.seed)),
                asyncio.run(_load(url, X, n_requests=max(1, n_requests // 20), records=256,
                                  concurrency=args.concurrency, seed=args.seed + 1)),
            ]  # fmt: skip
            cost = _attack_cost(url, model, spec, train, (X, y, population, scored), seed=args.seed,
                                repeats=args.repeats)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        n_logged = sum(1 for _ in (folder / "queries.jsonl").open())

    print()
    print("load (POST /v1/predict over loopback)")
    head = f"{'requests':>9} {'records/req':>11} {'concurrency':>11} {'wall s':>7} {'req/s':>8} {'records/s':>10} "
    print(head + f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for r in rows:
        print(f"{r['requests']:>9,} {r['records']:>11} {r['concurrency']:>11} {r['wall_s']:>7.1f} {r['req_s']:>8,.0f} "
              f"{r['rec_s']:>10,.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6}")  # fmt: skip
    print(f"(query log: {n_logged:,} lines)")
    print()
    print(f"attack cost: the loss attack scoring {cost['n']} records, {args.repeats} times each (scores identical)")
    print(f"{'':<40} {'min ms':>9} {'median ms':>10} {'HTTP / this (min, median)':>27}")
    for key, name in (
        ("local", f"in process (LocalTarget, {cost['threads']} threads)"),
        ("local_1", "in process (LocalTarget, 1 thread)"),
        ("http", "over HTTP (HttpTarget, no cache)"),
    ):
        t, h = cost[key], cost["http"]
        ratios = f"{h.min() / t.min():.1f} x, {np.median(h) / np.median(t):.1f} x" if key != "http" else ""
        print(f"{name:<40} {t.min() * 1e3:>9.1f} {np.median(t) * 1e3:>10.1f} {ratios:>27}")  # fmt: skip


if __name__ == "__main__":
    main()

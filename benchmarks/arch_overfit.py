"""How much each named architecture overfits under the study's recipe: train and test accuracy, gap, time.

The study's recipe: 3,000 Fashion-MNIST members per model (each seed draws its own 3,000 of the 60,000
training images), Adam lr 1e-3, batch 64, 30 epochs; test accuracy on the 10,000 official test
images. Every model is trained through the project's API (:func:`miaudit.training.trainer.train_models`),
the seeds of one setting together (the batched engine trains them side by side, the loop one after
another), so s/model is the wall time of the setting over its number of models.

Usage::

    PYTHONPATH=src python benchmarks/arch_overfit.py                     # simple, dense, dropout; f32 and bf16
    PYTHONPATH=src python benchmarks/arch_overfit.py --engines batched,loop --precisions f32
    PYTHONPATH=src python benchmarks/arch_overfit.py --archs dense --hidden 1024,1024 --epochs 60

``--hidden`` replaces the hidden widths of every architecture named in ``--archs`` (dropout unchanged),
to try a candidate before it goes into ``ARCHITECTURES``.

Findings (AMD EPYC, AVX-512 + AVX512-BF16, 2 cores shared with other jobs, 2026-11-29; the table in
``benchmarks/results/arch_overfit-amd-epyc-2026-11-29.txt``):

* Neither precision nor engine explains dense's modest overfitting: f32 and bf16, batched engine and
  plain loop give the same train accuracy within seed noise (dense 0.955 / 0.966 / 0.961).
* The recipe's step budget does: 30 epochs of 47 minibatches are 1,410 Adam steps at a constant lr
  of 1e-3, and no multilayer perceptron tried memorises 3,000 images in them. Train accuracy at
  epoch 30 (mean of 3 seeds, bf16): 1024 0.968, 2048 0.957, 4096 0.96-0.98 (2 seeds), 256-256 0.96,
  512-512 0.957 (1 seed), 1024-512 0.974 (1 seed), 1024-1024 0.967 (1 seed), 2048-512 0.977,
  256x4 0.962, 1024-512-256-128 0.958, 128x6 0.909, 1024x3 0.963 (1 seed), 512-256-128 0.966.
  Train accuracy still climbs at epoch 30 with drops of 2-5 points from epoch to epoch; a lower lr
  is slower (dense: 0.948 at 3e-4, 0.878 at 1e-4), a cosine-decayed lr ends at 0.966; Glorot
  initialisation and zero biases (Keras's defaults) change nothing. At 60 / 100 epochs dense
  reaches 0.988 / 0.996, but simple reaches 0.987 / 0.999 with the same gap (0.16 / 0.17).
* The accuracy gap has a ceiling: every network that (nearly) memorises its members tests at
  0.82-0.835, so no architecture can widen dense's gap beyond about 0.18 (1.55x simple's 0.115 at
  30 epochs); 2x would need a test accuracy near 0.77. Dense's overfitting shows in its confidence
  instead: its loss gap (test minus train cross-entropy) is 0.63 against simple's 0.35 (1.8x).
  ``dense`` therefore stays 512-256-128: the alternatives cost 1.3-3x its time for no larger gap.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miaudit.data import load_dataset
from miaudit.training.hardware import resolve_precision
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ARCHITECTURES, ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

N_MEMBERS = 3000
N_POOL = 60000  # the official training images come first in load_dataset("fashion-mnist")


def member_sets(seeds: list[int], n: int = N_MEMBERS) -> list[np.ndarray]:
    """For each seed, its own ``n`` indices into the 60,000 training images, drawn from that seed."""
    return [np.random.default_rng(seed).choice(N_POOL, n, replace=False) for seed in seeds]


def mean_nll(m: MLPParams, X: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``m`` on (X (n_samples, n_features), y (n_samples,)), probabilities floored at 1e-12."""
    p = m.predict_proba(X)[np.arange(len(y)), y]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


@dataclass
class Result:
    """One setting, one entry per seed: accuracies and mean cross-entropies on members and on test images."""

    train_acc: list[float]
    test_acc: list[float]
    train_nll: list[float]
    test_nll: list[float]
    seconds_per_model: float


def measure(X: np.ndarray, y: np.ndarray, spec: ModelSpec, train: TrainSpec, seeds: list[int]) -> Result:
    """Train one model per seed on its members (through ``train_models``) and evaluate it."""
    sets = member_sets(seeds)
    t0 = time.perf_counter()
    models = train_models(X, y, sets, seeds=seeds, model=spec, train=train)
    s = (time.perf_counter() - t0) / len(seeds)
    Xte, yte = X[N_POOL:], y[N_POOL:]
    return Result(
        train_acc=[m.accuracy(X[idx], y[idx]) for m, idx in zip(models, sets, strict=True)],
        test_acc=[m.accuracy(Xte, yte) for m in models],
        train_nll=[mean_nll(m, X[idx], y[idx]) for m, idx in zip(models, sets, strict=True)],
        test_nll=[mean_nll(m, Xte, yte) for m in models],
        seconds_per_model=s,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="simple,dense,dropout")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--engines", default="batched")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", default=None, help="comma-separated widths replacing those of every arch")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    torch.set_flush_denormal(True)
    ds = load_dataset("fashion-mnist")
    X, y = ds.X, ds.y
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"# {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{N_MEMBERS} members/model, Adam lr 1e-3, batch {args.batch_size}, {args.epochs} epochs, "
        f"seeds {seeds}; test: the 10,000 official test images; load average at start {load} (shared machine)"
    )
    print(
        "| arch | hidden | dropout | engine | precision | train acc (min-max) | test acc | gap (min-max) "
        "| train loss | test loss | s/model |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        hidden, dropout = ARCHITECTURES[arch]
        if args.hidden:
            hidden = tuple(int(w) for w in args.hidden.split(","))
        spec = ModelSpec(n_features=784, n_classes=10, hidden=hidden, dropout=dropout, name=arch)
        for engine in args.engines.split(","):
            # the loop computes in float32 whatever the recipe's precision says
            precisions = ["f32"] if engine == "loop" else args.precisions.split(",")
            for prec in precisions:
                train = TrainSpec(
                    epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, precision=prec, engine=engine
                )
                r = measure(X, y, spec, train, seeds)
                tr = r.train_acc
                gaps = [a - b for a, b in zip(tr, r.test_acc, strict=True)]
                print(
                    f"| {arch} | {'-'.join(map(str, hidden))} | {dropout} | {engine} | "
                    f"{resolve_precision(prec) if engine != 'loop' else 'f32'} | "
                    f"{statistics.mean(tr):.3f} ({min(tr):.3f}-{max(tr):.3f}) | {statistics.mean(r.test_acc):.3f} | "
                    f"{statistics.mean(gaps):.3f} ({min(gaps):.3f}-{max(gaps):.3f}) | "
                    f"{statistics.mean(r.train_nll):.3f} | {statistics.mean(r.test_nll):.3f} | "
                    f"{r.seconds_per_model:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

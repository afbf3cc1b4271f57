"""The fused path: one-hidden-layer networks trained one at a time on compiled AMX steps.

Networks with one hidden layer trained in bf16 on a CPU with AMX-BF16 (the seed's 784-128-10 among
them) train one model at a time in C (``_native/mlp1.c``): one call per block of
:data:`~.planning.BLOCK_STEPS` steps runs gather, forward, backward and Adam with the model's weights
and state in the core's cache, about twice as fast as the stacked path. Chunks hold one model each and
the executor's workers take them in turn.

The kernel's contract (``_native/mlp1.py``) declares every buffer; this module allocates the scratch
and the batch buffers from it and binds each model's buffers once, so every shape, dtype and layout is
checked before a pointer crosses into C. A model gets the same initialisation and minibatch order
as on the stacked path and in the plain loop (its ``torch_generator(seed, "train")``). Arithmetic:
the first layer's inputs, weights and output gradients are bf16, its outputs and weight gradient
float32; the output layer, softmax and loss are float32; Adam updates float32 master weights.
"""

from __future__ import annotations

import torch

from miaudit.errors import TrainingError
from miaudit.seeding import torch_generator
from miaudit.training._native.mlp1 import SCRATCH, TILE, TRAIN
from miaudit.training.engine.planning import BLOCK_STEPS, ChunkJob
from miaudit.training.engine.schedule import MinibatchStream
from miaudit.training.native import MLP1Kernels, load_mlp1
from miaudit.training.networks import MLPParams, init_params
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["blocks", "fused_applies", "padded_width", "train_fused", "unblocks"]


def fused_applies(spec: ModelSpec, train: TrainSpec, precision: str) -> bool:
    """Whether models train one at a time on the compiled AMX steps (:mod:`miaudit.training.native`).

    Where they apply (bf16, one hidden layer of a width that is a multiple of 32, no dropout, a
    batch size that is a multiple of 32, a CPU with AMX-BF16 and the kernels built), a model's
    weights and Adam state stay in the core's cache for its whole training, about twice as fast
    as the stacked path. Everything else (f32, deeper networks, dropout, label smoothing, DP-SGD,
    other CPUs) is stacked.
    """
    return (
        precision == "bf16"
        and not train.dp
        and train.label_smoothing == 0
        and len(spec.hidden) == 1
        and spec.hidden[0] % TILE == 0
        and spec.dropout == 0
        and train.batch_size % TILE == 0
        and load_mlp1() is not None
    )


def padded_width(n_features: int) -> int:
    """The pool's width on the fused path: features and the ones column, rounded up to a multiple of 32."""
    return -(-(n_features + 1) // TILE) * TILE


def train_fused(job: ChunkJob) -> list[MLPParams]:
    """Train the chunk's models one after another on the compiled steps; their weights in order.

    Raises
    ------
    TrainingError
        The kernels cannot be loaded in this process, or a model's weights became non-finite.
    """
    kernels = load_mlp1()
    if kernels is None:
        raise TrainingError(
            "the compiled one-hidden-layer steps were planned for but cannot be loaded in this process; "
            "see miaudit.training.native.native_status(), or set MIAUDIT_NATIVE=adam to plan for the stacked path"
        )
    return [_train_one(kernels, job, k) for k in range(len(job.seeds))]


def _train_one(kernels: MLP1Kernels, job: ChunkJob, k: int) -> MLPParams:
    """Train model ``k`` of the job alone (layouts in ``_native/mlp1.c``, shapes in ``_native/mlp1.py``)."""
    spec, tr = job.model, job.train
    F, H, C, B = spec.n_features, spec.hidden[0], spec.n_classes, tr.batch_size
    D = job.pool.shape[1]
    sizes = {"D": D, "H": H, "C": C, "B": B, "L": BLOCK_STEPS}
    gen = torch_generator(job.seeds[k], "train")
    (w1, w2), (b1, b2) = init_params(spec, gen)
    W1 = torch.zeros(D, H)
    W1[:F], W1[F] = w1, b1
    P2 = torch.cat([w2.T.reshape(-1), b2])  # W2 as (classes, hidden) rows, then the biases
    W1c = TRAIN.allocate(["W1c"], sizes)["W1c"]
    kernels.copy_weights(W1, W1c)
    P1 = blocks(W1, TILE)  # the kernel's layout: 32 x 32 blocks, each contiguous
    state = {
        "P1": P1,
        "m1": torch.zeros_like(P1),
        "v1": torch.zeros_like(P1),
        "W1c": W1c,
        "P2": P2,
        "m2": torch.zeros_like(P2),
        "v2": torch.zeros_like(P2),
    }
    batch = TRAIN.allocate(["idx", "rw", "labels"], sizes)  # BLOCK_STEPS rows; a call uses the first L
    idx, rw, labels = batch["idx"], batch["rw"], batch["labels"]
    buffers = {"pool": job.pool, **batch, **state, **TRAIN.allocate(SCRATCH, sizes)}
    call = kernels.bind_train(buffers, D=D, H=H, C=C, B=B, lr=tr.lr, weight_decay=tr.weight_decay)
    stream = MinibatchStream(job.train_sets[k], gen, tr.epochs, B)
    t = 0
    while t < stream.total:
        L = min(BLOCK_STEPS, stream.total - t)
        stream.take(L, idx[:L], rw[:L])
        labels[:L] = job.labels[idx[:L]]
        call(L=L, t0=t)
        t += L
        if not bool((P1.sum() + P2.sum()).isfinite()):
            raise TrainingError(
                f"training diverged (non-finite weights) for model {job.positions[k]} after {t} steps; "
                "lower the learning rate"
            )
    W1 = unblocks(P1, D, H, TILE)
    return MLPParams(
        spec=spec,
        weights=(W1[:F].numpy().copy(), P2[: C * H].view(C, H).T.contiguous().numpy()),
        biases=(W1[F].numpy().copy(), P2[C * H :].numpy().copy()),
    )


def blocks(w: torch.Tensor, t: int) -> torch.Tensor:
    """(D, H) as contiguous t x t blocks, block row-major: shape (D/t, H/t, t, t)."""
    D, H = w.shape
    return w.view(D // t, t, H // t, t).permute(0, 2, 1, 3).contiguous()


def unblocks(b: torch.Tensor, D: int, H: int, t: int) -> torch.Tensor:
    """The inverse of :func:`blocks`: (D, H)."""
    return b.permute(0, 2, 1, 3).reshape(D, H)

"""The fused path: one-hidden-layer networks trained one at a time on compiled steps (AMX or AVX512-BF16).

Networks with one hidden layer trained in bf16 (the seed's 784-128-10 among them) can train one model
at a time in C (``_native/mlp1.c``): one call per block of :data:`~.planning.BLOCK_STEPS` steps runs
gather, forward, backward and Adam with the model's weights and state close to the core. The block
products run on AMX tiles where the CPU has AMX-BF16 (Intel Sapphire Rapids and later; about twice the
stacked path's speed there, and the fixed rules' choice) and on AVX512-BF16 dot products where it has
those without AMX (AMD Zen 4 and later: about 10% faster than the stacked path on a 2-core EPYC, so the
tuner, :mod:`miaudit.training.tuning`, times it against the stacked path and keeps the faster). Chunks
hold one model each and the executor's workers take them in turn.

The kernel's contract (``_native/mlp1.py``) declares every buffer; this module allocates the scratch
and the batch buffers from it and binds each model's buffers once (:class:`FusedModel`), so every shape,
dtype and layout is checked before a pointer crosses into C. A model gets the same initialisation and
minibatch order as on the stacked path and in the plain loop (its ``torch_generator(seed, "train")``).
Arithmetic: the first layer's inputs, weights and output gradients are bf16, its outputs and weight
gradient float32; the output layer, softmax and loss are float32; Adam updates float32 master weights.
The two builds round differently (the order of their float32 sums), so their models, and the stacked
path's, get separate cache keys (:func:`miaudit.studies.cache.train_key`).
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

__all__ = ["FusedModel", "blocks", "fused_applies", "padded_width", "train_fused", "unblocks"]


def fused_applies(spec: ModelSpec, train: TrainSpec, precision: str) -> bool:
    """Whether models can train one at a time on the compiled steps (:mod:`miaudit.training.native`).

    They apply to bf16, one hidden layer of a width that is a multiple of 32, no dropout or label
    smoothing, a batch size that is a multiple of 32, on a CPU with AMX-BF16 or AVX512-BF16 where the
    kernels build. Everything else (f32, deeper networks, dropout, label smoothing, DP-SGD, other CPUs)
    is stacked. Whether they are used where they apply is :mod:`miaudit.training.tuning`'s choice.
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


class FusedModel:
    """One model of a job on the compiled steps: its state and batch buffers, bound to the kernel once.

    Layouts are ``_native/mlp1.c``'s, shapes ``_native/mlp1.py``'s. :meth:`run` trains the next block of
    steps; :meth:`params` exports the weights.
    """

    def __init__(self, kernels: MLP1Kernels, job: ChunkJob, k: int) -> None:
        spec, tr = job.model, job.train
        self.spec, self.job, self.k = spec, job, k
        F, H, C, B = spec.n_features, spec.hidden[0], spec.n_classes, tr.batch_size
        self.D = D = job.pool.shape[1]
        sizes = {"D": D, "H": H, "C": C, "B": B, "L": BLOCK_STEPS}
        gen = torch_generator(job.seeds[k], "train")
        (w1, w2), (b1, b2) = init_params(spec, gen)
        W1 = torch.zeros(D, H)
        W1[:F], W1[F] = w1, b1
        P2 = torch.cat([w2.T.reshape(-1), b2])  # W2 as (classes, hidden) rows, then the biases
        W1c = TRAIN.allocate(["W1c"], sizes)["W1c"]
        kernels.copy_weights(W1, W1c)
        P1 = blocks(W1, TILE)  # the kernel's layout: 32 x 32 blocks, each contiguous
        self.P1, self.P2 = P1, P2
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
        self.idx, self.rw, self.labels = batch["idx"], batch["rw"], batch["labels"]
        buffers = {"pool": job.pool, **batch, **state, **TRAIN.allocate(SCRATCH, sizes)}
        self.call = kernels.bind_train(buffers, D=D, H=H, C=C, B=B, lr=tr.lr, weight_decay=tr.weight_decay)
        self.stream = MinibatchStream(job.train_sets[k], gen, tr.epochs, B)
        self.t = 0

    def run(self, L: int) -> None:
        """The next ``L`` (at most :data:`BLOCK_STEPS`) steps of the model's minibatch stream."""
        idx, rw = self.idx, self.rw
        self.stream.take(L, idx[:L], rw[:L])
        self.labels[:L] = self.job.labels[idx[:L]]
        self.call(L=L, t0=self.t)
        self.t += L

    def params(self) -> MLPParams:
        spec = self.spec
        F, H, C = spec.n_features, spec.hidden[0], spec.n_classes
        W1 = unblocks(self.P1, self.D, H, TILE)
        P2 = self.P2
        return MLPParams(
            spec=spec,
            weights=(W1[:F].numpy().copy(), P2[: C * H].view(C, H).T.contiguous().numpy()),
            biases=(W1[F].numpy().copy(), P2[C * H :].numpy().copy()),
        )


def _train_one(kernels: MLP1Kernels, job: ChunkJob, k: int) -> MLPParams:
    """Train model ``k`` of the job alone (layouts in ``_native/mlp1.c``, shapes in ``_native/mlp1.py``)."""
    m = FusedModel(kernels, job, k)
    while m.t < m.stream.total:
        m.run(min(BLOCK_STEPS, m.stream.total - m.t))
        if not bool((m.P1.sum() + m.P2.sum()).isfinite()):
            raise TrainingError(
                f"training diverged (non-finite weights) for model {job.positions[k]} after {m.t} steps; "
                "lower the learning rate"
            )
    return m.params()


def blocks(w: torch.Tensor, t: int) -> torch.Tensor:
    """(D, H) as contiguous t x t blocks, block row-major: shape (D/t, H/t, t, t)."""
    D, H = w.shape
    return w.view(D // t, t, H // t, t).permute(0, 2, 1, 3).contiguous()


def unblocks(b: torch.Tensor, D: int, H: int, t: int) -> torch.Tensor:
    """The inverse of :func:`blocks`: (D, H)."""
    return b.permute(0, 2, 1, 3).reshape(D, H)

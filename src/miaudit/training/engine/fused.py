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

**DP-SGD** (:class:`FusedDPModel`, ``miaudit_mlp1_train_dp``): the same algorithm as the stacked path
(:mod:`.dp_stacked`: the same initial weights, Poisson batches and noise values), with per-example norms by
the norm trick in C, each step's batch padded to a multiple of 8 rows only, and the first layer's products
in bf16 on AVX512-BF16 dot products (in both builds). Its clipping is exact for what it sums: the clipping
factor is computed against ``1 + 2^-8`` times the float32 norm, which covers the bf16 rounding of the scaled
hidden gradients (at most ``2^-9`` relative each), so every example's contribution, as actually summed,
has norm at most ``max_grad_norm`` (tested one example at a time). The rules take it for every DP recipe it
applies to (:func:`miaudit.training.tuning.rule_choice`); ``precision="f32"`` keeps the float32 stacked path.
"""

from __future__ import annotations

import numpy as np
import torch

from miaudit.errors import TrainingError
from miaudit.seeding import torch_generator
from miaudit.training._native.mlp1 import DP_SCRATCH, DP_STEP_ROWS, SCRATCH, TILE, TRAIN, TRAIN_DP
from miaudit.training.dp import DPSchedule, noise_stream, sample_generator
from miaudit.training.engine.dp_stacked import PoissonStream
from miaudit.training.engine.planning import BLOCK_STEPS, ChunkJob
from miaudit.training.engine.schedule import MinibatchStream
from miaudit.training.native import MLP1Kernels, load_mlp1
from miaudit.training.networks import MLPParams, init_params
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = [
    "FusedDPModel",
    "FusedModel",
    "blocks",
    "fused_applies",
    "padded_width",
    "train_fused",
    "train_fused_dp",
    "unblocks",
]


def fused_applies(spec: ModelSpec, train: TrainSpec, precision: str) -> bool:
    """Whether models can train one at a time on the compiled steps (:mod:`miaudit.training.native`).

    They apply to bf16, one hidden layer of a width that is a multiple of 32, no dropout or label
    smoothing, a batch size that is a multiple of 32 (any expected batch size for DP-SGD), on a CPU with
    AMX-BF16 or AVX512-BF16 where the kernels build (DP-SGD: AVX512-BF16, which every CPU with AMX also
    has). Everything else (f32, deeper networks, dropout, label smoothing, other CPUs) is stacked. Whether
    they are used where they apply is :mod:`miaudit.training.tuning`'s choice.
    """
    if not (
        precision == "bf16"
        and train.label_smoothing == 0
        and len(spec.hidden) == 1
        and spec.hidden[0] % TILE == 0
        and spec.dropout == 0
        and (train.dp or train.batch_size % TILE == 0)
    ):
        return False
    kernels = load_mlp1()
    return kernels is not None and (kernels.dp or not train.dp)


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
        H, C, B = spec.hidden[0], spec.n_classes, tr.batch_size
        self.D = D = job.pool.shape[1]
        sizes = {"D": D, "H": H, "C": C, "B": B, "L": BLOCK_STEPS}
        gen = torch_generator(job.seeds[k], "train")
        state = _initial_state(kernels, spec, D, gen)
        self.P1, self.P2 = state["P1"], state["P2"]
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
        return _export(self.spec, self.P1, self.P2, self.D)


class FusedDPModel:
    """One model of a DP-SGD job on the compiled steps (``miaudit_mlp1_train_dp``), bound once per batch capacity.

    DP-SGD as on the stacked path (:mod:`.dp_stacked`): the same initial weights, Poisson batches (its
    ``dp-sample`` stream) and noise values (its noise stream, in :func:`~miaudit.training.dp.noise_layout`'s
    order); each step's batch padded with zero rows to a multiple of 8 only. The first layer's products are
    bf16, its clipping exact for the rounded values it sums (``_native/mlp1.c`` states the margin).

    Parameters
    ----------
    kernels : MLP1Kernels
    job : ChunkJob
        With ``job.dp`` (the models' schedules).
    k : int
        The model's position in the job.
    """

    def __init__(self, kernels: MLP1Kernels, job: ChunkJob, k: int) -> None:
        assert job.dp is not None
        spec, tr = job.model, job.train
        sch: DPSchedule = job.dp[k]
        self.spec, self.job, self.k, self.kernels = spec, job, k, kernels
        self.D = job.pool.shape[1]
        state = _initial_state(kernels, spec, self.D, torch_generator(job.seeds[k], "train"))
        self.P1, self.P2 = state["P1"], state["P2"]
        # squared norms of the model's (bf16) rows of the pool, their ones column included (the other rows': 0)
        rows = torch.from_numpy(np.asarray(job.train_sets[k], dtype=np.int64))
        pool_sq = torch.zeros(job.pool.shape[0])
        pool_sq[rows] = job.pool[rows].float().square().sum(1)
        self.fixed: dict[str, torch.Tensor] = {"pool": job.pool, "pool_sq": pool_sq, **state}
        self.scalars = {
            "D": self.D,
            "F": spec.n_features,
            "H": spec.hidden[0],
            "C": spec.n_classes,
            "lr": tr.lr,
            "weight_decay": tr.weight_decay,
            "max_grad_norm": tr.max_grad_norm,
            "inv_batch": 1.0 / sch.expected_batch_size,
            "noise_scale": sch.noise_std / sch.expected_batch_size,
            "key": noise_stream(job.seeds[k]).key,
        }
        self.stream = PoissonStream(job.train_sets[k], sample_generator(job.seeds[k]), sch)
        self.B = 0  # rows a step can hold (the bound buffers'), grown as batches need
        self.t = 0

    def _bind(self, B: int) -> None:
        sizes = {"D": self.D, "F": self.spec.n_features, "H": self.spec.hidden[0], "C": self.spec.n_classes}
        sizes |= {"B": B, "L": BLOCK_STEPS}
        batch = TRAIN_DP.allocate(["idx", "counts", "labels"], sizes)
        self.idx, self.counts, self.labels = batch["idx"], batch["counts"], batch["labels"]
        buffers = {**self.fixed, **batch, **TRAIN_DP.allocate(DP_SCRATCH, sizes)}
        self.call = self.kernels.bind_train_dp(buffers, B=B, **self.scalars)
        self.B = B

    def run(self, L: int) -> None:
        """The next ``L`` (at most :data:`BLOCK_STEPS`) steps: their Poisson batches drawn, then trained."""
        masks = self.stream.take(L)  # (L, n_train)
        counts = masks.sum(1)
        need = max(DP_STEP_ROWS, -(-int(counts.max()) // DP_STEP_ROWS) * DP_STEP_ROWS)
        if need > self.B:  # room for a quarter more than this block's largest batch: few rebinds
            self._bind(-(-(need + need // 4) // DP_STEP_ROWS) * DP_STEP_ROWS)
        idx = self.idx[:L]
        idx.zero_()
        step, col = masks.nonzero(as_tuple=True)  # row by row, each row's in increasing order
        slot = torch.arange(len(step)) - (torch.cumsum(counts, 0) - counts)[step]
        idx[step, slot] = self.stream.rows[col]
        self.counts[:L] = counts
        self.labels[:L] = self.job.labels[idx]
        if self.call(L=L, t0=self.t) != 0:
            raise TrainingError(f"{self.kernels.path.name} has no DP-SGD steps (built without AVX512-BF16)")
        self.t += L

    def params(self) -> MLPParams:
        return _export(self.spec, self.P1, self.P2, self.D)


def train_fused_dp(job: ChunkJob) -> list[MLPParams]:
    """Train the chunk's models with DP-SGD one after another on the compiled steps; their weights in order.

    Raises
    ------
    TrainingError
        The kernels (with their DP-SGD steps) cannot be loaded in this process, or a model's weights
        became non-finite.
    """
    kernels = load_mlp1()
    if kernels is None or not kernels.dp:
        raise TrainingError(
            "the compiled one-hidden-layer DP-SGD steps were planned for but cannot be loaded in this process; "
            "see miaudit.training.native.native_status(), or train with precision='f32' (the stacked path)"
        )
    out = []
    for k in range(len(job.seeds)):
        m = FusedDPModel(kernels, job, k)
        while m.t < m.stream.total:
            m.run(min(BLOCK_STEPS, m.stream.total - m.t))
            _check_finite(m.P1, m.P2, job, k, m.t, "DP-SGD steps")
        out.append(m.params())
    return out


def _initial_state(kernels: MLP1Kernels, spec: ModelSpec, D: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A model's initial weights (as on the stacked path and in the loop) and Adam state, in the kernel's layouts."""
    F, H = spec.n_features, spec.hidden[0]
    (w1, w2), (b1, b2) = init_params(spec, gen)
    W1 = torch.zeros(D, H)
    W1[:F], W1[F] = w1, b1
    P2 = torch.cat([w2.T.reshape(-1), b2])  # W2 as (classes, hidden) rows, then the biases
    W1c = TRAIN.allocate(["W1c"], {"D": D, "H": H})["W1c"]
    kernels.copy_weights(W1, W1c)
    P1 = blocks(W1, TILE)  # the kernel's layout: 32 x 32 blocks, each contiguous
    return {
        "P1": P1,
        "m1": torch.zeros_like(P1),
        "v1": torch.zeros_like(P1),
        "W1c": W1c,
        "P2": P2,
        "m2": torch.zeros_like(P2),
        "v2": torch.zeros_like(P2),
    }


def _export(spec: ModelSpec, P1: torch.Tensor, P2: torch.Tensor, D: int) -> MLPParams:
    F, H, C = spec.n_features, spec.hidden[0], spec.n_classes
    W1 = unblocks(P1, D, H, TILE)
    return MLPParams(
        spec=spec,
        weights=(W1[:F].numpy().copy(), P2[: C * H].view(C, H).T.contiguous().numpy()),
        biases=(W1[F].numpy().copy(), P2[C * H :].numpy().copy()),
    )


def _check_finite(P1: torch.Tensor, P2: torch.Tensor, job: ChunkJob, k: int, t: int, steps: str = "steps") -> None:
    if not bool((P1.sum() + P2.sum()).isfinite()):
        raise TrainingError(
            f"training diverged (non-finite weights) for model {job.positions[k]} after {t} {steps}; "
            "lower the learning rate"
        )


def _train_one(kernels: MLP1Kernels, job: ChunkJob, k: int) -> MLPParams:
    """Train model ``k`` of the job alone (layouts in ``_native/mlp1.c``, shapes in ``_native/mlp1.py``)."""
    m = FusedModel(kernels, job, k)
    while m.t < m.stream.total:
        m.run(min(BLOCK_STEPS, m.stream.total - m.t))
        _check_finite(m.P1, m.P2, job, k, m.t)
    return m.params()


def blocks(w: torch.Tensor, t: int) -> torch.Tensor:
    """(D, H) as contiguous t x t blocks, block row-major: shape (D/t, H/t, t, t)."""
    D, H = w.shape
    return w.view(D // t, t, H // t, t).permute(0, 2, 1, 3).contiguous()


def unblocks(b: torch.Tensor, D: int, H: int, t: int) -> torch.Tensor:
    """The inverse of :func:`blocks`: (D, H)."""
    return b.permute(0, 2, 1, 3).reshape(D, H)

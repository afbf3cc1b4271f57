"""DP-SGD on the stacked path: Poisson batches, per-example clipping by the norm trick, per-model noise.

The algorithm is :mod:`miaudit.training.dp`'s (Opacus's DP-SGD); here is how K models run it together:

* **Batches.** Every model draws its own Poisson samples, :data:`~.planning.BLOCK_STEPS` steps at a
  time, from its ``dp-sample`` stream. Each step's batches are padded to one width, that step's largest
  batch rounded up to a multiple of :data:`PAD_TO`, with zero-weight rows: a padding row's output
  gradient is 0, so it adds nothing to any norm or gradient. A step may have an empty batch (only
  noise then). The step plans (buffers bound once) are kept per width while the stack is unchanged.
* **Clipping without per-example gradients.** The backward pass first computes every layer's output
  gradient ``dz`` (each example's gradient of its own loss: row weight 1), then each example's gradient
  norm from ``||h_b||^2 ||dz_b||^2`` summed over layers (:func:`~miaudit.training.dp.per_example_sq_norms`,
  written here on the step's buffers), then scales each example's ``dz`` rows by its clipping factor over
  the expected batch size, and only then forms the weight gradients with the ordinary batched products.
* **Noise.** Each model draws ``n_parameters`` Gaussian numbers per step from its noise stream
  (:mod:`miaudit.training.noise`: step ``t``'s values depend on the seed and ``t`` only), in
  :func:`~miaudit.training.dp.noise_layout`'s order, scaled by ``sigma * C / expected_batch_size``
  and added to its gradients; then the stack's Adam step, as without DP. A model's weights depend on
  its stack only through rounding (the padded width follows the stack's largest batch).
* **Dropout** masks come from ``torch_generator(seed, "dropout", layer)``, one row per real example in
  step order (as the plain loop draws them), so a model's training does not depend on its stack.
* **Devices.** On a GPU (``TrainSpec.device``) the same code runs with the stack and its buffers there;
  Poisson samples, dropout masks and the noise are drawn on the CPU, as on the CPU path, and moved, so
  the same seed gives the same batches, masks and noise on every device.

DP-SGD computes in float32 here (the arithmetic of Opacus); one-hidden-layer networks on CPUs with
AVX512-BF16 take the fused path in bf16 instead (:mod:`.fused`, ``_native/mlp1.c``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from miaudit.errors import TrainingError
from miaudit.seeding import torch_generator
from miaudit.training.dp import (
    DPSchedule,
    clip_factors,
    noise_layout,
    noise_stream,
    poisson_masks,
    sample_generator,
)
from miaudit.training.engine.planning import BLOCK_STEPS, ChunkJob
from miaudit.training.engine.stack import Layer, Stack, layer_layout
from miaudit.training.engine.stacked import StepPlan, _threshold_backward_out, neg_targets
from miaudit.training.networks import MLPParams, init_params
from miaudit.training.noise import FillCall, NoiseStream
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["DPStepPlan", "PoissonStream", "train_stacked_dp"]

#: padded batch widths are multiples of this (fewer distinct step plans)
PAD_TO = 4


class PoissonStream:
    """One model's Poisson-sampled batches: rows of the pool, ``schedule.steps`` steps in all.

    Parameters
    ----------
    rows : ndarray of shape (n_train,), int64
        The model's rows of the pool.
    gen : torch.Generator
        The model's ``dp-sample`` stream.
    schedule : DPSchedule
    """

    def __init__(self, rows: np.ndarray, gen: torch.Generator, schedule: DPSchedule) -> None:
        self.rows = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        self.gen, self.schedule = gen, schedule
        self.total = schedule.steps
        self.taken = 0

    def take(self, n_steps: int) -> torch.Tensor:
        """The next ``n_steps`` steps' samples: bool Tensor of shape (n_steps, n_train)."""
        self.taken += n_steps
        return poisson_masks(self.gen, len(self.rows), self.schedule.sample_rate, n_steps)


def _block(
    streams: Sequence[PoissonStream], L: int
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[int]]:
    """The next ``L`` steps of every stream, padded.

    Returns
    -------
    idx : Tensor of shape (L, Ka, width), int64
        Pool rows (a model's first row on padding); ``width`` is the block's largest batch, rounded up.
    w : Tensor of shape (L, Ka, width)
        1 on real rows, 0 on padding.
    counts : list of Tensor of shape (L,)
        Each model's batch sizes.
    widths : list of int
        Each step's padded width: its largest batch rounded up to a multiple of :data:`PAD_TO` (the
        step runs on the first ``widths[l]`` columns only).
    """
    masks = [s.take(L) for s in streams]
    counts = [m.sum(1) for m in masks]
    step_max = torch.stack(counts).amax(0)  # (L,)
    widths = [max(PAD_TO, -(-int(c) // PAD_TO) * PAD_TO) for c in step_max.tolist()]
    width = max(widths)
    idx = torch.empty(L, len(streams), width, dtype=torch.int64)
    w = torch.zeros(L, len(streams), width)
    ar = torch.arange(width)
    for a, (s, m, c) in enumerate(zip(streams, masks, counts, strict=True)):
        # sampled positions in increasing order, each step's first: nonzero lists them row by row
        step, col = m.nonzero(as_tuple=True)
        slot = torch.arange(len(step)) - (torch.cumsum(c, 0) - c)[step]
        idx[:, a] = s.rows[0]
        idx[:, a][step, slot] = s.rows[col]
        w[:, a] = (ar < c.unsqueeze(1)).float()
    return idx, w, counts, widths


def _dp_dropout_masks(
    spec: ModelSpec, gens: Sequence[Sequence[torch.Generator]], counts: Sequence[torch.Tensor], width: int
) -> list[torch.Tensor]:
    """Per hidden layer, a tensor (Ka, L, width, units) of 0 or 1/keep: one row per real example, drawn in order."""
    if spec.dropout <= 0:
        return []
    keep = 1.0 - spec.dropout
    L = len(counts[0])
    ar = torch.arange(width)
    out = []
    for i, units in enumerate(spec.hidden):
        m = torch.zeros(len(gens), L, width, units)
        for a, (g, c) in enumerate(zip(gens, counts, strict=True)):
            real = ar < c.unsqueeze(1)
            drawn = torch.rand(int(c.sum()), units, generator=g[i])
            m[a][real] = (drawn < keep).float().div_(keep)
        out.append(m)
    return out


class DPStepPlan(StepPlan):
    """A DP-SGD step of one stack at one padded batch width (see the module docstring).

    Parameters
    ----------
    stack, pool, batch, train
        As :class:`~.stacked.StepPlan`.
    pool_sq : Tensor of shape (n_pool,)
        Squared norms of the pool's rows (the first layer's inputs, ones column included).
    spec : ModelSpec
    schedules : sequence of DPSchedule
        The stack's models' schedules, in stack order.
    """

    def __init__(
        self,
        stack: Stack,
        pool: torch.Tensor,
        pool_sq: torch.Tensor,
        batch: int,
        train: TrainSpec,
        spec: ModelSpec,
        schedules: Sequence[DPSchedule],
    ) -> None:
        super().__init__(stack, pool, batch, train, spec.dropout)
        K, dev = stack.K, stack.device
        self.pool_sq, self.batch = pool_sq, batch
        self.norms = torch.zeros(K, batch, device=dev)
        self.max_grad_norm = train.max_grad_norm
        self.inv_batch = torch.tensor([1.0 / s.expected_batch_size for s in schedules], device=dev).view(K, 1)
        std = [s.noise_std / s.expected_batch_size for s in schedules]
        self.noisy = [(a, v) for a, v in enumerate(std) if v > 0]
        self.fills: list[tuple[int, FillCall]] | None = None
        shape = (K, spec.n_parameters)
        self.noise = stack.buffer("dp-noise", shape, torch.float32)  # shared by the stack's plans
        # the noise is drawn on the CPU (the generators' device) and moved: one buffer on the CPU
        cpu = torch.device("cpu")
        self.noise_cpu = self.noise if dev == cpu else stack.buffer("dp-noise-cpu", shape, torch.float32, cpu)
        for a, v in enumerate(std):
            if v == 0:  # a model without noise (sigma 0) in a stack with noise: zeros, never drawn
                self.noise[a].zero_()
                self.noise_cpu[a].zero_()
        self.noise_views = _noise_views(stack, spec, self.noise)
        # each hidden layer's input as (K, batch, fan_in) (None: the pool's rows), and whether it has a bias block
        self.inputs = [(None if lay.folded else h_in, not lay.folded) for lay, _z, _h, h_in, _w, _b in self.hidden]
        self.last_bias = not self.last.folded

    def dp_step(
        self, ix: torch.Tensor, negy: torch.Tensor, rw: torch.Tensor, masks: Sequence[torch.Tensor],
        noise: Sequence[NoiseStream],
        t: int,
    ) -> None:  # fmt: skip
        """One DP-SGD step of every model in the stack, each on its own Poisson batch.

        Parameters
        ----------
        ix : Tensor of shape (K * batch,)
        negy : Tensor of shape (K, n_classes, batch)
            Minus the target distributions on real rows, 0 on padding rows.
        rw : Tensor of shape (K, 1, batch)
            1 on real rows, 0 on padding rows.
        masks : sequence of Tensor of shape (K, batch, width)
        noise : sequence of NoiseStream
            The models' noise streams, in stack order.
        t : int
            The step's number (from 0): which values of the streams it adds.
        """
        self.forward(ix, masks)
        p = self.p
        torch.addcmul(negy, p, rw, out=p)  # each example's d(own loss)/d(logits): (K, C, B)
        sq = p.square().sum(1)  # (K, B)
        if self.last.folded:  # no hidden layer: the last layer's inputs are the pool's rows
            sq *= self.pool_sq[ix].view(sq.shape)
        else:
            sq *= self.h_last.square().sum(2).add_(1.0)
        da = self.da_last
        dzs = []
        if da is not None:
            torch.bmm(p.transpose(1, 2), self.w_last, out=da)
        for (h_out, _dz_buf, _h_in_t, w_t, _gw, gb, da_in), (h_in, bias) in zip(
            self.backward, reversed(self.inputs), strict=True
        ):
            dz = _threshold_backward_out(da, h_out, 0.0, grad_input=da)
            if self.inv_keep is not None:
                dz.mul_(self.inv_keep)
            hsq = self.pool_sq[ix].view(sq.shape) if h_in is None else h_in.square().sum(2)
            if bias:
                hsq += 1.0
            sq.addcmul_(hsq, dz.square().sum(2))
            dzs.append(dz)
            if gb is not None:
                torch.bmm(dz, w_t, out=da_in)
                da = da_in
        self.norms = sq.sqrt_()  # each example's gradient norm, (K, B): 0 on padding rows
        # clipping factor over the expected batch size, per example: (K, B)
        scale = clip_factors(sq, self.max_grad_norm).mul_(self.inv_batch)
        p.mul_(scale.unsqueeze(1))
        torch.bmm(p, self.h_last, out=self.gw_last)
        if self.gb_last is not None:
            torch.sum(p, dim=2, keepdim=True, out=self.gb_last)
        s3 = scale.unsqueeze(2)
        for dz, (_h_out, _dz_buf, h_in_t, _w_t, gw, gb, _da_in) in zip(dzs, self.backward, strict=True):
            dz.mul_(s3)
            torch.bmm(h_in_t, dz, out=gw)
            if gb is not None:
                torch.sum(dz, dim=1, keepdim=True, out=gb)
        if self.noisy:
            if self.fills is None:  # bound once per plan: the buffer is checked once, not every step
                self.fills = [(a, noise[a].bind(self.noise_cpu[a], std)) for a, std in self.noisy]
            for _a, fill in self.fills:
                fill(t)
            if self.noise_cpu is not self.noise:
                self.noise.copy_(self.noise_cpu)
            for g, n in self.noise_views:
                g.add_(n)
        self.adam()


def _noise_views(stack: Stack, spec: ModelSpec, noise: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs (gradient block, the same-shaped view of the noise buffer (K, n_parameters)) for every block."""
    K = stack.K
    offsets = noise_layout(spec)
    out = []
    for lay in stack.layers:
        (w_off, (fan_in, fan_out)), (b_off, _) = offsets[2 * lay.i], offsets[2 * lay.i + 1]
        if lay.folded:  # weight rows then the bias row: one contiguous (fan_in + 1, fan_out) segment
            n = noise[:, w_off : w_off + (fan_in + 1) * fan_out].view(K, fan_in + 1, fan_out)
            out.append((stack.cgrad_w(lay.i), n.transpose(1, 2) if lay.last else n))
            continue
        n = noise[:, w_off : w_off + fan_in * fan_out].view(K, fan_in, fan_out)
        out.append((stack.cgrad_w(lay.i), n.transpose(1, 2) if lay.last else n))
        b = noise[:, b_off : b_off + fan_out]
        out.append((stack.cgrad_b(lay.i), b.view(K, fan_out, 1) if lay.last else b.view(K, 1, fan_out)))
    return out


def train_stacked_dp(job: ChunkJob) -> list[MLPParams]:
    """Train the chunk's models with DP-SGD as one shrinking stack; their weights (no privacy record) in order.

    Raises
    ------
    TrainingError
        Some model's weights became non-finite (naming the models).
    """
    spec, tr = job.model, job.train
    if job.dp is None:
        raise TrainingError("train_stacked_dp needs the chunk's DP-SGD schedules (ChunkJob.dp)")
    layers: list[Layer] = layer_layout(spec, "f32")
    K, C = len(job.seeds), spec.n_classes
    device = torch.device(job.device)
    pool, labels = job.pool.to(device), job.labels.to(device)  # no copy where they are there already
    inits = [init_params(spec, torch_generator(s, "train")) for s in job.seeds]
    stack = Stack.initial(spec, layers, inits, device)
    streams = [
        PoissonStream(rows, sample_generator(s), sch)
        for rows, s, sch in zip(job.train_sets, job.seeds, job.dp, strict=True)
    ]
    noise = [noise_stream(s) for s in job.seeds]
    drop_gens = [[torch_generator(s, "dropout", i) for i in range(len(spec.hidden))] for s in job.seeds]
    pool_sq = pool.square().sum(1)  # each row's squared norm, its ones column included
    results: list[MLPParams | None] = [None] * K
    active = list(range(K))
    plans: dict[int, DPStepPlan] = {}
    t = 0
    with torch.no_grad():
        while active:
            Ka = len(active)
            L = min(min(streams[k].total for k in active) - t, BLOCK_STEPS)
            idx, w, counts, widths = _block([streams[k] for k in active], L)  # drawn on the CPU
            idx, w = idx.to(device), w.to(device)
            negy = neg_targets(labels[idx], w, C, tr.label_smoothing)
            rw = w.unsqueeze(2)
            masks = [
                m.to(device) for m in _dp_dropout_masks(spec, [drop_gens[k] for k in active], counts, idx.shape[2])
            ]
            streams_a = [noise[k] for k in active]
            for step, B in enumerate(widths):
                plan = plans.get(B)
                if plan is None:
                    plan = plans[B] = DPStepPlan(stack, pool, pool_sq, B, tr, spec, [job.dp[k] for k in active])
                plan.dp_step(
                    idx[step, :, :B].reshape(-1),
                    negy[step, :, :, :B],
                    rw[step, :, :, :B],
                    [mk[:, step, :B] for mk in masks],
                    streams_a,
                    t + step,
                )
            t += L
            ok = stack.finite()
            if not bool(ok.all()):
                bad = [job.positions[active[a]] for a in range(Ka) if not ok[a]]
                raise TrainingError(
                    f"training diverged (non-finite weights) for models {bad} after {t} DP-SGD steps; "
                    "lower the learning rate"
                )
            finished = [a for a, k in enumerate(active) if streams[k].total == t]
            if finished:
                for a in finished:
                    results[active[a]] = stack.export(spec, a)
                keep = sorted(set(range(Ka)) - set(finished))
                active = [active[a] for a in keep]
                if active:
                    stack = stack.select(keep)
                    plans = {}
    return [r for r in results if r is not None]

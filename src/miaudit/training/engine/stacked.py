"""The stacked path: K models of one architecture trained together with batched matrix products.

The K models' weights are stacked as ``(K, fan_in, fan_out)`` tensors (:mod:`.stack`) and every step
is a handful of batched matrix products with a hand-written backward pass (no autograd; the first
layer's input gradient is never computed) and one fused Adam update over a single flat buffer holding
all parameters of all models (no Python loop over models or parameters inside a step).

* Unequal set sizes are handled by padding and masking rows, not whole steps: model k runs its own
  ``epochs * ceil(n_k / batch_size)`` steps, each over its own batch (:mod:`.schedule`). All active
  models share the step counter, so Adam's bias correction is each model's own. When a model has run
  all its steps its weights are taken out and it leaves the stack (the stack shrinks); it never
  receives an extra step.
* Dropout masks come from ``torch_generator(seed, "dropout", l)`` (one stream per hidden layer),
  drawn in step order.
* Precision ``bf16`` keeps float32 master weights, Adam state and the gradients Adam reads, and runs
  the matrix products of the first layer (and of any layer with at least
  :data:`~.stack.LOWP_MIN_WEIGHTS` weights) in bfloat16, accumulating in float32 as autocast would.
  Small layers, the softmax and the loss gradient stay float32.
* Adam is the compiled step of ``_native/adam.c`` where it builds (bf16 gradients in, bf16 weight
  copies out, one pass; its buffers checked against the contract once per stack), else
  ``torch._fused_adam_`` with the conversions around it; ``ChunkJob.adam`` says which (the tuner,
  :mod:`miaudit.training.tuning`, times both on the machine). Both use the Adam constants of
  ``_native/adam.py``.
* Devices: the stack, the pool and every step's buffers live on ``TrainSpec.device`` (the CPU, or a
  GPU through the same code); there Adam is always ``torch._fused_adam_`` (the compiled step is CPU
  code). Initial weights, minibatch indices and dropout masks are drawn on the CPU from the same seeded
  generators on every device and then moved, so a seed gives the same minibatches and masks anywhere
  and the numbers agree across devices to float rounding; weights come back to the CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from miaudit.errors import TrainingError
from miaudit.seeding import torch_generator
from miaudit.training._native.adam import ADAM
from miaudit.training.engine.planning import BLOCK_STEPS, ChunkJob
from miaudit.training.engine.schedule import MinibatchStream
from miaudit.training.engine.stack import Layer, Stack, layer_layout
from miaudit.training.native import AdamBuffers, load_native
from miaudit.training.networks import MLPParams, init_params
from miaudit.training.specs import ModelSpec, TrainSpec

__all__ = ["StepPlan", "neg_targets", "train_stacked"]


def train_stacked(job: ChunkJob) -> list[MLPParams]:
    """Train the models of one chunk together as one shrinking stack; their weights in the chunk's order.

    Raises
    ------
    TrainingError
        Some model's weights became non-finite (naming the models).
    """
    spec, tr = job.model, job.train
    layers = layer_layout(spec, job.precision)
    K, B = len(job.seeds), tr.batch_size
    device = torch.device(job.device)
    pool, labels = job.pool.to(device), job.labels.to(device)  # no copy where they are there already
    gens = [torch_generator(s, "train") for s in job.seeds]
    stack = Stack.initial(spec, layers, [init_params(spec, g) for g in gens], device)
    plan = StepPlan(stack, pool, B, tr, spec.dropout, adam=job.adam)
    streams = [MinibatchStream(s, g, tr.epochs, B) for s, g in zip(job.train_sets, gens, strict=True)]
    drop_gens = [[torch_generator(s, "dropout", i) for i in range(len(spec.hidden))] for s in job.seeds]
    keep_p = 1.0 - spec.dropout
    C = spec.n_classes
    results: list[MLPParams | None] = [None] * K
    active = list(range(K))
    t = 0
    with torch.no_grad():
        while active:
            Ka = len(active)
            L = min(min(streams[k].total for k in active) - t, BLOCK_STEPS)
            if spec.dropout > 0:
                L = max(1, min(L, 2**22 // (Ka * B * sum(spec.hidden))))
            # minibatches drawn on the CPU, then moved (no copy on the CPU)
            idx = torch.empty(L, Ka, B, dtype=torch.int64)
            w = torch.empty(L, Ka, B)
            for a, k in enumerate(active):
                streams[k].take(L, idx[:, a], w[:, a])
            idx, w = idx.to(device), w.to(device)
            negyw = neg_targets(labels[idx], w, C, tr.label_smoothing)
            rw = w.unsqueeze(2)
            masks = _dropout_masks(spec, layers, [drop_gens[k] for k in active], L, B, keep_p, device)
            step_masks = zip(*(mk.unbind(1) for mk in masks), strict=True) if masks else itertools.repeat(())
            per_step = zip(idx.view(L, -1).unbind(0), negyw.unbind(0), rw.unbind(0), step_masks, strict=False)
            for ix, ny, r, mk in per_step:
                plan.step(ix, ny, r, mk)
            t += L
            ok = stack.finite()
            if not bool(ok.all()):
                bad = [job.positions[active[a]] for a in range(Ka) if not ok[a]]
                raise TrainingError(
                    f"training diverged (non-finite weights) for models {bad} after {t} steps; lower the learning rate"
                )
            finished = [a for a, k in enumerate(active) if streams[k].total == t]
            if finished:
                for a in finished:
                    results[active[a]] = stack.export(spec, a)
                keep = sorted(set(range(Ka)) - set(finished))
                active = [active[a] for a in keep]
                if active:
                    stack = stack.select(keep)
                    plan = StepPlan(stack, pool, B, tr, spec.dropout, adam=job.adam)
    return [r for r in results if r is not None]


def neg_targets(labels: torch.Tensor, w: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    """Minus the target distributions times row weights, laid out like the logits.

    Parameters
    ----------
    labels : Tensor of shape (L, K, batch), int64
    w : Tensor of shape (L, K, batch)
        Row weights (0 on padding rows).
    n_classes : int
    smoothing : float
        Label smoothing a: targets ``(1 - a) * onehot + a / n_classes`` (0: one-hot).

    Returns
    -------
    Tensor of shape (L, K, n_classes, batch)
        On the device of ``w``.
    """
    L, K, B = w.shape
    out = torch.zeros(L, K, n_classes, B, device=w.device)
    if smoothing == 0:
        out.scatter_(2, labels.unsqueeze(2), w.neg().unsqueeze(2))
        return out
    out.copy_(w.mul(-smoothing / n_classes).unsqueeze(2).expand(L, K, n_classes, B))
    out.scatter_add_(2, labels.unsqueeze(2), w.mul(smoothing - 1.0).unsqueeze(2))
    return out


def _dropout_masks(
    spec: ModelSpec,
    layers: list[Layer],
    gens: list[list[torch.Generator]],
    L: int,
    B: int,
    keep: float,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """Per hidden layer, a tensor (Ka, L, B, width) of 0 or 1/keep on ``device``, each model's from its own stream.

    The uniform numbers are drawn on the CPU (the generators' device) and only the kept-or-dropped bits
    moved, so every device gets the same masks.
    """
    if spec.dropout <= 0:
        return []
    masks = []
    for i, width in enumerate(spec.hidden):
        r = torch.empty(len(gens), L, B, width)
        for a, g in enumerate(gens):
            torch.rand(L, B, width, generator=g[i], out=r[a])
        dtype = torch.bfloat16 if layers[i].lowp else torch.float32
        kept = r < keep if device is None else (r < keep).to(device)
        masks.append(kept.to(dtype).mul_(1.0 / keep))
    return masks


class StepPlan:
    """The training step of one stack, with every view and buffer bound once.

    A step is then a straight sequence of tensor operations (about 17 for one hidden layer) on
    preallocated memory: gather the minibatches, forward, softmax and loss gradient, hand-written
    backward (no input gradient for layer 1), then one Adam update over the flat buffers: the
    compiled step of :mod:`miaudit.training.native` (bf16 gradients in, bf16 weight copies out, one
    pass), or where it is unavailable or ``adam="torch"`` bf16 gradients to float32,
    ``torch._fused_adam_`` and float32 weights to their bf16 copies (:mod:`miaudit.training.tuning`
    times both and picks the faster on each machine).
    """

    def __init__(
        self,
        stack: Stack,
        pool: torch.Tensor,
        batch: int,
        train: TrainSpec,
        dropout: float,
        *,
        adam: str = "compiled",
    ) -> None:
        K, B = stack.K, batch
        layers = stack.layers
        self.stack, self.pool, self.train = stack, pool, train
        self.inv_keep = 1.0 / (1.0 - dropout) if dropout > 0 else None
        dts = [torch.bfloat16 if lay.lowp else torch.float32 for lay in layers]
        dev = stack.device
        if pool.device != dev:
            raise TrainingError(f"the pool ({pool.device}) and the stack ({dev}) must be on one device")
        self.x = torch.empty(K * B, pool.shape[1], dtype=pool.dtype, device=dev)
        x3 = self.x.view(K, B, -1)
        # hs[i]: input of layer i in its dtype; zs[i]: output of hidden layer i (after ReLU, dropout)
        self.x_conv = None if x3.dtype == dts[0] else (torch.empty(K, B, pool.shape[1], dtype=dts[0], device=dev), x3)
        hs = [x3 if self.x_conv is None else self.x_conv[0]]
        self.hidden = []
        for lay in layers[:-1]:
            z = torch.empty(K, B, lay.fan_out, dtype=dts[lay.i], device=dev)
            h_next = (
                z if dts[lay.i + 1] == z.dtype else torch.empty(K, B, lay.fan_out, dtype=dts[lay.i + 1], device=dev)
            )
            self.hidden.append(
                (lay, z, h_next, hs[-1], stack.cweight(lay.i), None if lay.folded else stack.cbias(lay.i))
            )
            hs.append(h_next)
        last = layers[-1]
        self.last = last
        self.w_last = stack.cweight(last.i)
        self.b_last = None if last.folded else stack.cbias(last.i)
        self.h_last_t = hs[-1].transpose(1, 2)
        self.h_last = hs[-1]
        self.p = torch.empty(K, last.fan_out, B, device=dev)
        self.dzt = self.p if dts[-1] == torch.float32 else torch.empty(K, last.fan_out, B, dtype=dts[-1], device=dev)
        self.gw_last = stack.cgrad_w(last.i)
        self.gb_last = None if last.folded else stack.cgrad_b(last.i)
        self.da_last = None if last.folded else torch.empty(K, B, last.fan_in, dtype=dts[-1], device=dev)
        # backward through hidden layers, output side first: (relu input h_{i+1} in dt[i+1], dz buffer in
        # dt[i] or None, h_i^T, W_i^T, grads, da buffer for layer i's input or None)
        self.backward = []
        for lay in reversed(layers[:-1]):
            h_out = hs[lay.i + 1]
            dz = None if dts[lay.i] == h_out.dtype else torch.empty(K, B, lay.fan_out, dtype=dts[lay.i], device=dev)
            da = None if lay.folded else torch.empty(K, B, lay.fan_in, dtype=dts[lay.i], device=dev)
            self.backward.append(
                (
                    h_out,
                    dz,
                    hs[lay.i].transpose(1, 2),
                    stack.cweight(lay.i).transpose(1, 2),
                    stack.cgrad_w(lay.i),
                    None if lay.folded else stack.cgrad_b(lay.i),
                    da,
                )
            )
        n = stack.n_lowp
        self.lowp = (stack.P[:n], stack.G[:n]) if n else None
        # the compiled Adam step (miaudit.training.native) where it builds and is chosen (CPU stacks only),
        # else PyTorch's fused Adam with the conversions around it; its calls: the bf16 prefix, then the
        # float32 rest, each checked against the kernel's contract here, once per stack
        if adam not in ("compiled", "torch"):
            raise TrainingError(f"adam must be 'compiled' or 'torch'; got {adam!r}")
        self.native = load_native() if adam == "compiled" and dev.type == "cpu" else None
        self.native_parts: list[AdamBuffers] = []
        if self.native is not None:
            parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
            if n:
                parts.append((stack.P[:n], stack.m[:n], stack.v[:n], stack.Gc, stack.Pc))
            if n < stack.P.numel():
                parts.append((stack.P[n:], stack.m[n:], stack.v[n:], stack.G[n:], None))
            self.native_parts = [
                self.native.adam_buffers(p, m, v, grad=g, p_bf16=pc, lr=train.lr, weight_decay=train.weight_decay)
                for p, m, v, g, pc in parts
            ]

    def forward(self, ix: torch.Tensor, masks: Sequence[torch.Tensor]) -> None:
        """Gather the minibatches and run the forward pass; the softmax ends in ``self.p``, (K, n_classes, batch)."""
        torch.index_select(self.pool, 0, ix, out=self.x)
        if self.x_conv is not None:
            self.x_conv[0].copy_(self.x_conv[1])
        for lay, z, h_next, h_in, w, b in self.hidden:
            if b is None:
                torch.bmm(h_in, w, out=z)
            else:
                torch.baddbmm(b, h_in, w, out=z)
            z.relu_()
            if masks:
                z.mul_(masks[lay.i])
            if h_next is not z:
                h_next.copy_(z)
        if self.b_last is None:
            zt = torch.bmm(self.w_last, self.h_last_t)
        else:
            zt = torch.baddbmm(self.b_last, self.w_last, self.h_last_t)
        if zt.dtype != torch.float32:
            zt = zt.float()
        _softmax_out(zt, 1, False, out=self.p)  # (K, C, B), float32

    def step(self, ix: torch.Tensor, negyw: torch.Tensor, rw: torch.Tensor, masks: Sequence[torch.Tensor]) -> None:
        """One Adam step of every model in the stack, each on its own minibatch.

        Parameters
        ----------
        ix : Tensor of shape (K * batch,)
            Pool rows of the K minibatches.
        negyw : Tensor of shape (K, n_classes, batch)
            Minus one-hot labels times row weights.
        rw : Tensor of shape (K, 1, batch)
            Row weights: 1 / rows in the batch, 0 on padding rows.
        masks : sequence of Tensor of shape (K, batch, width)
            Dropout multipliers (0 or 1/keep) per hidden layer; empty without dropout.
        """
        self.forward(ix, masks)
        torch.addcmul(negyw, self.p, rw, out=self.p)  # d(mean loss)/d(logits); zero on padding rows
        dzt = self.dzt
        if dzt is not self.p:
            dzt.copy_(self.p)
        torch.bmm(dzt, self.h_last, out=self.gw_last)
        da = self.da_last
        if self.gb_last is not None:
            torch.sum(dzt, dim=2, keepdim=True, out=self.gb_last)
            torch.bmm(dzt.transpose(1, 2), self.w_last, out=da)
        for h_out, dz_buf, h_in_t, w_t, gw, gb, da_in in self.backward:
            # da: gradient w.r.t. this layer's output after ReLU and dropout (the next layer's input)
            dz = _threshold_backward_out(da, h_out, 0.0, grad_input=da)
            if self.inv_keep is not None:
                dz.mul_(self.inv_keep)  # h > 0 only where the mask kept the unit
            if dz_buf is not None:
                dz = dz_buf.copy_(dz)
            torch.bmm(h_in_t, dz, out=gw)
            if gb is not None:
                torch.sum(dz, dim=1, keepdim=True, out=gb)
                torch.bmm(dz, w_t, out=da_in)
                da = da_in
        self.adam()

    def adam(self) -> None:
        """One Adam step of every model from the gradients in the stack's flat buffer."""
        st = self.stack
        st.step += 1
        tr = self.train
        if self.native is not None:
            # one pass: gradients in (bf16 or float32), float32 weights and state updated, bf16 copies out
            t = int(st.step)
            for part in self.native_parts:
                self.native.adam_step(part, step=t)
            return
        if self.lowp is not None:
            self.lowp[1].copy_(st.Gc)  # bf16 gradients to float32
        torch._fused_adam_(
            [st.P],
            [st.G],
            [st.m],
            [st.v],
            [],
            [st.step],
            lr=tr.lr,
            beta1=ADAM.beta1,
            beta2=ADAM.beta2,
            weight_decay=tr.weight_decay,
            eps=ADAM.eps,
            amsgrad=False,
            maximize=False,
        )
        if self.lowp is not None:
            st.Pc.copy_(self.lowp[0])  # float32 weights to their bf16 copies


_softmax_out = torch.ops.aten._softmax.out
_threshold_backward_out = torch.ops.aten.threshold_backward.grad_input

"""The stacked path's state: K models' parameters, gradients and Adam state in flat buffers, with views.

Each layer has a weight block ``(K, *w_shape)`` and (except layer 0) a bias block. Layer 0's bias is
a last row of its weight matrix, multiplied by a column of ones appended to the inputs. The last
layer is stored transposed, ``(out, in)``, so that logits come out as ``(K, classes, batch)``. The
blocks of bf16 layers come first, so that the bf16 copies of parameters and gradients cover one
prefix of the flat buffers. The flat buffers are padded to a multiple of 64 values so that the
fused Adam never takes its scalar tail path.

Every buffer lives on the stack's device (the CPU, or a GPU: ``TrainSpec.device``); initial weights
come from the CPU and exported weights go back to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec

__all__ = ["ALIGN", "LOWP_MIN_WEIGHTS", "Layer", "Stack", "layer_layout"]

#: Flat buffers are padded to a multiple of this many values.
ALIGN = 64
#: In bf16 mode the first layer, and later layers with at least this many weights, compute in bf16;
#: smaller ones (the output layer of 128 x 10) are faster in float32.
LOWP_MIN_WEIGHTS = 16384


@dataclass(frozen=True)
class Layer:
    """How layer ``i`` is stored and computed.

    Layer 0's bias is folded into its weight (a last input row; inputs carry a column of ones). The
    last layer is stored transposed, ``(out, in)``, so that logits come out as ``(K, classes, batch)``
    and the softmax runs along a non-contiguous axis (PyTorch's softmax over a short last axis is
    slow). ``lowp``: the layer's products run in bf16 (only large layers: small ones are faster in
    float32).
    """

    i: int
    fan_in: int
    fan_out: int
    last: bool
    lowp: bool

    @property
    def folded(self) -> bool:
        return self.i == 0

    @property
    def w_shape(self) -> tuple[int, int]:
        rows = self.fan_in + (1 if self.folded else 0)
        return (self.fan_out, rows) if self.last else (rows, self.fan_out)

    @property
    def b_shape(self) -> tuple[int, int] | None:
        if self.folded:
            return None
        return (self.fan_out, 1) if self.last else (1, self.fan_out)


def layer_layout(spec: ModelSpec, precision: str) -> list[Layer]:
    """The layers of ``spec`` as the stacked path stores and computes them in ``precision``."""
    sizes = spec.layer_sizes
    n = len(sizes) - 1
    return [
        Layer(
            i,
            sizes[i],
            sizes[i + 1],
            last=i == n - 1,
            lowp=precision == "bf16" and (i == 0 or sizes[i] * sizes[i + 1] >= LOWP_MIN_WEIGHTS),
        )
        for i in range(n)
    ]


class Stack:
    """Parameters, gradients and Adam state of K models in flat float32 buffers, with views.

    Each layer has a weight block ``(K, *w_shape)`` and (except layer 0) a bias block; blocks of
    bf16 layers come first, so that the bf16 copies of parameters and gradients cover one prefix.

    Attributes
    ----------
    P, G, m, v : Tensor of shape (n_flat,), float32
        Parameters, gradients, Adam moments of all K models (``n_flat`` a multiple of :data:`ALIGN`).
    Pc, Gc : Tensor of shape (n_lowp,), bfloat16
        The bf16 copies of the prefix of P and G that bf16 layers compute with (absent when none).
    step : Tensor of shape ()
        Adam's step counter, shared by the stack (every model in it has taken as many steps).
    device : torch.device
        Where every buffer lives (``step`` included).
    """

    def __init__(
        self,
        layers: list[Layer],
        weights: list[torch.Tensor],
        biases: list[torch.Tensor | None],
        state: tuple[list[torch.Tensor], list[torch.Tensor]] | None,
        step: torch.Tensor,
    ) -> None:
        self.layers, self.step = layers, step
        self.device = device = step.device
        self.K = K = weights[0].shape[0]
        order = sorted(range(len(layers)), key=lambda i: not layers[i].lowp)
        shapes: list[tuple[int, ...]] = []
        slots: dict[tuple[str, int], int] = {}
        for i in order:
            slots["w", i] = len(shapes)
            shapes.append(layers[i].w_shape)
            b_shape = layers[i].b_shape
            if b_shape is not None:
                slots["b", i] = len(shapes)
                shapes.append(b_shape)
        self.shapes, self.slots = shapes, slots
        numel = K * sum(math.prod(sh) for sh in shapes)
        total = -(-numel // ALIGN) * ALIGN
        self.P, self.G, self.m, self.v = (torch.zeros(total, device=device) for _ in range(4))
        self._p, self._g = self._views(self.P), self._views(self.G)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            self.weight(i).copy_(w)
            if b is not None:
                self.bias(i).copy_(b)
        if state is not None:
            for dst, src in zip(self._views(self.m) + self._views(self.v), state[0] + state[1], strict=True):
                dst.copy_(src)
        lowp_blocks = [j for i in range(len(layers)) if layers[i].lowp for j in self._slots_of(i)]
        self.n_lowp = K * sum(math.prod(shapes[j]) for j in lowp_blocks)
        if self.n_lowp:
            self.Pc = self.P[: self.n_lowp].to(torch.bfloat16)
            self.Gc = torch.zeros(self.n_lowp, dtype=torch.bfloat16, device=device)
            self._pc, self._gc = self._views(self.Pc), self._views(self.Gc)
        self._buffers: dict[str, torch.Tensor] = {}

    def _slots_of(self, i: int) -> list[int]:
        return [self.slots[k, i] for k in ("w", "b") if (k, i) in self.slots]

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out, off = [], 0
        for sh in self.shapes:
            n = self.K * math.prod(sh)
            if off + n > flat.numel():
                break
            out.append(flat[off : off + n].view(self.K, *sh))
            off += n
        return out

    # float32 master views
    def weight(self, i: int) -> torch.Tensor:
        return self._p[self.slots["w", i]]

    def bias(self, i: int) -> torch.Tensor:
        return self._p[self.slots["b", i]]

    # views used by the step: bf16 copies for bf16 layers
    def cweight(self, i: int) -> torch.Tensor:
        return (self._pc if self.layers[i].lowp else self._p)[self.slots["w", i]]

    def cbias(self, i: int) -> torch.Tensor:
        return (self._pc if self.layers[i].lowp else self._p)[self.slots["b", i]]

    def cgrad_w(self, i: int) -> torch.Tensor:
        return (self._gc if self.layers[i].lowp else self._g)[self.slots["w", i]]

    def cgrad_b(self, i: int) -> torch.Tensor:
        return (self._gc if self.layers[i].lowp else self._g)[self.slots["b", i]]

    def buffer(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | None = None
    ) -> torch.Tensor:
        """A scratch buffer shared by the stack's step plans (on the stack's device unless ``device`` says)."""
        device = self.device if device is None else device
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != dtype or buf.device != device:
            buf = self._buffers[name] = torch.empty(shape, dtype=dtype, device=device)
        return buf

    @classmethod
    def initial(
        cls,
        spec: ModelSpec,
        layers: list[Layer],
        inits: list[tuple[list[torch.Tensor], list[torch.Tensor]]],
        device: torch.device | None = None,
    ) -> Stack:
        """The stack of K models' initial weights (``inits``: each model's weights and biases, on the CPU)."""
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor | None] = []
        for lay in layers:
            w = torch.stack([ws[lay.i] for ws, _ in inits])  # (K, in, out)
            b = torch.stack([bs[lay.i] for _, bs in inits])  # (K, out)
            if lay.folded:
                w = torch.cat([w, b.unsqueeze(1)], dim=1)
            weights.append(w.transpose(1, 2) if lay.last else w)
            biases.append(None if lay.folded else (b.unsqueeze(2) if lay.last else b.unsqueeze(1)))
        return cls(layers, weights, biases, None, torch.zeros((), device=device or torch.device("cpu")))

    def select(self, keep: list[int]) -> Stack:
        """A stack of the models at positions ``keep``, with their Adam state."""
        idx = torch.tensor(keep, dtype=torch.int64, device=self.device)
        n = len(self.layers)
        weights = [self.weight(i).index_select(0, idx) for i in range(n)]
        biases = [None if self.layers[i].folded else self.bias(i).index_select(0, idx) for i in range(n)]
        state = (
            [t.index_select(0, idx) for t in self._views(self.m)],
            [t.index_select(0, idx) for t in self._views(self.v)],
        )
        return Stack(self.layers, weights, biases, state, self.step)

    def finite(self) -> torch.Tensor:
        """Bool tensor of shape (K,): which models' parameters are all finite."""
        ok = torch.ones(self.K, dtype=torch.bool, device=self.device)
        for p in self._p:
            # a sum is non-finite if any term is (or if it overflows: only weights of ~1e33, diverged
            # anyway); one pass instead of isfinite's several
            ok &= p.flatten(1).sum(dim=1).isfinite()
        return ok

    def export(self, spec: ModelSpec, k: int) -> MLPParams:
        """Model ``k``'s weights, on the CPU."""
        weights, biases = [], []
        for lay in self.layers:
            w = self.weight(lay.i)[k]
            w = w.T if lay.last else w  # (in', out)
            if lay.folded:
                weights.append(w[:-1].contiguous().cpu().numpy().copy())
                biases.append(w[-1].contiguous().cpu().numpy().copy())
            else:
                weights.append(w.contiguous().cpu().numpy().copy())
                biases.append(self.bias(lay.i)[k].reshape(-1).cpu().numpy().copy())
        return MLPParams(spec=spec, weights=tuple(weights), biases=tuple(biases))

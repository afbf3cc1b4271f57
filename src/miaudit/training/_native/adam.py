"""The contract of ``adam.c``: the fused Adam step over flat buffers, and the Adam constants.

The arithmetic is ``adam_math.h``'s, that of ``torch._fused_adam_`` (L2 weight decay added to the
gradient, as ``torch.optim.Adam(weight_decay=...)``). The stacked path calls
``miaudit_adam_step`` once per training step and parameter part; the bias corrections ``bc1`` and
``bc2_sqrt`` change every step, everything else is bound once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from miaudit.training._native.contract import Kernel, Library, buf, f32, i64

__all__ = ["ABI", "ADAM", "ADAM_STEP", "LIBRARY", "TO_BF16", "AdamConstants"]

#: Reported by ``miaudit_native_abi()`` in adam.c; change both together with any prototype.
ABI = 1


@dataclass(frozen=True)
class AdamConstants:
    """Adam's constants for every path of the engine: ``torch.optim.Adam``'s defaults."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


ADAM = AdamConstants()

ADAM_STEP = Kernel(
    "miaudit_adam_step",
    (
        i64("n", "values in each buffer"),
        buf("p", torch.float32, ("n",), "parameters, updated in place", writes=True),
        buf("m", torch.float32, ("n",), "first moments, updated in place", writes=True),
        buf("v", torch.float32, ("n",), "second moments, updated in place", writes=True),
        buf("g", torch.float32, ("n",), "float32 gradient (NULL when gc is given)", optional=True),
        buf("gc", torch.bfloat16, ("n",), "bfloat16 gradient (NULL when g is given)", optional=True),
        buf("pc", torch.bfloat16, ("n",), "the new parameters in bfloat16, or NULL", optional=True, writes=True),
        f32("lr", "learning rate"),
        f32("beta1", "first-moment decay"),
        f32("beta2", "second-moment decay"),
        f32("bc1", "1 - beta1**step"),
        f32("bc2_sqrt", "sqrt(1 - beta2**step)"),
        f32("eps", "added to the denominator"),
        f32("weight_decay", "L2 coefficient added to the gradient"),
    ),
    one_of=(("g", "gc"),),
    per_call=("bc1", "bc2_sqrt"),
    source="adam.c",
)

TO_BF16 = Kernel(
    "miaudit_to_bf16",
    (
        i64("n", "values"),
        buf("src", torch.float32, ("n",), "float32 values"),
        buf("dst", torch.bfloat16, ("n",), "their bfloat16 rounding (nearest even)", writes=True),
    ),
    source="adam.c",
)

LIBRARY = Library(name="adam", abi_symbol="miaudit_native_abi", abi=ABI, kernels=(ADAM_STEP, TO_BF16))

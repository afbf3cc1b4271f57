"""The contract of ``gauss.c``: DP-SGD's Gaussian noise, a pure function of (key, step, index).

The algorithm is stated in :mod:`miaudit.training.noise` (which also computes it in numpy where the
library does not build); the C file computes the same float32 values bit for bit.
"""

from __future__ import annotations

import torch

from miaudit.training._native.contract import Kernel, Library, buf, f32, i64

__all__ = ["ABI", "GAUSS_FILL", "LIBRARY", "PHILOX"]

#: Reported by ``miaudit_gauss_abi()`` in gauss.c; change both together with any prototype.
ABI = 1

GAUSS_FILL = Kernel(
    "miaudit_gauss_fill",
    (
        i64("n", "values to write"),
        buf("out", torch.float32, ("n",), "receives scale times values 0..n-1 of the step", writes=True),
        i64("key0", "low 32 bits of the stream's key"),
        i64("key1", "high 32 bits of the stream's key"),
        i64("step", "the step (>= 0): the counter's upper words"),
        f32("scale", "standard deviation of the values written"),
    ),
    per_call=("step",),
    source="gauss.c",
)

PHILOX = Kernel(
    "miaudit_philox4x32_10",
    (
        i64("c0", "counter word 0"),
        i64("c1", "counter word 1"),
        i64("c2", "counter word 2"),
        i64("c3", "counter word 3"),
        i64("key0", "key word 0"),
        i64("key1", "key word 1"),
        buf("out", torch.int64, ("4",), "the four output words", writes=True),
    ),
    source="gauss.c",
)

LIBRARY = Library(name="gauss", abi_symbol="miaudit_gauss_abi", abi=ABI, kernels=(GAUSS_FILL, PHILOX))

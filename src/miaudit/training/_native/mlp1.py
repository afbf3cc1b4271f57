"""The contract of ``mlp1.c``: whole training steps of a one-hidden-layer network on AMX or AVX512-BF16.

Sizes: ``D`` input width padded to a multiple of 32 (the pool's ones column, the first layer's
bias input, included), ``H`` hidden width and ``B`` batch (multiples of 32), ``C`` classes, ``L``
steps in one call, ``n_pool`` records in the pool. The layouts are those ``mlp1.c`` describes: the
first layer's float32 weights and Adam state in contiguous 32 x 32 blocks, its bf16 copy in the
tiles' pair layout, the output layer as ``W2[c][n]`` rows followed by its biases. The scratch
buffers are the caller's, one set per model being trained.
"""

from __future__ import annotations

import torch

from miaudit.training._native.contract import Kernel, Library, buf, f32, i64

__all__ = ["ABI", "COPY_WEIGHTS", "INIT", "KIND", "KINDS", "LIBRARY", "SCRATCH", "STATE", "TILE", "TRAIN"]

#: Reported by ``miaudit_mlp1_abi()`` in mlp1.c; change both together with any prototype or layout.
ABI = 2
#: What ``miaudit_mlp1_kind()`` reports: the instructions the block products of the build run on.
KINDS = {1: "AMX-BF16", 2: "AVX512-BF16"}
#: AMX tile width in values: D, H and B are multiples of it; first-layer blocks are TILE x TILE.
TILE = 32

_BLOCKS = ("D // 32", "H // 32", "32", "32")
_PAIRS = ("D // 2", "H", "2")
_OUT = ("C * H + C",)

#: The model's training state, in the order the train kernel takes it.
STATE = ("P1", "m1", "v1", "W1c", "P2", "m2", "v2")
#: Per-model scratch the train kernel works in.
SCRATCH = ("x", "xT", "z", "dl", "dzv", "g2", "g1")

INIT = Kernel("miaudit_mlp1_init", (), returns="int", source="mlp1.c")
KIND = Kernel("miaudit_mlp1_kind", (), returns="int", source="mlp1.c")

COPY_WEIGHTS = Kernel(
    "miaudit_mlp1_copy_weights",
    (
        i64("D", "input width (padded)"),
        i64("H", "hidden width"),
        buf("P1", torch.float32, ("D", "H"), "first-layer weights, plain row-major (not blocks)"),
        buf("W1c", torch.bfloat16, _PAIRS, "their bf16 copy in the pair layout", writes=True),
    ),
    multiple_of=(("D", 2),),
    source="mlp1.c",
)

TRAIN = Kernel(
    "miaudit_mlp1_train",
    (
        i64("D", "input width (padded to a multiple of 32, the ones column included)"),
        i64("H", "hidden width"),
        i64("C", "classes"),
        i64("B", "batch rows"),
        i64("L", "steps in this call (at most the rows of idx)"),
        buf("pool", torch.bfloat16, ("n_pool", "D"), "records, a column of ones, zero padding"),
        buf("idx", torch.int64, ("L", "B"), "pool rows of each step's batch"),
        buf("rw", torch.float32, ("L", "B"), "row weights: 1 / rows in the batch, 0 on padding"),
        buf("labels", torch.int64, ("L", "B"), "labels of the batch rows"),
        buf("P1", torch.float32, _BLOCKS, "first-layer weights in 32 x 32 blocks", writes=True),
        buf("m1", torch.float32, _BLOCKS, "their first moments", writes=True),
        buf("v1", torch.float32, _BLOCKS, "their second moments", writes=True),
        buf("W1c", torch.bfloat16, _PAIRS, "bf16 copy of the first layer, pair layout", writes=True),
        buf("P2", torch.float32, _OUT, "output-layer weights W2[c][n], then its biases", writes=True),
        buf("m2", torch.float32, _OUT, "their first moments", writes=True),
        buf("v2", torch.float32, _OUT, "their second moments", writes=True),
        i64("t0", "Adam steps taken before this call"),
        f32("lr", "learning rate"),
        f32("beta1", "first-moment decay"),
        f32("beta2", "second-moment decay"),
        f32("eps", "added to the denominator"),
        f32("weight_decay", "L2 coefficient added to the gradient"),
        buf("x", torch.bfloat16, ("B", "D"), "scratch: the gathered batch", writes=True),
        buf("xT", torch.bfloat16, ("D", "B"), "scratch: its transpose", writes=True),
        buf("z", torch.float32, ("B", "H"), "scratch: hidden activations", writes=True),
        buf("dl", torch.float32, ("B", "C"), "scratch: logits, then the loss gradient", writes=True),
        buf("dzv", torch.bfloat16, ("B // 2", "H", "2"), "scratch: hidden gradient, pair layout", writes=True),
        buf("g2", torch.float32, ("C * H + C + 17 * H",), "scratch: W2's gradient, da, W2^T", writes=True),
        buf("g1", torch.float32, _BLOCKS, "scratch: W1's gradient in P1's block layout", writes=True),
    ),
    multiple_of=(("D", TILE), ("H", TILE), ("B", TILE)),
    per_call=("L", "t0"),
    source="mlp1.c",
)

LIBRARY = Library(name="mlp1", abi_symbol="miaudit_mlp1_abi", abi=ABI, kernels=(INIT, KIND, COPY_WEIGHTS, TRAIN))

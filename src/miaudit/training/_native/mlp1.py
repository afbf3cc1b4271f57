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

__all__ = [
    "ABI",
    "COPY_WEIGHTS",
    "DP",
    "DP_SCRATCH",
    "DP_STEP_ROWS",
    "INIT",
    "KIND",
    "KINDS",
    "LIBRARY",
    "SCRATCH",
    "STATE",
    "TILE",
    "TRAIN",
    "TRAIN_DP",
]

#: Reported by ``miaudit_mlp1_abi()`` in mlp1.c; change both together with any prototype or layout.
ABI = 3
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
#: ... and the DP-SGD kernel, with the noise of a step.
DP_SCRATCH = (*SCRATCH, "noise")
#: A DP-SGD step's rows: its Poisson batch, padded with zero rows to a multiple of this.
DP_STEP_ROWS = 8

#: The model's state, as both train kernels take it.
_STATE_ARGS = (
    buf("P1", torch.float32, _BLOCKS, "first-layer weights in 32 x 32 blocks", writes=True),
    buf("m1", torch.float32, _BLOCKS, "their first moments", writes=True),
    buf("v1", torch.float32, _BLOCKS, "their second moments", writes=True),
    buf("W1c", torch.bfloat16, _PAIRS, "bf16 copy of the first layer, pair layout", writes=True),
    buf("P2", torch.float32, _OUT, "output-layer weights W2[c][n], then its biases", writes=True),
    buf("m2", torch.float32, _OUT, "their first moments", writes=True),
    buf("v2", torch.float32, _OUT, "their second moments", writes=True),
)
#: Adam's scalars.
_ADAM_ARGS = (
    f32("lr", "learning rate"),
    f32("beta1", "first-moment decay"),
    f32("beta2", "second-moment decay"),
    f32("eps", "added to the denominator"),
    f32("weight_decay", "L2 coefficient added to the gradient"),
)
#: Scratch of a step after the batch's (x, xT).
_STEP_SCRATCH_ARGS = (
    buf("z", torch.float32, ("B", "H"), "scratch: hidden activations", writes=True),
    buf("dl", torch.float32, ("B", "C"), "scratch: logits, then the loss gradient", writes=True),
    buf("dzv", torch.bfloat16, ("B // 2", "H", "2"), "scratch: hidden gradient, pair layout", writes=True),
    buf("g2", torch.float32, ("C * H + C + 17 * H",), "scratch: W2's gradient, da, W2^T", writes=True),
    buf("g1", torch.float32, _BLOCKS, "scratch: W1's gradient in P1's block layout", writes=True),
)

INIT = Kernel("miaudit_mlp1_init", (), returns="int", source="mlp1.c")
KIND = Kernel("miaudit_mlp1_kind", (), returns="int", source="mlp1.c")
DP = Kernel("miaudit_mlp1_dp", (), returns="int", source="mlp1.c")

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
        *_STATE_ARGS,
        i64("t0", "Adam steps taken before this call"),
        *_ADAM_ARGS,
        buf("x", torch.bfloat16, ("B", "D"), "scratch: the gathered batch", writes=True),
        buf("xT", torch.bfloat16, ("D", "B"), "scratch: its transpose", writes=True),
        *_STEP_SCRATCH_ARGS,
    ),
    multiple_of=(("D", TILE), ("H", TILE), ("B", TILE)),
    per_call=("L", "t0"),
    source="mlp1.c",
)

TRAIN_DP = Kernel(
    "miaudit_mlp1_train_dp",
    (
        i64("D", "input width (padded to a multiple of 32, the ones column included)"),
        i64("F", "features (the ones column is column F of the pool)"),
        i64("H", "hidden width"),
        i64("C", "classes"),
        i64("B", "batch rows each step can hold (a multiple of 8, at least any step's count rounded up to 8)"),
        i64("L", "steps in this call (at most the rows of idx)"),
        buf("pool", torch.bfloat16, ("n_pool", "D"), "records, a column of ones, zero padding"),
        buf("pool_sq", torch.float32, ("n_pool",), "squared norms of the pool's (bf16) rows, ones included"),
        buf("idx", torch.int64, ("L", "B"), "pool rows of each step's Poisson batch, first counts[l] used"),
        buf("counts", torch.int64, ("L",), "each step's batch size (may be 0)"),
        buf("labels", torch.int64, ("L", "B"), "labels of the batch rows"),
        *_STATE_ARGS,
        i64("t0", "steps taken before this call (the first step's noise step; Adam's is t0 + 1)"),
        *_ADAM_ARGS,
        f32("max_grad_norm", "clipping bound C"),
        f32("inv_batch", "1 / the expected batch size"),
        f32("noise_scale", "sigma C / the expected batch size (0: no noise)"),
        i64("key0", "low 32 bits of the model's noise key"),
        i64("key1", "high 32 bits of the model's noise key"),
        buf("x", torch.bfloat16, ("B", "D"), "scratch: the gathered batch", writes=True),
        buf("xT", torch.bfloat16, ("B // 2", "D", "2"), "scratch: the batch in pairs of rows", writes=True),
        *_STEP_SCRATCH_ARGS,
        buf("noise", torch.float32, ("(F + 1) * H + H * C + C",), "scratch: a step's noise", writes=True),
    ),
    multiple_of=(("D", TILE), ("H", TILE), ("B", DP_STEP_ROWS)),
    per_call=("L", "t0"),
    returns="int",
    source="mlp1.c",
)

LIBRARY = Library(
    name="mlp1", abi_symbol="miaudit_mlp1_abi", abi=ABI, kernels=(INIT, KIND, DP, COPY_WEIGHTS, TRAIN, TRAIN_DP)
)

"""DP-SGD's Gaussian noise: counter-based, the same bits on every CPU, path and device.

A model's noise is a stream keyed by its seed (``derive_seed(seed, "dp-noise")``, 64 bits). Value
``i`` of step ``t`` is a pure function of (key, t, i), so the plain loop, the stacked engine (any
chunk, any stack order) and a GPU run draw exactly the same numbers, and no generator state has to
be carried between steps:

1. **Counters.** Block ``j = i // 4`` is Philox4x32-10 (Salmon et al., "Parallel random numbers: as
   easy as 1, 2, 3", SC 2011; the generator of JAX, cuRAND and TensorFlow) of the counter
   ``(j, 0, t mod 2^32, t div 2^32)`` under the key ``(key mod 2^32, key div 2^32)``: four 32-bit words
   ``x0..x3``. Tested against Random123's published known answers.
2. **Box-Muller.** Each pair ``(x0, x1)`` and ``(x2, x3)`` gives two standard normals:
   ``u = ((x0 >> 8) + 1) / 2^24`` in (0, 1], ``R = sqrt(-2 ln u)``, ``a = 2 pi (x1 >> 8) / 2^24``;
   values ``4j, 4j + 1`` are ``R cos a, R sin a`` (``4j + 2, 4j + 3`` from ``x2, x3``). 24-bit uniforms,
   as ``torch.randn`` uses for float32: the largest magnitude is ``sqrt(48 ln 2) = 5.77``.
3. **float32 arithmetic only.** ``ln``, ``sin`` and ``cos`` are Cephes's float polynomials (the angle
   reduced exactly by its quadrant); every operation is a correctly rounded float32 addition,
   multiplication or square root in a fixed order, without fused multiply-adds. The compiled kernel
   (``_native/gauss.c``, vectorised, about 1.1 ns per value on one AVX-512 core against 3.4 ns for
   ``torch.Tensor.normal_``) and the numpy code here therefore give the same bits (tested), on AVX-512
   or AVX2 builds alike; the numpy code runs where no C compiler is found or ``MIAUDIT_NATIVE=0``.

Opacus draws its noise from ``torch.normal`` (or, in its ``secure_mode``, a cryptographically secure
generator with a float-safe sampling). Neither that generator nor this one defends against
floating-point side channels of the sampled values (Mironov, CCS 2012; Jin et al., S&P 2022); the
guarantee here is the accounting's under the usual idealisation of real-valued Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from miaudit.errors import TrainingError
from miaudit.seeding import derive_seed

__all__ = ["STREAM_VERSION", "FillCall", "NoiseStream", "gaussian_numpy", "noise_stream", "philox4x32_10"]

#: Names the algorithm in cache keys of DP-SGD models (a model trained under another noise stream differs).
STREAM_VERSION = "philox4x32-10 box-muller float32 v1"

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_LO = np.uint64(0xFFFFFFFF)
_F = np.float32
_TWO_PI_2_24 = _F(2 * math.pi / 2**24)  # 0x1.921fb6p-22f


def philox4x32_10(
    c: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], key: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 of counters ``c`` (four arrays of 32-bit words, any dtype) under ``key``: four uint64 arrays.

    >>> [hex(int(w[0])) for w in philox4x32_10((np.zeros(1),) * 4, (0, 0))]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    c0, c1, c2, c3 = (np.asarray(w).astype(np.uint64) & _LO for w in c)
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = c0 * _M0, c2 * _M1
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0),
            p1 & _LO,
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1),
            p0 & _LO,
        )
        k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def _minus_two_log(k: np.ndarray) -> np.ndarray:
    """-2 ln(k / 2^24) for uint64 k in [1, 2^24], in gauss.c's float32 operations."""
    u = k.astype(np.float32) * _F(2.0**-24)
    b = u.view(np.uint32)
    e = ((b >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - np.int32(126)
    m = ((b & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(np.float32)
    small = m < _F(math.sqrt(0.5))  # 0x1.6a09e6p-1f
    e = np.where(small, e - np.int32(1), e)
    x = np.where(small, (m + m) - _F(1.0), m - _F(1.0))
    z = x * x
    y = np.full_like(x, _F(7.0376836292e-2))
    for coef in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):  # fmt: skip
        y = y * x + _F(coef)
    y = (y * x) * z
    fe = e.astype(np.float32)
    y = y + (_F(-2.12194440e-4) * fe)
    y = y - (_F(0.5) * z)
    r = x + y
    r = r + (_F(0.693359375) * fe)
    return _F(-2.0) * r


def _cos_sin(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi k / 2^24 for uint64 k in [0, 2^24), in gauss.c's float32 operations."""
    q = (k + np.uint64(1 << 21)) >> np.uint64(22)
    theta = (k.astype(np.int64) - (q << np.uint64(22)).astype(np.int64)).astype(np.float32) * _TWO_PI_2_24
    z = theta * theta
    s = np.full_like(z, _F(-1.9515295891e-4))
    s = s * z + _F(8.3321608736e-3)
    s = s * z - _F(1.6666654611e-1)
    s = ((s * z) * theta) + theta
    c = np.full_like(z, _F(2.443315711809948e-5))
    c = c * z - _F(1.388731625493765e-3)
    c = c * z + _F(4.166664568298827e-2)
    c = (((c * z) * z) - (_F(0.5) * z)) + _F(1.0)
    q = q & np.uint64(3)
    cq = np.select([q == 0, q == 1, q == 2], [c, -s, -c], s)
    sq = np.select([q == 0, q == 1, q == 2], [s, c, -s], -c)
    return cq, sq


def gaussian_numpy(n: int, key: int, step: int, scale: float = 1.0) -> np.ndarray:
    """Values 0..n-1 of step ``step`` of the stream ``key``, times ``scale``: float32 array (gauss.c's bits)."""
    j = np.arange((n + 3) // 4, dtype=np.uint64)
    x0, x1, x2, x3 = philox4x32_10(
        (j, np.zeros_like(j), np.full_like(j, step & 0xFFFFFFFF), np.full_like(j, step >> 32)),
        (key & 0xFFFFFFFF, key >> 32),
    )
    out = np.empty((len(j), 4), dtype=np.float32)
    for h, (a, b) in enumerate(((x0, x1), (x2, x3))):
        r = np.sqrt(_minus_two_log((a >> np.uint64(8)) + np.uint64(1)))
        c, s = _cos_sin(b >> np.uint64(8))
        out[:, 2 * h] = (r * c) * _F(scale)
        out[:, 2 * h + 1] = (r * s) * _F(scale)
    return out.reshape(-1)[:n]


@dataclass
class NoiseStream:
    """One model's DP-SGD noise: :meth:`fill` writes a step's values into a float32 buffer.

    Attributes
    ----------
    key : int
        64-bit key (``derive_seed(seed, "dp-noise")``).
    """

    key: int

    def fill(self, out: torch.Tensor, step: int, scale: float) -> None:
        """``out`` (float32, 1-D, contiguous, on the CPU) = ``scale`` times values ``0..len(out)-1`` of ``step``."""
        self.bind(out, scale)(step)

    def bind(self, out: torch.Tensor, scale: float) -> FillCall:
        """A call ``fill(step)`` writing ``scale`` times a step's values into ``out``, the buffer checked once.

        Raises
        ------
        TrainingError
            ``out`` is not a contiguous 1-D float32 CPU tensor.
        """
        if not (
            isinstance(out, torch.Tensor)
            and out.dtype == torch.float32
            and out.dim() == 1
            and out.is_contiguous()
            and out.device.type == "cpu"
        ):
            got = f"{out.dtype} {tuple(out.shape)} on {out.device}" if isinstance(out, torch.Tensor) else repr(out)
            raise TrainingError(f"the noise buffer must be a contiguous 1-D float32 CPU tensor; got {got}")
        return FillCall(self, out, float(scale), _bound_fill(out, self.key, float(scale)))


@dataclass
class FillCall:
    """``call(step)`` fills the bound buffer with a step's noise (see :meth:`NoiseStream.bind`)."""

    stream: NoiseStream
    out: torch.Tensor
    scale: float
    native: Any

    def __call__(self, step: int) -> None:
        if not (isinstance(step, int) and step >= 0):
            raise TrainingError(f"the noise step must be an int >= 0; got {step!r}")
        if self.native is None:
            self.out.copy_(torch.from_numpy(gaussian_numpy(self.out.numel(), self.stream.key, step, self.scale)))
        else:
            self.native(step=step)


def _bound_fill(out: torch.Tensor, key: int, scale: float) -> Any:
    from miaudit.training.native import load_gauss

    kernels = load_gauss()
    if kernels is None or out.numel() == 0 or _is_fake(out):
        return None  # numpy then (a fake tensor, of a test's fake device, has no memory for C to write)
    return kernels.bind_fill(out, key=key, scale=scale)


def _is_fake(t: torch.Tensor) -> bool:
    try:
        from torch._subclasses.fake_tensor import FakeTensor
    except ImportError:  # pragma: no cover - every supported torch has it
        return False
    return isinstance(t, FakeTensor)


def noise_stream(seed: int) -> NoiseStream:
    """A model's noise stream, from its seed."""
    return NoiseStream(key=derive_seed(seed, "dp-noise"))

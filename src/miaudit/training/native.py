"""Native kernels of the batched engine, compiled from C on first use.

Three libraries:

* ``_native/adam.c`` (every CPU): the fused Adam step of the engine's stacked path
  (:mod:`miaudit.training.engine.stacked`). In bf16
  training it reads the bfloat16 gradients the matrix products wrote, updates the float32 master
  weights and Adam state, and writes the new bfloat16 weight copy in one pass over memory; with
  PyTorch alone the same step is three passes (gradients to float32, ``torch._fused_adam_``,
  weights to bfloat16), about twice the time.
* ``_native/gauss.c`` (every CPU): DP-SGD's Gaussian noise, Philox counters and Box-Muller in float32
  (:mod:`miaudit.training.noise` states the algorithm and computes the same bits in numpy where the
  library is not available: about 10x slower, same numbers).
* ``_native/mlp1.c`` (x86 CPUs with AMX-BF16 or AVX512-BF16): whole training steps of a network with
  one hidden layer in bf16, one model at a time, its weights and Adam state held in the core's cache
  (the file says why and how); its block products run on AMX tiles where the CPU has them, else on
  AVX512-BF16 dot products (AMD Zen 4 and later). The fixed rules use it on AMX; elsewhere the tuner
  times it against the stacked PyTorch path and keeps the faster (:mod:`miaudit.training.tuning`). Its
  DP-SGD steps (AVX512-BF16, in both builds) are the rules' choice for DP recipes they apply to; they draw
  the noise from ``_native/gauss_math.h``, the code ``gauss.c`` exports (so the same bits).

Each C file's contract (every parameter's name, dtype and shape expression, the ABI number, the
size rules, the Adam constants) is declared once beside it, in ``_native/adam.py`` and
``_native/mlp1.py``. Loading a library checks its ABI number and gives each function the ctypes
signature its contract declares; the wrappers here check every buffer against the contract once,
when they bind it (:class:`~miaudit.training._native.contract.BoundCall`), so a wrong shape, dtype or
layout raises :class:`~miaudit.errors.TrainingError` instead of corrupting memory.

How it is built
---------------
Each C file is compiled with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``;
``-O3 -march=native -ffp-contract=off``) into a shared library under the user cache
(``$MIAUDIT_CACHE_DIR/native`` or ``platformdirs.user_cache_dir("miaudit")/native``), named by a
hash of the source, the compiler, the flags and the CPU, and loaded with :mod:`ctypes` (calls
release the GIL, so worker threads run kernels in parallel). The build takes well under a second,
once per machine and source version (a new build removes the library of the earlier one). The
library is written to a temporary name and renamed (:func:`miaudit._io.atomic_path`), so concurrent
processes never load a half-written file.

Where there is no compiler, the build fails, or ``MIAUDIT_NATIVE=0`` is set, the engine uses the
PyTorch operations instead: same arithmetic (to float32 rounding), slower. ``MIAUDIT_NATIVE=adam``
keeps the Adam step and the noise only (the stacked PyTorch path for every network). :func:`native_status` says
which is in use and why.

AVX2-only CPUs, emulated
------------------------
``MIAUDIT_NATIVE_ISA=avx2`` (:func:`miaudit.training.hardware.native_isa`) builds the kernels as for a
CPU without AVX-512 or AMX: ``-march=native`` then :data:`AVX2_FLAGS` (``-mno-avx512f`` turns off every
AVX-512 extension with it), into separate libraries (``miaudit_adam-avx2_<hash>.so``) beside the native
ones; the AMX kernel is not used, and :func:`~miaudit.training.hardware.native_bf16` is false, so
``precision="auto"`` and the tuner behave as on an AVX2 CPU. PyTorch's own kernels are not affected:
limit them with ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` before torch starts
(``benchmarks/train_throughput.py --emulate-avx2`` sets all three).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import torch

from miaudit._io import atomic_path
from miaudit.errors import TrainingError
from miaudit.training._native import adam as adam_contract
from miaudit.training._native import gauss as gauss_contract
from miaudit.training._native import mlp1 as mlp1_contract
from miaudit.training._native.adam import ADAM
from miaudit.training._native.contract import BoundCall
from miaudit.training.hardware import ISA_ENV, cpu_flags, native_isa, usable_cpu_flags

__all__ = [
    "AVX2_FLAGS",
    "NATIVE_ENV",
    "AdamBuffers",
    "GaussKernels",
    "MLP1Kernels",
    "NativeKernels",
    "library_flags",
    "load_gauss",
    "load_mlp1",
    "load_native",
    "native_status",
]

logger = logging.getLogger(__name__)

#: ``0``: PyTorch operations instead of the compiled kernels; ``adam``: the Adam step only.
NATIVE_ENV = "MIAUDIT_NATIVE"
_SOURCES = Path(__file__).with_name("_native")
_FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
#: Added after ``-march=native`` under ``MIAUDIT_NATIVE_ISA=avx2``: no AVX-512 (``-mno-avx512f`` implies every
#: AVX-512 extension) and no AMX (``-mno-amx-tile`` implies AMX-BF16 and AMX-INT8).
AVX2_FLAGS = ("-mno-avx512f", "-mno-amx-tile")
_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], tuple[Any, str]] = {}


@dataclass(frozen=True)
class AdamBuffers:
    """One part of a flat parameter buffer, checked against ``miaudit_adam_step``'s contract once.

    Made by :meth:`NativeKernels.adam_buffers`; :meth:`NativeKernels.adam_step` runs steps on it.
    """

    call: BoundCall
    beta1: float
    beta2: float


@dataclass(frozen=True)
class NativeKernels:
    """The compiled Adam library (``_native/adam.c``) and its entry points."""

    path: Path
    lib: ctypes.CDLL

    def adam_buffers(
        self,
        p: torch.Tensor,
        m: torch.Tensor,
        v: torch.Tensor,
        *,
        grad: torch.Tensor,
        p_bf16: torch.Tensor | None = None,
        lr: float,
        weight_decay: float,
        beta1: float = ADAM.beta1,
        beta2: float = ADAM.beta2,
        eps: float = ADAM.eps,
    ) -> AdamBuffers:
        """Check the buffers of Adam steps against the contract, once.

        Parameters
        ----------
        p, m, v : Tensor of shape (n,), float32, contiguous
            Parameters and Adam's moments, updated in place by each step.
        grad : Tensor of shape (n,), float32 or bfloat16, contiguous
            Read by each step.
        p_bf16 : Tensor of shape (n,), bfloat16, optional
            Receives the new parameters in bfloat16 at each step.
        lr, weight_decay, beta1, beta2, eps : float
            Adam's settings (weight decay added to the gradient, as ``torch.optim.Adam``).

        Raises
        ------
        TrainingError
            A buffer differs from the contract (``_native/adam.py``) in shape, dtype, contiguity or
            overlaps another.
        """
        bf16 = isinstance(grad, torch.Tensor) and grad.dtype == torch.bfloat16
        values = {
            "n": p.numel() if isinstance(p, torch.Tensor) else 0,
            "p": p,
            "m": m,
            "v": v,
            "g": None if bf16 else grad,
            "gc": grad if bf16 else None,
            "pc": p_bf16,
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        call = adam_contract.ADAM_STEP.bind(self.lib.miaudit_adam_step, values)
        return AdamBuffers(call=call, beta1=beta1, beta2=beta2)

    def adam_step(self, buffers: AdamBuffers, *, step: int) -> None:
        """Adam step ``step`` (from 1) in place on checked buffers (no check here: it runs every step)."""
        buffers.call(bc1=1.0 - buffers.beta1**step, bc2_sqrt=(1.0 - buffers.beta2**step) ** 0.5)

    def to_bf16(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """``dst`` (bfloat16, shape (n,)) = ``src`` (float32, shape (n,)) rounded to nearest even."""
        n = src.numel() if isinstance(src, torch.Tensor) else 0
        adam_contract.TO_BF16.bind(self.lib.miaudit_to_bf16, {"n": n, "src": src, "dst": dst})()


@dataclass(frozen=True)
class GaussKernels:
    """DP-SGD's Gaussian noise (``_native/gauss.c``; the algorithm: :mod:`miaudit.training.noise`)."""

    path: Path
    lib: ctypes.CDLL

    def bind_fill(self, out: torch.Tensor, *, key: int, scale: float) -> BoundCall:
        """Check ``out`` (float32, shape (n,)) once; ``call(step=t)`` writes ``scale`` times step t's values."""
        n = out.numel() if isinstance(out, torch.Tensor) else 0
        values = {"n": n, "out": out, "key0": key & 0xFFFFFFFF, "key1": (key >> 32) & 0xFFFFFFFF, "scale": scale}
        return gauss_contract.GAUSS_FILL.bind(self.lib.miaudit_gauss_fill, values)

    def philox(self, counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
        """The four words of Philox4x32-10 of ``counter`` under ``key`` (for known-answer tests)."""
        out = torch.zeros(4, dtype=torch.int64)
        values = dict(zip(("c0", "c1", "c2", "c3", "key0", "key1"), (*counter, *key), strict=True))
        gauss_contract.PHILOX.bind(self.lib.miaudit_philox4x32_10, {**values, "out": out})()
        return tuple(int(w) for w in out)


@dataclass(frozen=True)
class MLP1Kernels:
    """Whole training steps of one network with one hidden layer (``_native/mlp1.c``).

    The arrays' shapes and dtypes are declared in ``_native/mlp1.py`` and checked when bound.

    Attributes
    ----------
    kind : {"AMX-BF16", "AVX512-BF16"}
        What the build's block products run on.
    dp : bool
        Whether the build has the DP-SGD steps (:meth:`bind_train_dp`; they need AVX512-BF16).
    """

    path: Path
    lib: ctypes.CDLL
    kind: str = "AMX-BF16"
    dp: bool = False

    def copy_weights(self, P1: torch.Tensor, W1c: torch.Tensor) -> None:
        """The bf16 pair-layout copy ``W1c`` (D/2, H, 2) of the float32 first-layer weights ``P1`` (D, H)."""
        if not (isinstance(P1, torch.Tensor) and P1.dim() == 2):
            got = tuple(P1.shape) if isinstance(P1, torch.Tensor) else type(P1).__name__
            raise TrainingError(f"copy_weights: P1 must be the (D, H) first-layer weights; got {got}")
        D, H = P1.shape
        values = {"D": D, "H": H, "P1": P1, "W1c": W1c}
        mlp1_contract.COPY_WEIGHTS.bind(self.lib.miaudit_mlp1_copy_weights, values)()

    def bind_train(
        self,
        buffers: Mapping[str, torch.Tensor],
        *,
        D: int,
        H: int,
        C: int,
        B: int,
        lr: float,
        weight_decay: float,
    ) -> BoundCall:
        """Check a model's buffers against the train kernel's contract once; call the result per block of steps.

        Parameters
        ----------
        buffers : mapping of str to Tensor
            ``pool``, ``idx``, ``rw``, ``labels``, the state (:data:`~miaudit.training._native.mlp1.STATE`) and
            the scratch (:data:`~miaudit.training._native.mlp1.SCRATCH`), shaped as ``_native/mlp1.py`` declares.
        D, H, C, B : int
            Padded input width, hidden width, classes, batch size.
        lr, weight_decay : float

        Returns
        -------
        BoundCall
            ``call(L=n_steps, t0=steps_before)`` runs Adam steps ``t0 + 1 .. t0 + L`` on the first ``L``
            rows of ``idx``, ``rw`` and ``labels``.

        Raises
        ------
        TrainingError
            A buffer differs from the contract.
        """
        values: dict[str, object] = {"D": D, "H": H, "C": C, "B": B, "lr": lr, "weight_decay": weight_decay}
        values |= {"beta1": ADAM.beta1, "beta2": ADAM.beta2, "eps": ADAM.eps}
        values |= buffers
        return mlp1_contract.TRAIN.bind(self.lib.miaudit_mlp1_train, values)

    def bind_train_dp(
        self,
        buffers: Mapping[str, torch.Tensor],
        *,
        D: int,
        F: int,
        H: int,
        C: int,
        B: int,
        lr: float,
        weight_decay: float,
        max_grad_norm: float,
        inv_batch: float,
        noise_scale: float,
        key: int,
    ) -> BoundCall:
        """As :meth:`bind_train`, for DP-SGD steps (``miaudit_mlp1_train_dp`` in ``_native/mlp1.c``).

        Parameters
        ----------
        buffers : mapping of str to Tensor
            ``pool``, ``pool_sq``, ``idx``, ``counts``, ``labels``, the state and the scratch
            (:data:`~miaudit.training._native.mlp1.DP_SCRATCH`), shaped as ``_native/mlp1.py`` declares.
        D, F, H, C, B : int
            Padded input width, features, hidden width, classes, rows a step can hold.
        lr, weight_decay : float
        max_grad_norm, inv_batch, noise_scale : float
            The clipping bound, 1 / the expected batch size, the noise's standard deviation over it.
        key : int
            The model's 64-bit noise key (:class:`~miaudit.training.noise.NoiseStream`).

        Returns
        -------
        BoundCall
            ``call(L=n_steps, t0=steps_before)``: 0, or -1 where the build has no DP-SGD steps.

        Raises
        ------
        TrainingError
            A buffer differs from the contract, or the build has no DP-SGD steps.
        """
        if not self.dp:
            raise TrainingError(f"{self.path.name} has no DP-SGD steps (built without AVX512-BF16)")
        values: dict[str, object] = {"D": D, "F": F, "H": H, "C": C, "B": B, "lr": lr, "weight_decay": weight_decay}
        values |= {"beta1": ADAM.beta1, "beta2": ADAM.beta2, "eps": ADAM.eps}
        values |= {"max_grad_norm": max_grad_norm, "inv_batch": inv_batch, "noise_scale": noise_scale}
        values |= {"key0": key & 0xFFFFFFFF, "key1": key >> 32}
        values |= buffers
        return mlp1_contract.TRAIN_DP.bind(self.lib.miaudit_mlp1_train_dp, values)


def native_status() -> str:
    """One line: which compiled kernels are in use, and why not where not (and the emulated instruction set)."""
    parts = []
    for name in ("adam", "gauss", "mlp1"):
        kernels, why = _load(name)
        if kernels is None:
            parts.append(f"{name} not used ({why})")
        else:
            parts.append(f"{name} compiled" + (f" ({kernels.kind})" if isinstance(kernels, MLP1Kernels) else ""))
    if native_isa() != "native":
        parts.append(f"built for {native_isa()} ({ISA_ENV}={native_isa()}: {' '.join(AVX2_FLAGS)})")
    return "; ".join(parts)


def library_flags() -> tuple[tuple[str, ...], ...]:
    """The compiler flags tried in order (the first that builds is used): for this CPU, then generic x86-64.

    Under ``MIAUDIT_NATIVE_ISA=avx2`` each ends with :data:`AVX2_FLAGS`.
    """
    extra = AVX2_FLAGS if native_isa() == "avx2" else ()
    return tuple((*_FLAGS, *arch, *extra) for arch in (("-march=native",), ()))


def load_native() -> NativeKernels | None:
    """The compiled Adam step, building it on first use; None where it cannot be had (see module)."""
    return _load("adam")[0]


def load_gauss() -> GaussKernels | None:
    """The compiled DP-SGD noise, building it on first use; None where it cannot be had (numpy computes it then)."""
    return _load("gauss")[0]


def load_mlp1() -> MLP1Kernels | None:
    """The one-hidden-layer training steps, where the CPU has AMX-BF16 or AVX512-BF16 and they build; else None."""
    return _load("mlp1")[0]


def _load(name: str) -> tuple[Any, str]:
    setting = os.environ.get(NATIVE_ENV, "1").strip().lower()
    if setting in ("0", "off", "false", "no"):
        return None, f"{NATIVE_ENV}={setting}"
    if setting == "adam" and name == "mlp1":
        return None, f"{NATIVE_ENV}=adam"
    isa = native_isa()
    key = (name, os.environ.get("CC", ""), isa)
    with _lock:
        if key not in _loaded:
            if name == "mlp1" and not _has_bf16_units():
                _loaded[key] = (
                    (None, f"{ISA_ENV}={isa}: no AMX or AVX-512")
                    if isa != "native"
                    else (None, "the CPU has neither AMX-BF16 nor AVX512-BF16")
                )
            else:
                _loaded[key] = _build_and_load(name)
            kernels, why = _loaded[key]
            if kernels is not None:
                logger.debug("native %s kernels loaded from %s", name, kernels.path)
            elif name != "mlp1" or _has_bf16_units():
                logger.warning(
                    "native %s kernel unavailable (%s); training uses %s operations",
                    name,
                    why,
                    "numpy" if name == "gauss" else "PyTorch",
                )
        return _loaded[key]


def _has_amx() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and {"amx_bf16", "amx_tile"} <= usable_cpu_flags()


def _has_bf16_units() -> bool:
    """AMX-BF16, or AVX512-BF16 (with AVX512-BW): what mlp1.c builds for."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return x86 and (_has_amx() or {"avx512_bf16", "avx512bw", "avx512f"} <= usable_cpu_flags())


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cache_dir() -> Path:
    root = os.environ.get("MIAUDIT_CACHE_DIR") or platformdirs.user_cache_dir("miaudit")
    return Path(root).expanduser() / "native"


def _build_and_load(name: str) -> tuple[Any, str]:
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found (install gcc or set CC)"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the C compiler {cc!r} does not run: {exc}"
    src = _SOURCES / f"{name}.c"
    # the source and the headers it may include: a change to either makes a new build
    source = b"".join(path.read_bytes() for path in [src, *sorted(_SOURCES.glob("*.h"))])
    isa = native_isa()
    stem = f"miaudit_{name}" if isa == "native" else f"miaudit_{name}-{isa}"  # emulated builds apart from native
    for flags in library_flags():
        digest = hashlib.sha256(
            b"\0".join(
                [
                    source,
                    version.encode(),
                    " ".join(flags).encode(),
                    platform.machine().encode(),
                    " ".join(sorted(cpu_flags())).encode(),
                ]
            )
        ).hexdigest()[:20]
        why = ""
        user = os.getuid() if hasattr(os, "getuid") else os.getpid()
        for directory in (_cache_dir(), Path(tempfile.gettempdir()) / f"miaudit-native-{user}"):
            path = directory / f"{stem}_{digest}.so"
            # a cached library that does not load (damaged, truncated) is built again in its place, once
            for attempt in ("cached", "rebuilt") if path.is_file() else ("rebuilt",):
                if attempt == "rebuilt":
                    why = _compile(cc, flags, src, path)
                    if why:
                        break
                try:
                    return _OPENERS[name](path), ""
                except OSError as exc:
                    why = f"cannot load {path}: {exc}"
                    logger.debug("native %s library %s: %s", name, attempt, why)
        logger.debug("native build with %s failed: %s", " ".join(flags), why)
    return None, why


class _BuildFailed(Exception):
    """The compiler ran and refused the source (its message says why)."""


def _compile(cc: str, flags: tuple[str, ...], src: Path, path: Path) -> str:
    """Compile ``src`` into ``path`` (atomically); an empty string on success, else why not."""
    try:
        # the compiler writes a hidden temporary file beside path, renamed onto it only once complete
        with atomic_path(path) as tmp:
            proc = subprocess.run([cc, *flags, "-o", str(tmp), str(src)], capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise _BuildFailed(f"{cc} failed: {proc.stderr.strip()[-300:]}")
    except _BuildFailed as exc:
        return str(exc)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot build {path.name} in {path.parent} with {cc}: {exc}"
    # builds of earlier sources or compilers are not needed any more (a process that has one open keeps
    # its mapping; another installation needing one builds it again)
    for old in path.parent.glob(path.name.rsplit("_", 1)[0] + "_*.so"):
        if old != path:
            old.unlink(missing_ok=True)
    return ""


def _open_adam(path: Path) -> NativeKernels:
    return NativeKernels(path=path, lib=adam_contract.LIBRARY.open(str(path)))


def _open_mlp1(path: Path) -> MLP1Kernels:
    lib = mlp1_contract.LIBRARY.open(str(path))
    if lib.miaudit_mlp1_init() != 0:
        raise OSError("the kernel refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
    kind = mlp1_contract.KINDS.get(lib.miaudit_mlp1_kind())
    if kind is None:
        raise OSError(f"{path} reports an unknown kind {lib.miaudit_mlp1_kind()}")
    return MLP1Kernels(path=path, lib=lib, kind=kind, dp=bool(lib.miaudit_mlp1_dp()))


def _open_gauss(path: Path) -> GaussKernels:
    return GaussKernels(path=path, lib=gauss_contract.LIBRARY.open(str(path)))


_OPENERS = {"adam": _open_adam, "gauss": _open_gauss, "mlp1": _open_mlp1}

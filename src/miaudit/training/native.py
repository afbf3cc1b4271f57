"""Native kernels of the batched engine, compiled from C on first use.

Two libraries:

* ``_native/adam.c`` (every CPU): the fused Adam step of :mod:`miaudit.training.batched`. In bf16
  training it reads the bfloat16 gradients the matrix products wrote, updates the float32 master
  weights and Adam state, and writes the new bfloat16 weight copy in one pass over memory; with
  PyTorch alone the same step is three passes (gradients to float32, ``torch._fused_adam_``,
  weights to bfloat16), about twice the time.
* ``_native/mlp1.c`` (x86 CPUs with AMX-BF16 only): whole training steps of a network with one
  hidden layer in bf16, one model at a time, its weights and Adam state held in the core's cache
  (the file says why and how). The engine uses it where it applies and the stacked PyTorch path
  elsewhere.

How it is built
---------------
Each C file is compiled with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``;
``-O3 -march=native -ffp-contract=off``) into a shared library under the user cache
(``$MIAUDIT_CACHE_DIR/native`` or ``platformdirs.user_cache_dir("miaudit")/native``), named by a
hash of the source, the compiler, the flags and the CPU, and loaded with :mod:`ctypes` (calls
release the GIL, so worker threads run kernels in parallel). The build takes well under a second,
once per machine and source version (a new build removes the library of the earlier one). The
library is written to a temporary name and renamed, so concurrent processes never load a half-written
file.

Where there is no compiler, the build fails, or ``MIAUDIT_NATIVE=0`` is set, the engine uses the
PyTorch operations instead: same arithmetic (to float32 rounding), slower. ``MIAUDIT_NATIVE=adam``
keeps only the Adam step (the stacked PyTorch path for every network). :func:`native_status` says
which is in use and why.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import torch

from miaudit.training.hardware import cpu_flags

__all__ = ["NATIVE_ENV", "MLP1Kernels", "NativeKernels", "load_mlp1", "load_native", "native_status"]

logger = logging.getLogger(__name__)

#: ``0``: PyTorch operations instead of the compiled kernels; ``adam``: the Adam step only.
NATIVE_ENV = "MIAUDIT_NATIVE"
_SOURCES = Path(__file__).with_name("_native")
_FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
_ABI = 1
_lock = threading.Lock()
_loaded: dict[tuple[str, str], tuple[Any, str]] = {}


@dataclass(frozen=True)
class NativeKernels:
    """The compiled library and its entry points."""

    path: Path
    lib: ctypes.CDLL

    def adam_step(
        self,
        p: torch.Tensor,
        m: torch.Tensor,
        v: torch.Tensor,
        *,
        grad: torch.Tensor,
        p_bf16: torch.Tensor | None,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
    ) -> None:
        """Adam step ``step`` (from 1) in place on contiguous 1-d float32 ``p``, ``m``, ``v``.

        ``grad`` is float32 or bfloat16 of the same length; ``p_bf16``, if given, receives the new
        parameters in bfloat16.
        """
        n = p.numel()
        for t in (m, v, grad) + ((p_bf16,) if p_bf16 is not None else ()):
            if t.numel() != n or not t.is_contiguous():
                raise ValueError("adam_step needs contiguous buffers of equal length")
        if not (p.is_contiguous() and p.dtype == m.dtype == v.dtype == torch.float32):
            raise ValueError("adam_step needs contiguous float32 p, m, v")
        if grad.dtype not in (torch.float32, torch.bfloat16) or (p_bf16 is not None and p_bf16.dtype != torch.bfloat16):
            raise ValueError("adam_step: grad must be float32 or bfloat16, p_bf16 bfloat16")
        bf16_grad = grad.dtype == torch.bfloat16
        self.lib.miaudit_adam_step(
            n,
            p.data_ptr(),
            m.data_ptr(),
            v.data_ptr(),
            None if bf16_grad else grad.data_ptr(),
            grad.data_ptr() if bf16_grad else None,
            None if p_bf16 is None else p_bf16.data_ptr(),
            lr,
            beta1,
            beta2,
            1.0 - beta1**step,
            (1.0 - beta2**step) ** 0.5,
            eps,
            weight_decay,
        )


@dataclass(frozen=True)
class MLP1Kernels:
    """Whole training steps of one network with one hidden layer, on AMX (``_native/mlp1.c``).

    Every array is a contiguous tensor allocated by :mod:`miaudit.training.batched` with the shapes
    and dtypes the C file documents; nothing is checked here (it runs on every block of steps).
    """

    path: Path
    lib: ctypes.CDLL

    def copy_weights(self, P1: torch.Tensor, W1c: torch.Tensor) -> None:
        """The bf16 pair-layout copy ``W1c`` of the float32 first-layer weights ``P1`` (D, H)."""
        D, H = P1.shape
        self.lib.miaudit_mlp1_copy_weights(D, H, P1.data_ptr(), W1c.data_ptr())

    def train(
        self,
        pool: torch.Tensor,
        idx: torch.Tensor,
        rw: torch.Tensor,
        labels: torch.Tensor,
        state: Sequence[torch.Tensor],
        scratch: Sequence[torch.Tensor],
        *,
        t0: int,
        lr: float,
        weight_decay: float,
        n_classes: int,
    ) -> None:
        """Adam steps ``t0 + 1 .. t0 + L`` on the L batches ``idx`` (L, B).

        ``state``: P1, m1, v1 (in 32 x 32 blocks), W1c, P2, m2, v2, as ``_native/mlp1.c`` lays them out.
        """
        L, B = idx.shape
        W1c = state[3]  # (D/2, H, 2)
        D, H = 2 * W1c.shape[0], W1c.shape[1]
        self.lib.miaudit_mlp1_train(
            D, H, n_classes, B, L,
            pool.data_ptr(), idx.data_ptr(), rw.data_ptr(), labels.data_ptr(),
            *(t.data_ptr() for t in state),
            t0, lr, 0.9, 0.999, 1e-8, weight_decay,
            *(t.data_ptr() for t in scratch),
        )  # fmt: skip


def native_status() -> str:
    """One line: which compiled kernels are in use, and why not where not."""
    parts = []
    for name in ("adam", "mlp1"):
        kernels, why = _load(name)
        parts.append(f"{name} compiled" if kernels is not None else f"{name} not used ({why})")
    return "; ".join(parts)


def load_native() -> NativeKernels | None:
    """The compiled Adam step, building it on first use; None where it cannot be had (see module)."""
    return _load("adam")[0]


def load_mlp1() -> MLP1Kernels | None:
    """The one-hidden-layer AMX training steps, where the CPU has AMX-BF16 and they build; else None."""
    return _load("mlp1")[0]


def _load(name: str) -> tuple[Any, str]:
    setting = os.environ.get(NATIVE_ENV, "1").strip().lower()
    if setting in ("0", "off", "false", "no"):
        return None, f"{NATIVE_ENV}={setting}"
    if setting == "adam" and name != "adam":
        return None, f"{NATIVE_ENV}=adam"
    key = (name, os.environ.get("CC", ""))
    with _lock:
        if key not in _loaded:
            if name == "mlp1" and not _has_amx():
                _loaded[key] = None, "the CPU has no AMX-BF16"
            else:
                _loaded[key] = _build_and_load(name)
            kernels, why = _loaded[key]
            if kernels is not None:
                logger.debug("native %s kernels loaded from %s", name, kernels.path)
            elif name == "adam" or _has_amx():
                logger.warning("native %s kernel unavailable (%s); training uses PyTorch operations", name, why)
        return _loaded[key]


def _has_amx() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and {"amx_bf16", "amx_tile"} <= cpu_flags()


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
    for arch in (("-march=native",), ()):
        flags = (*_FLAGS, *arch)
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
            path = directory / f"miaudit_{name}_{digest}.so"
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


def _compile(cc: str, flags: tuple[str, ...], src: Path, path: Path) -> str:
    """Compile ``src`` into ``path`` (atomically); an empty string on success, else why not."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=directory)
        os.close(fd)
    except OSError as exc:
        return f"cannot write to {directory}: {exc}"
    try:
        proc = subprocess.run([cc, *flags, "-o", tmp, str(src)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            return f"{cc} failed: {proc.stderr.strip()[-300:]}"
        Path(tmp).replace(path)
        # builds of earlier sources or compilers are not needed any more (a process that has one open keeps
        # its mapping; another installation needing one builds it again)
        for old in directory.glob(path.name.rsplit("_", 1)[0] + "_*.so"):
            if old != path:
                old.unlink(missing_ok=True)
        return ""
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cc} failed: {exc}"
    finally:
        Path(tmp).unlink(missing_ok=True)


def _open_adam(path: Path) -> NativeKernels:
    lib = ctypes.CDLL(str(path))
    if lib.miaudit_native_abi() != _ABI:
        raise OSError(f"{path.name} has another ABI version")
    ptr, f32 = ctypes.c_void_p, ctypes.c_float
    lib.miaudit_adam_step.argtypes = [ctypes.c_int64, ptr, ptr, ptr, ptr, ptr, ptr, f32, f32, f32, f32, f32, f32, f32]
    lib.miaudit_adam_step.restype = None
    lib.miaudit_to_bf16.argtypes = [ctypes.c_int64, ptr, ptr]
    lib.miaudit_to_bf16.restype = None
    return NativeKernels(path=path, lib=lib)


def _open_mlp1(path: Path) -> MLP1Kernels:
    lib = ctypes.CDLL(str(path))
    if lib.miaudit_mlp1_abi() != _ABI:
        raise OSError(f"{path.name} has another ABI version")
    if lib.miaudit_mlp1_init() != 0:
        raise OSError("the kernel refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
    ptr, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.miaudit_mlp1_copy_weights.argtypes = [i64, i64, ptr, ptr]
    lib.miaudit_mlp1_copy_weights.restype = None
    lib.miaudit_mlp1_train.argtypes = [i64] * 5 + [ptr] * 11 + [i64] + [f32] * 5 + [ptr] * 6
    lib.miaudit_mlp1_train.restype = None
    return MLP1Kernels(path=path, lib=lib)


_OPENERS = {"adam": _open_adam, "mlp1": _open_mlp1}

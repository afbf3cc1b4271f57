"""What this CPU can do: its model, native bf16 matrix units, available memory, measured matmul peak; denormals.

The batched engine asks :func:`resolve_precision` whether ``precision="auto"`` means bf16 or f32.
Given the workload (``model`` and ``train``), the answer is measured on this machine by
:mod:`miaudit.training.tuning` (the faster of the two on the workload's shapes, cached; the fixed
rule below with ``MIAUDIT_TUNING=off``). Without them, the fixed rule: bf16 only where the CPU has
native bf16 matrix instructions (Intel AMX-BF16 or AVX512-BF16, or the Arm BF16 extension),
detected from the CPU flags the kernel reports and confirmed with PyTorch's oneDNN backend; never
guessed from the model name. Elsewhere bf16 still runs (slowly, emulated), but the rule picks f32.

``MIAUDIT_NATIVE_ISA=avx2`` makes this module see the CPU as an AVX2-only one (:func:`native_isa`):
:func:`usable_cpu_flags` drops every AVX-512 and AMX flag, so there is no native bf16 and ``auto``
behaves as on an AVX2 CPU, and :mod:`miaudit.training.native` builds its kernels with AVX-512 off.

:func:`resolve_device` checks a device name (``cpu``, ``cuda``, ``mps``) against what this PyTorch
can use.

>>> resolve_precision("f32")
'f32'
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from miaudit.errors import ConfigError
from miaudit.training.specs import DEVICES, ModelSpec, TrainSpec

__all__ = [
    "BF16_FLAGS",
    "ISAS",
    "ISA_ENV",
    "available_memory_bytes",
    "cpu_flags",
    "cpu_model",
    "denormals_flushed",
    "flush_denormals",
    "matmul_peak_gflops",
    "native_bf16",
    "native_isa",
    "resolve_device",
    "resolve_precision",
    "usable_cpu_flags",
]

logger = logging.getLogger(__name__)

#: CPU flags (as in /proc/cpuinfo) that mean native bf16 matrix arithmetic.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})

#: ``avx2``: treat this x86 CPU as one without AVX-512 and AMX (kernels built without them, no native bf16).
ISA_ENV = "MIAUDIT_NATIVE_ISA"
#: The instruction sets :data:`ISA_ENV` may name: ``native`` (all the CPU has; the default) or ``avx2``.
ISAS = ("native", "avx2")
#: CPU flags an AVX2-only x86 CPU does not have (prefixes of /proc/cpuinfo flags).
_AVX512_PREFIXES = ("avx512", "amx")

_CPUINFO = Path("/proc/cpuinfo")
_MEMINFO = Path("/proc/meminfo")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags reported by the kernel (empty where /proc/cpuinfo is absent).

    Reads the ``flags`` line (x86) or ``Features`` line (Arm) of the first processor.
    """
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        return frozenset()
    return parse_cpu_flags(text)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``model name`` in /proc/cpuinfo, as ``lscpu`` prints it), else the platform's."""
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("model name", "cpu model", "hardware"):
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in the text of /proc/cpuinfo.

    >>> sorted(parse_cpu_flags("processor : 0\\nflags : fpu avx512_bf16 amx_bf16\\n"))
    ['amx_bf16', 'avx512_bf16', 'fpu']
    """
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_isa() -> str:
    """The instruction set the native kernels and :func:`native_bf16` assume: ``native`` or ``avx2``.

    From the environment variable ``MIAUDIT_NATIVE_ISA`` (empty or unset: ``native``). ``avx2`` emulates an
    AVX2-only x86 CPU on one that has AVX-512: kernels compiled with AVX-512 and AMX off, no native bf16.

    Raises
    ------
    ConfigError
        An unknown value, or ``avx2`` on a CPU that is not x86-64.
    """
    value = os.environ.get(ISA_ENV, "").strip().lower() or "native"
    if value not in ISAS:
        raise ConfigError(f"{ISA_ENV} must be one of {', '.join(map(repr, ISAS))} (or unset); got {value!r}")
    if value == "avx2" and platform.machine().lower() not in ("x86_64", "amd64"):
        raise ConfigError(
            f"{ISA_ENV}=avx2 emulates an AVX2-only x86-64 CPU; this is a {platform.machine()} CPU: unset {ISA_ENV}"
        )
    return value


def usable_cpu_flags() -> frozenset[str]:
    """:func:`cpu_flags` as the engine may use them: without AVX-512 and AMX flags under ``MIAUDIT_NATIVE_ISA=avx2``."""
    flags = cpu_flags()
    if native_isa() == "avx2":
        return frozenset(f for f in flags if not f.startswith(_AVX512_PREFIXES))
    return flags


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX-BF16, AVX512-BF16 or Arm BF16).

    Requires both the CPU flag (of :func:`usable_cpu_flags`: none under ``MIAUDIT_NATIVE_ISA=avx2`` on
    x86) and a PyTorch build whose oneDNN backend can use it.
    """
    return _native_bf16(usable_cpu_flags())


@functools.cache
def _native_bf16(usable: frozenset[str]) -> bool:
    """:func:`native_bf16` for a set of usable flags (cached per set: the emulation switches between sets)."""
    flags = usable & BF16_FLAGS
    if not flags:
        logger.debug("no native bf16 flag on this %s CPU (%s=%s)", platform.machine(), ISA_ENV, native_isa())
        return False
    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older or stripped builds
        supported = torch.backends.mkldnn.is_available()
    logger.debug("CPU bf16 flags %s; oneDNN bf16 supported: %s", sorted(flags), supported)
    return supported


# forgets the answers (as when native_bf16 was one cached function; tests that fake CPU flags call it)
native_bf16.cache_clear = _native_bf16.cache_clear  # type: ignore[attr-defined]


def resolve_precision(precision: str, *, model: ModelSpec | None = None, train: TrainSpec | None = None) -> str:
    """Map a :class:`~miaudit.training.specs.TrainSpec` precision to the arithmetic actually used.

    Parameters
    ----------
    precision : {"auto", "f32", "bf16"}
    model, train : ModelSpec, TrainSpec, optional
        The workload. Given both, ``auto`` is the precision the engine will train it with: the
        measured choice of :func:`miaudit.training.tuning.choose_path` (for DP-SGD its rules; the rule
        below with ``MIAUDIT_TUNING=off``). Without them, the fixed rule.

    Returns
    -------
    {"f32", "bf16"}
        The fixed rule: ``auto`` becomes ``bf16`` where :func:`native_bf16` is true and ``f32`` elsewhere.
    """
    if precision == "auto":
        if model is not None and train is not None:
            import dataclasses

            from miaudit.training.tuning import choose_path

            if train.precision != "auto":
                train = dataclasses.replace(train, precision="auto")
            return choose_path(model=model, train=train).precision
        return "bf16" if native_bf16() else "f32"
    if precision in ("f32", "bf16"):
        return precision
    raise ConfigError(f"precision must be one of 'auto', 'f32', 'bf16'; got {precision!r}")


def resolve_device(device: str) -> torch.device:
    """The torch device for a :class:`~miaudit.training.specs.TrainSpec` device name, checked to be usable here.

    Parameters
    ----------
    device : {"cpu", "cuda", "mps"}

    Raises
    ------
    ConfigError
        An unknown name, or a GPU this PyTorch cannot use (no CUDA device or a build without CUDA; no
        Metal Performance Shaders), naming the fix.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        build = (
            "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}, but no GPU is visible"
        )
        raise ConfigError(
            f"device 'cuda' needs an NVIDIA GPU and a CUDA build of PyTorch; this is torch {torch.__version__} "
            f"{build} (torch.cuda.is_available() is False): use --device cpu, or install a CUDA build of torch "
            "on a machine with a GPU (check CUDA_VISIBLE_DEVICES)"
        )
    if device == "mps" and not (torch.backends.mps.is_built() and torch.backends.mps.is_available()):
        raise ConfigError(
            f"device 'mps' needs Apple silicon with macOS 12.3 or later and a PyTorch built with MPS; "
            f"torch.backends.mps.is_available() is False on this {platform.system()} {platform.machine()} machine: "
            "use --device cpu"
        )
    return torch.device(device)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def matmul_peak_gflops(
    dtype: torch.dtype = torch.float32, *, size: int = 2048, seconds: float = 1.0, workers: int | None = None
) -> float:
    """Measured matrix-multiply throughput of this machine in GFLOP/s (best seen).

    Two ways are timed, each for about ``seconds / 2``, and the better one is returned: one
    ``size x size`` product at a time with torch's intra-op threads, and ``workers`` products at
    once on as many Python threads with one torch thread each (how the batched engine runs; it
    is also the way that keeps its speed when other processes share the cores). ``2 * size**3``
    FLOP are counted per product.

    Parameters
    ----------
    dtype : torch.dtype
        ``torch.float32`` or ``torch.bfloat16``.
    size : int
        Matrix side.
    seconds : float
        Measuring time; the machine is shared, so longer gives a steadier best.
    workers : int, optional
        Concurrent single-threaded products; default ``torch.get_num_threads()``.
    """
    if size < 1 or seconds <= 0:
        raise ValueError(f"size must be >= 1 and seconds > 0; got size={size}, seconds={seconds}")
    workers = workers or torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=gen).to(dtype)
    b = torch.rand(size, size, generator=gen).to(dtype)
    flop = 2.0 * size**3

    def best_rate(run: Callable[[], object], n_products: int, budget: float) -> float:
        run()  # warm up (oneDNN primitive creation)
        best = 0.0
        deadline = time.perf_counter() + budget
        while time.perf_counter() < deadline or best == 0.0:
            t0 = time.perf_counter()
            run()
            best = max(best, n_products * flop / (time.perf_counter() - t0) / 1e9)
        return best

    out = torch.empty(size, size, dtype=dtype)
    together = best_rate(lambda: torch.mm(a, b, out=out), 1, seconds / 2)
    if workers == 1:
        return together
    outs = [torch.empty(size, size, dtype=dtype) for _ in range(workers)]

    def one(i: int) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.mm(a, b, out=outs[i])
        finally:
            torch.set_num_threads(threads)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        apart = best_rate(lambda: list(pool.map(one, range(workers))), workers, seconds / 2)
    return max(together, apart)


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (measured: torch has no getter for the flag).

    The flag (``torch.set_flush_denormal``, the CPU's FTZ/DAZ bits) belongs to the calling thread.
    """
    return bool((torch.tensor(1e-40) * 1.0).item() == 0.0)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Context manager (or decorator): flush denormal floats to zero in this thread, then restore.

    Adam's running averages decay into denormals late in training, which slows every step several
    times on CPUs that handle them in microcode. The flag is per thread and torch has no getter, so
    the state before is measured (:func:`denormals_flushed`) and turned off again on exit only if
    this context turned it on; nested uses and a caller who had it on already keep theirs. Where the
    CPU cannot flush denormals (``torch.set_flush_denormal`` returns False) nothing changes.

    >>> before = denormals_flushed()
    >>> with flush_denormals():
    ...     denormals_flushed() or not torch.set_flush_denormal(True)
    True
    >>> denormals_flushed() == before
    True
    """
    turned_on = not denormals_flushed() and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if turned_on:
            torch.set_flush_denormal(False)

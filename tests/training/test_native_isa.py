"""AVX2-only CPUs, emulated: MIAUDIT_NATIVE_ISA=avx2 builds the kernels without AVX-512 and hides native bf16."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch

from miaudit.errors import ConfigError
from miaudit.training import hardware, native, tuning
from miaudit.training.batched import train_batched
from miaudit.training.executors import InProcessExecutor
from miaudit.training.hardware import ISA_ENV
from miaudit.training.native import AVX2_FLAGS, NATIVE_ENV
from miaudit.training.specs import ModelSpec, TrainSpec

X86 = platform.machine().lower() in ("x86_64", "amd64")
needs_x86 = pytest.mark.skipif(not X86, reason=f"the AVX2 emulation is for x86-64 CPUs; this is {platform.machine()}")
needs_cc = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")
SPEC = ModelSpec(n_features=64, n_classes=10, hidden=(32,))


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache, no libraries loaded in this process, the CPU's own instruction set."""
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(NATIVE_ENV, raising=False)
    monkeypatch.delenv(ISA_ENV, raising=False)
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path


FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16"})


def test_native_isa_setting(monkeypatch) -> None:
    monkeypatch.delenv(ISA_ENV, raising=False)
    assert hardware.native_isa() == "native"
    monkeypatch.setenv(ISA_ENV, "")
    assert hardware.native_isa() == "native"
    monkeypatch.setenv(ISA_ENV, " AVX2 ")
    if X86:
        assert hardware.native_isa() == "avx2"
    monkeypatch.setenv(ISA_ENV, "sse2")
    with pytest.raises(
        ConfigError, match=r"MIAUDIT_NATIVE_ISA must be one of 'native', 'avx2' \(or unset\); got 'sse2'"
    ):
        hardware.native_isa()
    monkeypatch.setenv(ISA_ENV, "avx2")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ConfigError, match=r"emulates an AVX2-only x86-64 CPU; this is a aarch64 CPU: unset"):
        hardware.native_isa()


@needs_x86
def test_avx2_hides_avx512_amx_and_native_bf16(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: FLAGS)
    monkeypatch.delenv(ISA_ENV, raising=False)
    assert hardware.usable_cpu_flags() == FLAGS
    monkeypatch.setenv(ISA_ENV, "avx2")
    assert hardware.usable_cpu_flags() == {"sse4_2", "avx", "avx2", "fma"}
    assert hardware.native_bf16() is False
    assert hardware.resolve_precision("auto") == "f32"
    assert native._has_amx() is False


@needs_x86
def test_avx2_compiler_flags(monkeypatch) -> None:
    monkeypatch.delenv(ISA_ENV, raising=False)
    assert all(not set(AVX2_FLAGS) & set(flags) for flags in native.library_flags())
    monkeypatch.setenv(ISA_ENV, "avx2")
    for flags in native.library_flags():
        assert flags[-len(AVX2_FLAGS) :] == AVX2_FLAGS  # after -march=native: they win
    assert native.library_flags()[0][-3] == "-march=native"


@needs_x86
def test_the_tuning_key_names_the_emulation_only_when_on(monkeypatch) -> None:
    monkeypatch.delenv(ISA_ENV, raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    train = TrainSpec(precision="f32")
    native_key = tuning.workload_key(model=SPEC, train=train)
    assert "native_isa" not in native_key and "torch_isa" not in native_key  # keys of before stay
    monkeypatch.setenv(ISA_ENV, "avx2")
    monkeypatch.setattr(native, "_loaded", {})
    emulated = tuning.workload_key(model=SPEC, train=train)
    assert emulated["native_isa"] == "avx2" and tuning._hash(emulated) != tuning._hash(native_key)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert tuning.workload_key(model=SPEC, train=train)["torch_isa"][1] == "AVX2"


def _objdump(path) -> str:
    return subprocess.run(["objdump", "-d", str(path)], capture_output=True, text=True, check=True).stdout


@needs_x86
@needs_cc
def test_avx2_build_is_separate_and_has_no_avx512(fresh, monkeypatch) -> None:
    monkeypatch.setenv(ISA_ENV, "avx2")
    emulated = native.load_native()
    assert emulated is not None, native.native_status()
    assert emulated.path.name.startswith("miaudit_adam-avx2_")
    status = native.native_status()
    assert "mlp1 not used (MIAUDIT_NATIVE_ISA=avx2: no AMX or AVX-512)" in status and "built for avx2" in status
    assert native.load_mlp1() is None
    monkeypatch.delenv(ISA_ENV)
    own = native.load_native()
    assert own is not None and own.path.name.startswith("miaudit_adam_") and own.path != emulated.path
    assert emulated.path.is_file() and own.path.is_file()  # neither build removes the other
    if shutil.which("objdump") is None:
        pytest.skip("objdump is not installed: cannot read the instructions")
    code = _objdump(emulated.path)
    assert "zmm" not in code and "%k1" not in code  # no 512-bit registers, no AVX-512 mask registers
    assert "ymm" in code  # still vectorised, with AVX2
    if "avx512f" in hardware.cpu_flags():
        assert "zmm" in _objdump(own.path)  # the CPU's own build uses AVX-512 where the CPU has it


def _adam_run(kernels, grad_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = 10_007  # not a multiple of any vector width: the scalar tail runs too
    p = torch.randn(n, generator=gen) * 0.05
    m, v = torch.zeros(n), torch.zeros(n)
    pc = torch.empty(n, dtype=torch.bfloat16)
    g = torch.empty(n, dtype=grad_dtype)
    buffers = kernels.adam_buffers(p, m, v, grad=g, p_bf16=pc, lr=1e-3, weight_decay=5e-4)
    for step in range(1, 21):
        g.copy_((torch.randn(n, generator=gen) * 1e-3).to(grad_dtype))
        kernels.adam_step(buffers, step=step)
    return p, pc


@needs_x86
@needs_cc
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
def test_avx2_adam_gives_the_same_bits(fresh, monkeypatch, grad_dtype) -> None:
    """IEEE operations without contraction: the AVX2 build's Adam step equals the native build's bit for bit."""
    own = native.load_native()
    monkeypatch.setenv(ISA_ENV, "avx2")
    emulated = native.load_native()
    assert own is not None and emulated is not None and own.path != emulated.path
    p1, c1 = _adam_run(own, grad_dtype)
    p2, c2 = _adam_run(emulated, grad_dtype)
    assert torch.equal(p1, p2) and torch.equal(c1, c2)
    assert float((p1 - _adam_run(own, grad_dtype)[0]).abs().max()) == 0.0  # and the runs are deterministic


@needs_x86
@needs_cc
def test_the_engine_under_avx2_trains_f32_models_bitwise_as_before(fresh, monkeypatch, digits) -> None:
    X, y = digits
    sets = [np.arange(0, 200), np.arange(100, 330)]
    train = TrainSpec(epochs=2, batch_size=32, lr=3e-3, precision="auto", engine="batched")

    def run() -> list:
        return train_batched(X, y, sets, seeds=[1, 2], model=SPEC, train=train, executor=InProcessExecutor(n_workers=1))

    own = train_batched(
        X, y, sets, seeds=[1, 2], model=SPEC, train=dataclasses.replace(train, precision="f32"),
        executor=InProcessExecutor(n_workers=1),
    )  # fmt: skip
    monkeypatch.setenv(ISA_ENV, "avx2")
    emulated = run()  # auto is f32 on an AVX2 CPU (tuning is off in tests: the fixed rule)
    for a, b in zip(own, emulated, strict=True):
        for x, z in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
            np.testing.assert_array_equal(x, z)

"""The compiled Adam step: same arithmetic as torch's fused Adam, exact bf16 rounding, safe build and fallback."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from miaudit.errors import TrainingError
from miaudit.training import native
from miaudit.training.batched import train_batched
from miaudit.training.engine import fused as fused_path
from miaudit.training.engine.fused import fused_applies
from miaudit.training.engine.orchestration import train_chunk
from miaudit.training.engine.planning import ChunkJob
from miaudit.training.native import NATIVE_ENV, load_native, native_status
from miaudit.training.tuning import candidates, choose_path, pinned, rule_choice

pytestmark = pytest.mark.skipif(
    native._compiler() is None, reason="no C compiler on this machine (the engine falls back to PyTorch operations)"
)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Build into an empty cache directory, forgetting libraries loaded earlier in this process."""
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(NATIVE_ENV, raising=False)
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path


@pytest.fixture
def kernels():
    k = load_native()
    assert k is not None, native_status()
    return k


def _torch_adam(p, m, v, g, step, *, lr, wd):
    torch._fused_adam_(
        [p], [g], [m], [v], [], [torch.tensor(float(step))],
        lr=lr, beta1=0.9, beta2=0.999, weight_decay=wd, eps=1e-8, amsgrad=False, maximize=False,
    )  # fmt: skip


@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
@pytest.mark.parametrize("copy", [False, True])
def test_adam_step_matches_torch_fused_adam_over_many_steps(kernels, grad_dtype, wd, copy) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 10_007  # not a multiple of any vector width: the scalar tail runs too
    p0 = torch.randn(n, generator=gen) * 0.05
    p_ref, m_ref, v_ref = p0.clone(), torch.zeros(n), torch.zeros(n)
    p, m, v = p0.clone(), torch.zeros(n), torch.zeros(n)
    pc = torch.empty(n, dtype=torch.bfloat16) if copy else None
    g = torch.empty(n, dtype=grad_dtype)
    buffers = kernels.adam_buffers(p, m, v, grad=g, p_bf16=pc, lr=1e-3, weight_decay=wd)  # checked once
    for step in range(1, 51):
        scale = 10.0 ** -torch.randint(1, 5, (1,), generator=gen).item()
        g.copy_((torch.randn(n, generator=gen) * scale).to(grad_dtype))
        _torch_adam(p_ref, m_ref, v_ref, g.float(), step, lr=1e-3, wd=wd)
        kernels.adam_step(buffers, step=step)
    # the parameters moved (50 steps of ~1e-3) and agree with torch to float32 rounding
    assert float((p - p0).abs().mean()) > 3e-3
    torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6)  # one step moves p by ~1e-3
    torch.testing.assert_close(m, m_ref, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(v, v_ref, rtol=1e-4, atol=1e-12)
    if pc is not None:
        # the bf16 copy is exactly torch's rounding of the float32 parameters
        assert torch.equal(pc, p.to(torch.bfloat16))


def test_bf16_copy_rounds_like_torch_on_ties_specials_and_subnormals(kernels) -> None:
    bits = np.array(
        [
            0x3F808000,  # exactly halfway between two bf16 values, even below: rounds down
            0x3F818000,  # halfway, odd below: rounds up
            0x3F808001,  # just above halfway
            0x7F7FFFFF,  # largest float: rounds to infinity, as torch does
            0x00000001,  # smallest subnormal
            0x807FFFFF,  # largest negative subnormal
            0x7F800000,  # +inf
            0xFF800000,  # -inf
            0x80000000,  # -0
        ],
        dtype=np.uint32,
    )
    rng = np.random.default_rng(1)
    values = np.concatenate([bits.view(np.float32), rng.standard_normal(1000).astype(np.float32)])
    src = torch.from_numpy(values)
    dst = torch.empty(len(values), dtype=torch.bfloat16)
    kernels.to_bf16(src, dst)
    assert torch.equal(dst.view(torch.int16), src.to(torch.bfloat16).view(torch.int16))


def test_nan_stays_nan_in_the_bf16_copy(kernels) -> None:
    # a NaN whose payload would round up into the infinity pattern
    src = torch.from_numpy(np.array([0x7F800001, 0xFFFFFFFF], dtype=np.uint32).view(np.float32))
    dst = torch.empty(2, dtype=torch.bfloat16)
    kernels.to_bf16(src, dst)
    assert torch.isnan(dst.float()).all()


def test_adam_step_rejects_mismatched_buffers(kernels) -> None:
    p, m, v = torch.zeros(8), torch.zeros(8), torch.zeros(8)
    with pytest.raises(TrainingError, match=r"argument 'g' must be .*shape \(n,\) = \(8,\); got .*shape \(7,\)"):
        kernels.adam_buffers(p, m, v, grad=torch.zeros(7), lr=1e-3, weight_decay=0.0)
    with pytest.raises(TrainingError, match=r"argument 'p' must be .*dtype torch.float32.*got dtype torch.float64"):
        kernels.adam_buffers(p.double(), m, v, grad=torch.zeros(8), lr=1e-3, weight_decay=0.0)
    with pytest.raises(TrainingError, match=r"argument 'pc' must be .*bfloat16.*got dtype torch.float32"):
        kernels.adam_buffers(p, m, v, grad=torch.zeros(8), p_bf16=torch.zeros(8), lr=1e-3, weight_decay=0.0)
    with pytest.raises(TrainingError, match=r"argument 'dst' must be .*got dtype torch.bfloat16, shape \(7,\)"):
        kernels.to_bf16(torch.zeros(8), torch.zeros(7, dtype=torch.bfloat16))
    assert float(p.abs().sum()) == 0.0  # nothing ran


def test_build_is_cached_and_reused(fresh) -> None:
    first = native._build_and_load("adam")[0]
    assert first is not None
    assert first.path.parent == fresh / "native"
    mtime = first.path.stat().st_mtime_ns
    again = native._build_and_load("adam")[0]
    assert again is not None and again.path == first.path and first.path.stat().st_mtime_ns == mtime
    assert not list(first.path.parent.glob(".*.tmp")), "temporary build files left behind"
    # a build of another source version replaces the earlier library instead of piling up beside it
    stale = first.path.with_name("miaudit_adam_00000000000000000000.so")
    stale.write_bytes(b"an earlier build")
    first.path.unlink()
    rebuilt = native._build_and_load("adam")[0]
    assert rebuilt is not None and rebuilt.path == first.path
    assert not stale.exists()


def _build_in_subprocess(cache: Path, tmp: Path) -> str:
    """Build and load in a fresh process (a process never reloads a library path it has open)."""
    code = (
        "from miaudit.training.native import _build_and_load\n"
        "k, why = _build_and_load('adam')\n"
        "print(k.path if k is not None else 'NONE ' + why)"
    )
    env = {**os.environ, "MIAUDIT_CACHE_DIR": str(cache), "TMPDIR": str(tmp)}
    env.pop(NATIVE_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_corrupt_cached_library_is_rebuilt(tmp_path) -> None:
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    first = Path(_build_in_subprocess(cache, tmp))
    assert first.parent == cache / "native"
    first.write_bytes(b"not a shared library")  # a truncated or damaged cache entry
    second = _build_in_subprocess(cache, tmp)
    assert second == str(first)  # built again in its place, and loaded
    assert first.read_bytes() != b"not a shared library"


def test_no_compiler_or_switched_off_falls_back_with_a_reason(fresh, monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_ENV, "0")
    assert load_native() is None
    assert "MIAUDIT_NATIVE=0" in native_status()
    monkeypatch.delenv(NATIVE_ENV)
    monkeypatch.setenv("CC", shutil.which("false") or "/bin/false")  # a "compiler" that always fails
    monkeypatch.setattr(native, "_compiler", lambda: os.environ["CC"])
    assert load_native() is None
    assert "failed" in native_status()
    assert not list(fresh.rglob("*.tmp")) and not list(fresh.rglob("*.so"))  # a failed build leaves nothing


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_engine_with_and_without_native_kernel_agree(
    digits_split, small_spec, fast_train, subsets, monkeypatch, precision
) -> None:
    X, y, pool, test = digits_split
    sets = subsets(pool, [300, 250, 300])
    train = dataclasses.replace(fast_train, precision=precision)
    with_kernel = train_batched(X, y, sets, seeds=[1, 2, 3], model=small_spec, train=train)
    monkeypatch.setenv(NATIVE_ENV, "0")
    without = train_batched(X, y, sets, seeds=[1, 2, 3], model=small_spec, train=train)
    for a, b in zip(with_kernel, without, strict=True):
        agree = np.mean(a.logits(X[test]).argmax(1) == b.logits(X[test]).argmax(1))
        assert agree >= 0.97
        for wa, wb in zip(a.weights, b.weights, strict=True):
            # float32 rounding differences only (bf16: the copies may round differently after drift)
            np.testing.assert_allclose(wa, wb, atol=1e-3 if precision == "f32" else 2e-2)


# ---------------------------------------------------------------------------------------------
# the one-hidden-layer fused path of the engine (AMX or AVX512-BF16)
# ---------------------------------------------------------------------------------------------

needs_mlp1 = pytest.mark.skipif(
    native.load_mlp1() is None,
    reason="needs AMX-BF16 or AVX512-BF16 and the compiled mlp1 kernels (the stacked path runs here)",
)


def test_fused_path_applies_only_where_it_can(small_spec, fast_train) -> None:
    bf16 = dataclasses.replace(fast_train, precision="bf16")
    has_kernel = native.load_mlp1() is not None
    assert fused_applies(small_spec, bf16, "bf16") is has_kernel  # 64-32-10, batch 32
    assert not fused_applies(small_spec, bf16, "f32")
    assert not fused_applies(dataclasses.replace(small_spec, dropout=0.2), bf16, "bf16")
    assert not fused_applies(dataclasses.replace(small_spec, hidden=(32, 32)), bf16, "bf16")
    assert not fused_applies(dataclasses.replace(small_spec, hidden=(48,)), bf16, "bf16")
    assert not fused_applies(small_spec, dataclasses.replace(bf16, batch_size=50), "bf16")


@needs_mlp1
@pytest.mark.parametrize("n_classes", [10, 20])  # 20 > 16: the output layer's generic loop
def test_fused_path_matches_the_stacked_path(digits_split, small_spec, converging_train, subsets, monkeypatch,
                                             n_classes) -> None:  # fmt: skip
    X, y, pool, test = digits_split
    spec = dataclasses.replace(small_spec, n_classes=n_classes)
    train = dataclasses.replace(converging_train, precision="bf16")
    sets = subsets(pool, [600, 451, 600], seed=3)  # 451: a short last batch, padded
    with pinned(fused=True):  # the rules take it on AMX only; the tuner times it elsewhere
        assert choose_path(model=spec, train=train).path == "fused"
        fused = train_batched(X, y, sets, seeds=[4, 5, 6], model=spec, train=train)
    monkeypatch.setenv(NATIVE_ENV, "adam")  # the stacked path, with the compiled Adam step
    stacked = train_batched(X, y, sets, seeds=[4, 5, 6], model=spec, train=train)
    for a, b in zip(fused, stacked, strict=True):
        acc_a, acc_b = a.accuracy(X[test], y[test]), b.accuracy(X[test], y[test])
        assert acc_a > 0.9 and abs(acc_a - acc_b) < 0.03
        assert np.mean(a.logits(X[test]).argmax(1) == b.logits(X[test]).argmax(1)) > 0.95
        if n_classes > 10:  # classes never seen in training end up with almost no probability
            assert a.predict_proba(X[test])[:, 10:].sum(axis=1).mean() < 0.05


@needs_mlp1
def test_fused_path_same_seed_same_weights_and_models_independent(digits_split, small_spec, fast_train,
                                                                   subsets) -> None:  # fmt: skip
    X, y, pool, _ = digits_split
    train = dataclasses.replace(fast_train, precision="bf16")
    sets = subsets(pool, [300, 300, 300], seed=8)
    with pinned(fused=True):
        assert choose_path(model=small_spec, train=train).path == "fused"
        a = train_batched(X, y, sets, seeds=[1, 2, 3], model=small_spec, train=train)
        b = train_batched(X, y, sets, seeds=[1, 2, 3], model=small_spec, train=train)
        changed = train_batched(X, y, [sets[0], sets[2], sets[2]], seeds=[1, 2, 3], model=small_spec, train=train)
    for m, n in zip(a, b, strict=True):
        for u, v in zip(m.weights + m.biases, n.weights + n.biases, strict=True):
            np.testing.assert_array_equal(u, v)
    for u, v in zip(a[0].weights, changed[0].weights, strict=True):
        np.testing.assert_array_equal(u, v)  # model 0 unaffected by model 1's data
    assert not np.array_equal(a[1].weights[0], changed[1].weights[0])


@needs_mlp1
def test_fused_path_divergence_and_missing_kernels_raise_clear_errors(small_spec, fast_train, monkeypatch) -> None:
    train = dataclasses.replace(fast_train, precision="bf16")
    X = np.full((64, 64), 3e38, dtype=np.float32)  # inputs that overflow the first layer
    y = np.arange(64) % 10
    with pinned(fused=True), pytest.raises(TrainingError, match=r"diverged .* model 0 .*lower the learning rate"):
        train_batched(X, y, [np.arange(64)], seeds=[0], model=small_spec, train=train)
    # planned for the fused path, then the library is gone (a worker in another process, say)
    job = ChunkJob(
        pool=torch.zeros(4, 96, dtype=torch.bfloat16),
        labels=torch.zeros(4, dtype=torch.int64),
        train_sets=(np.arange(4),),
        seeds=(0,),
        positions=(0,),
        model=small_spec,
        train=train,
        precision="bf16",
        fused=True,
    )
    monkeypatch.setattr(fused_path, "load_mlp1", lambda: None)
    with pytest.raises(TrainingError, match="one-hidden-layer steps were planned for but cannot be loaded"):
        train_chunk(job)


def test_the_rules_take_the_fused_path_on_amx_only_and_the_tuner_times_it_wherever_it_builds(small_spec, fast_train):
    bf16 = dataclasses.replace(fast_train, precision="bf16")
    kernels = native.load_mlp1()
    rule = rule_choice(model=small_spec, train=bf16)
    assert (rule.path == "fused") is (kernels is not None and kernels.kind == "AMX-BF16")
    fused_candidates = [c for c in candidates(model=small_spec, train=bf16) if c.path == "fused"]
    assert len(fused_candidates) == (kernels is not None)
    with pytest.raises(ValueError, match="not both"), pinned(fused=True, stacked=True):
        pass


@needs_mlp1
def test_models_of_the_fused_path_have_cache_keys_of_their_own(small_spec, fast_train) -> None:
    from miaudit.studies.cache import train_key

    bf16 = dataclasses.replace(fast_train, precision="bf16", engine="batched")
    with pinned(fused=True):
        fused_key = train_key(bf16, small_spec)
    with pinned(stacked=True):
        stacked_key = train_key(bf16, small_spec)
    assert fused_key["path"] == f"fused {native.load_mlp1().kind}"
    assert "path" not in stacked_key  # stacked keys are as they were
    assert {k: v for k, v in fused_key.items() if k != "path"} == stacked_key

"""The compiled kernels' contracts: declared once beside the C files, checked before any pointer crosses."""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from miaudit.errors import MiauditError, TrainingError
from miaudit.seeding import torch_generator
from miaudit.training import native
from miaudit.training._native import adam as adam_contract
from miaudit.training._native import mlp1 as mlp1_contract
from miaudit.training._native.contract import Kernel, buf, i64
from miaudit.training.engine import fused as fused_path
from miaudit.training.engine.orchestration import train_chunk
from miaudit.training.engine.planning import ChunkJob
from miaudit.training.networks import init_params

SOURCES = Path(native.__file__).with_name("_native")
LIBRARIES = [adam_contract.LIBRARY, mlp1_contract.LIBRARY]
_C_TYPES = {
    ("int64_t", False): ("i64", None),
    ("float", False): ("f32", None),
    ("float", True): ("ptr", torch.float32),
    ("uint16_t", True): ("ptr", torch.bfloat16),
    ("int64_t", True): ("ptr", torch.int64),
}


def _prototype(source: str, symbol: str) -> list[tuple[str, str, torch.dtype | None]]:
    """(name, kind, dtype) of each parameter of the C function ``symbol``, read from its definition."""
    match = re.search(rf"^(?:void|int) {symbol}\(([^)]*)\)\s*\{{", source, re.MULTILINE)
    assert match is not None, f"{symbol} is not defined in the C source"
    params = " ".join(match.group(1).split())
    if params == "void":
        return []
    out = []
    for p in params.split(","):
        words = p.replace("*", " * ").split()
        pointer = "*" in words
        base = [w for w in words[:-1] if w not in ("const", "restrict", "*")]
        assert len(base) == 1, p
        kind, dtype = _C_TYPES[base[0], pointer]
        out.append((words[-1], kind, dtype))
    return out


# ---------------------------------------------------------------------------------------------
# the contract agrees with the C source
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.name)
def test_abi_number_in_c_and_python_agree(library) -> None:
    source = (SOURCES / f"{library.name}.c").read_text()
    found = re.findall(rf"int {library.abi_symbol}\(void\) \{{ return (\d+); \}}", source)
    assert found == [str(library.abi)], f"{library.name}.c reports ABI {found}, its contract {library.abi}"
    assert library.abi >= 1


@pytest.mark.parametrize(
    "kernel", [k for lib in LIBRARIES for k in lib.kernels], ids=lambda k: k.symbol
)  # fmt: skip
def test_every_kernel_matches_its_c_prototype(kernel: Kernel) -> None:
    source = (SOURCES / kernel.source).read_text()
    declared = [(a.name, a.kind, a.dtype) for a in kernel.args]
    assert declared == _prototype(source, kernel.symbol)
    assert (kernel.returns == "int") == (re.search(rf"^int {kernel.symbol}\(", source, re.MULTILINE) is not None)


def test_mlp1_train_takes_the_documented_arguments() -> None:
    names = [a.name for a in mlp1_contract.TRAIN.args]
    assert len(names) == 29
    assert names[9:16] == list(mlp1_contract.STATE)
    assert names[-7:] == list(mlp1_contract.SCRATCH)
    assert mlp1_contract.TRAIN.per_call == ("L", "t0")


def test_adam_constants_are_torch_adam_defaults() -> None:
    defaults = inspect.signature(torch.optim.Adam).parameters
    assert (adam_contract.ADAM.beta1, adam_contract.ADAM.beta2) == defaults["betas"].default
    assert adam_contract.ADAM.eps == defaults["eps"].default


# ---------------------------------------------------------------------------------------------
# the one-time check: wrong shape, dtype, layout, sizes (pure Python: runs on every CPU)
# ---------------------------------------------------------------------------------------------

D, H, C, B, L, N_POOL = 96, 32, 10, 32, 4, 50


def _mlp1_values(**override: object) -> dict[str, object]:
    sizes = {"D": D, "H": H, "C": C, "B": B, "L": L}
    t = mlp1_contract.TRAIN
    values: dict[str, object] = dict(t.allocate([*mlp1_contract.STATE, *mlp1_contract.SCRATCH], sizes))
    values |= t.allocate(["idx", "rw", "labels"], sizes)
    values |= {"pool": torch.zeros(N_POOL, D, dtype=torch.bfloat16), "D": D, "H": H, "C": C, "B": B}
    values |= {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    return values | override


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args: object) -> None:
        self.calls.append(args)


def test_bound_call_passes_pointers_and_scalars_in_prototype_order() -> None:
    values = _mlp1_values()
    fn = _Recorder()
    call = mlp1_contract.TRAIN.bind(fn, values)
    assert call.sizes["n_pool"] == N_POOL and call.sizes["L"] == L
    call(L=3, t0=64)
    call(L=L, t0=67)
    assert len(fn.calls) == 2
    for args, (steps, t0) in zip(fn.calls, [(3, 64), (L, 67)], strict=True):
        assert len(args) == len(mlp1_contract.TRAIN.args)
        for a, got in zip(mlp1_contract.TRAIN.args, args, strict=True):
            if a.name == "L":
                assert got == steps
            elif a.name == "t0":
                assert got == t0
            elif a.kind == "ptr":
                assert got == values[a.name].data_ptr()  # type: ignore[attr-defined]
            else:
                assert got == values[a.name]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        # the first layer in the plain (D, H) layout instead of 32 x 32 blocks
        ({"P1": torch.zeros(D, H)}, r"argument 'P1' must be .*shape \(D // 32, H // 32, 32, 32\) = \(3, 1, 32, 32\); "
                                    r"got dtype torch.float32, shape \(96, 32\)\. "
                                    r"Allocate it as miaudit/training/_native/mlp1.py declares"),
        ({"pool": torch.zeros(N_POOL, D)}, r"argument 'pool' must be .*dtype torch.bfloat16.*got dtype torch.float32"),
        ({"idx": torch.zeros(L, B, dtype=torch.int32)}, r"argument 'idx' must be .*torch.int64.*got dtype torch.int32"),
        ({"xT": torch.zeros(B, D, dtype=torch.bfloat16).T}, r"argument 'xT' must be a contiguous.*not contiguous"),
        ({"g2": torch.zeros(C * H + C + 16 * H)}, r"argument 'g2' .*\(C \* H \+ C \+ 17 \* H,\) = \(874,\).*\(842,\)"),
        ({"labels": torch.zeros(L + 1, B, dtype=torch.int64)}, r"argument 'labels' .*\(L, B\) = \(4, 32\).*\(5, 32\)"),
        ({"B": 48}, "B must be a multiple of 32; got 48"),
        ({"H": -1}, "argument 'H' must be a non-negative int"),
        ({"lr": "fast"}, "argument 'lr' must be a float"),
        ({"W1c": None}, "argument 'W1c' must be a tensor; got NoneType"),
    ],
)  # fmt: skip
def test_a_buffer_that_differs_from_the_contract_is_refused(override, match) -> None:
    fn = _Recorder()
    with pytest.raises(TrainingError, match=match) as info:
        mlp1_contract.TRAIN.bind(fn, _mlp1_values(**override))
    assert isinstance(info.value, MiauditError)
    assert fn.calls == []  # nothing crossed into C


def test_overlapping_buffers_missing_arguments_and_step_counts_are_refused() -> None:
    values = _mlp1_values()
    fn = _Recorder()
    with pytest.raises(TrainingError, match="arguments 'P1' and 'm1' overlap in memory"):
        mlp1_contract.TRAIN.bind(fn, values | {"m1": values["P1"]})
    with pytest.raises(TrainingError, match=r"missing arguments \['rw'\]"):
        mlp1_contract.TRAIN.bind(fn, {k: v for k, v in values.items() if k != "rw"})
    call = mlp1_contract.TRAIN.bind(fn, values)
    with pytest.raises(TrainingError, match=r"L must be an int in 0\.\.4 \(the buffers\); got 5"):
        call(L=L + 1, t0=0)  # more steps than idx has rows: C would read past the buffer
    with pytest.raises(TrainingError, match=r"pass exactly the per-call arguments \['L', 't0'\]"):
        call(L=1)
    assert fn.calls == []
    # read-only buffers may share memory (two views of one pool); a written one may not
    k = Kernel("f", (i64("n", "n"), buf("a", torch.float32, ("n",), "a"), buf("b", torch.float32, ("n",), "b")))
    x = torch.zeros(4)
    assert k.check({"n": 4, "a": x, "b": x}) == {"n": 4}


def test_adam_step_needs_exactly_one_gradient() -> None:
    p, m, v = torch.zeros(8), torch.zeros(8), torch.zeros(8)
    values = {"n": 8, "p": p, "m": m, "v": v, "pc": None, "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
              "weight_decay": 0.0}  # fmt: skip
    with pytest.raises(TrainingError, match=r"give exactly one of \['g', 'gc'\]; got none"):
        adam_contract.ADAM_STEP.check(values | {"g": None, "gc": None})
    with pytest.raises(TrainingError, match=r"give exactly one of \['g', 'gc'\]; got \['g', 'gc'\]"):
        adam_contract.ADAM_STEP.check(values | {"g": torch.zeros(8), "gc": torch.zeros(8, dtype=torch.bfloat16)})
    assert adam_contract.ADAM_STEP.check(values | {"g": torch.zeros(8), "gc": None}) == {"n": 8}


def test_shape_expressions_are_arithmetic_only() -> None:
    with pytest.raises(ValueError, match="may only use names, integers and"):
        Kernel("f", (buf("a", torch.float32, ("__import__('os')",), "a"),))


# ---------------------------------------------------------------------------------------------
# the compiled libraries are loaded through their contracts
# ---------------------------------------------------------------------------------------------

needs_cc = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")


@needs_cc
def test_a_library_reporting_another_abi_is_not_loaded() -> None:
    kernels = native.load_native()
    assert kernels is not None, native.native_status()
    assert kernels.lib.miaudit_adam_step.argtypes == adam_contract.ADAM_STEP.argtypes()
    newer = dataclasses.replace(adam_contract.LIBRARY, abi=adam_contract.ABI + 1)
    abi = adam_contract.ABI
    with pytest.raises(OSError, match=rf"reports ABI {abi}, the contract expects {abi + 1}"):
        newer.open(str(kernels.path))


@needs_cc
def test_the_stacked_path_checks_its_adam_buffers_once_per_stack(digits_split, small_spec, fast_train, subsets,
                                                                 monkeypatch) -> None:  # fmt: skip
    X, y, pool, _ = digits_split
    counts = {"bind": 0, "step": 0}
    bind, step = native.NativeKernels.adam_buffers, native.NativeKernels.adam_step

    def counting_bind(self, *args, **kwargs):
        counts["bind"] += 1
        return bind(self, *args, **kwargs)

    def counting_step(self, *args, **kwargs):
        counts["step"] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(native.NativeKernels, "adam_buffers", counting_bind)
    monkeypatch.setattr(native.NativeKernels, "adam_step", counting_step)
    from miaudit.training.engine import train_batched

    (s,) = subsets(pool, [100])  # 4 steps per epoch
    train_batched(X, y, [s], seeds=[0], model=small_spec, train=fast_train)
    assert counts == {"bind": 1, "step": 4 * fast_train.epochs}  # f32: one part, bound once


# ---------------------------------------------------------------------------------------------
# the fused path's buffers satisfy the contract (a stand-in library records what C would get)
# ---------------------------------------------------------------------------------------------


class _FakeMLP1:
    """Stands in for the compiled library: reads each call's batch through the pointers, trains nothing."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.rows: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.copies = 0
        self._pos = {a.name: i for i, a in enumerate(mlp1_contract.TRAIN.args)}

    def miaudit_mlp1_copy_weights(self, *args: object) -> None:
        self.copies += 1

    def miaudit_mlp1_train(self, *args) -> None:
        p = self._pos
        n_steps, t0, batch = args[p["L"]], args[p["t0"]], args[p["B"]]
        self.steps.append((t0, n_steps))
        count = n_steps * batch
        self.rows.append(np.ctypeslib.as_array((ctypes.c_int64 * count).from_address(args[p["idx"]])).copy())
        self.weights.append(np.ctypeslib.as_array((ctypes.c_float * count).from_address(args[p["rw"]])).copy())


def test_fused_path_binds_contract_buffers_and_feeds_every_step(small_spec, fast_train, monkeypatch) -> None:
    fake = _FakeMLP1()
    monkeypatch.setattr(fused_path, "load_mlp1", lambda: native.MLP1Kernels(path=Path("fake.so"), lib=fake))
    spec = dataclasses.replace(small_spec, hidden=(64,))
    train = dataclasses.replace(fast_train, precision="bf16", epochs=5)
    n_pool, sizes = 120, [45, 100]  # 45: two batches, the second short and padded
    pool = torch.zeros(n_pool, fused_path.padded_width(spec.n_features), dtype=torch.bfloat16)
    sets = (np.arange(0, 45, dtype=np.int64), np.arange(20, 120, dtype=np.int64))
    job = ChunkJob(pool=pool, labels=torch.arange(n_pool) % 10, train_sets=sets, seeds=(3, 4), positions=(0, 1),
                   model=spec, train=train, precision="bf16", fused=True)  # fmt: skip
    models = train_chunk(job)
    assert fake.copies == 2
    per_model = [train.epochs * -(-n // train.batch_size) for n in sizes]  # 10 and 20 steps
    starts = [t0 for t0, _ in fake.steps]
    assert [n for _, n in fake.steps] == per_model
    assert starts == [0, 0]  # each model in one call of at most 32 steps, from step 0
    for s, rows, w in zip(sets, fake.rows, fake.weights, strict=True):
        real = rows[w > 0]
        counts = np.bincount(real, minlength=n_pool)
        assert (counts[s] == train.epochs).all() and counts.sum() == train.epochs * len(s)  # each record once an epoch
        np.testing.assert_allclose(w.reshape(-1, train.batch_size).sum(axis=1), 1.0, rtol=1e-6)
    # nothing trained: the weights come back exactly as initialised, through the blocked layout and back
    for model, seed in zip(models, (3, 4), strict=True):
        ws, bs = init_params(spec, torch_generator(seed, "train"))
        for got, want in zip(model.weights + model.biases, ws + bs, strict=True):
            np.testing.assert_array_equal(got, want.numpy())


def test_fused_path_feeds_long_runs_in_blocks_of_32_steps(small_spec, fast_train, monkeypatch) -> None:
    fake = _FakeMLP1()
    monkeypatch.setattr(fused_path, "load_mlp1", lambda: native.MLP1Kernels(path=Path("fake.so"), lib=fake))
    train = dataclasses.replace(fast_train, precision="bf16", epochs=7)
    pool = torch.zeros(200, fused_path.padded_width(small_spec.n_features), dtype=torch.bfloat16)
    job = ChunkJob(pool=pool, labels=torch.zeros(200, dtype=torch.int64), train_sets=(np.arange(200),), seeds=(0,),
                   positions=(0,), model=small_spec, train=train, precision="bf16", fused=True)  # fmt: skip
    train_chunk(job)
    assert fake.steps == [(0, 32), (32, 17)]  # 7 epochs of 7 batches
    assert [len(r) for r in fake.rows] == [32 * 32, 17 * 32]


def test_a_buffer_with_too_few_dimensions_is_refused_not_guessed() -> None:
    k = Kernel("f", (buf("a", torch.float32, ("m", "n"), "a", writes=True),), source="f.c")
    with pytest.raises(TrainingError, match=r"argument 'a' .*\(m, n\) = \?; got dtype torch.float32, shape \(3,\)"):
        k.check({"a": torch.zeros(3)})
    with pytest.raises(TrainingError, match=r"missing arguments \['a'\].*miaudit/training/_native/f.py declares"):
        k.check({})
    assert k.check({"a": torch.zeros(3, 2)}) == {"m": 3, "n": 2}

"""DP-SGD on the fused path (``miaudit_mlp1_train_dp`` in ``_native/mlp1.c``): the kernel driven directly.

A step's gradient is read back from Adam's first moment after one step (``m = (1 - beta1) g`` from zero, weight
decay 0: ``g`` to a relative 2^-24). Against references computed in float64 by autograd, one example at a time:

* noise off, nothing clipped: the sum of the examples' gradients over the expected batch size (what Opacus
  computes); everything clipped: each example's gradient scaled to ``C / (M ||g|| + 1e-6)``, ``M = 1 + 2^-8``.
  Tolerances: the output layer is float32 throughout, 1e-5 of the largest entry; the first layer's weight
  gradient sums bf16 roundings of the scaled hidden gradients (2^-9 relative each), 4e-3 of the largest entry.
* one example alone: its whole gradient's norm, as the kernel summed it, is at most ``C`` (the bound the
  accountant assumes: no tolerance beyond the read-back's) and at least ``C (1 - 2^-7)`` when clipped.
* an empty batch: the gradient is the model's noise for that step, value for value in ``noise_layout``'s order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miaudit.seeding import torch_generator
from miaudit.training._native.mlp1 import DP_SCRATCH, DP_STEP_ROWS, TILE, TRAIN_DP
from miaudit.training.batched import train_batched
from miaudit.training.engine.fused import _initial_state, fused_applies, padded_width, unblocks
from miaudit.training.native import load_mlp1
from miaudit.training.noise import NoiseStream
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.tuning import pinned

pytestmark = pytest.mark.skipif(
    load_mlp1() is None or not load_mlp1().dp,
    reason="no compiled DP-SGD steps here (mlp1.c's need AVX512-BF16); DP-SGD trains on the stacked path",
)

SPEC = ModelSpec(n_features=64, n_classes=10, hidden=(32,), name="small")
BETA1 = np.float32(0.9)


def one_step(
    X: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    *,
    clip: float,
    inv_batch: float,
    noise_scale: float = 0.0,
    key: int = 0,
    t0: int = 0,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """One DP-SGD step of a fresh model on the batch ``rows``: (its gradient per parameter, the initial state)."""
    kernels = load_mlp1()
    Fn, H, C = SPEC.n_features, SPEC.hidden[0], SPEC.n_classes
    D = padded_width(Fn)
    pool = torch.zeros(len(X), D, dtype=torch.bfloat16)
    pool[:, :Fn] = torch.from_numpy(X)
    pool[:, Fn] = 1.0
    state = _initial_state(kernels, SPEC, D, torch_generator(seed, "train"))
    initial = {k: v.clone() for k, v in state.items()}
    n = len(rows)
    B = max(DP_STEP_ROWS, -(-n // DP_STEP_ROWS) * DP_STEP_ROWS)
    sizes = {"D": D, "F": Fn, "H": H, "C": C, "B": B, "L": 1}
    batch = TRAIN_DP.allocate(["idx", "counts", "labels"], sizes)
    batch["idx"].zero_()
    batch["idx"][0, :n] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    batch["counts"][0] = n
    batch["labels"][0] = torch.from_numpy(y.astype(np.int64))[batch["idx"][0]]
    buffers = {"pool": pool, "pool_sq": pool.float().square().sum(1), **state, **batch}
    buffers |= TRAIN_DP.allocate(DP_SCRATCH, sizes)
    call = kernels.bind_train_dp(buffers, D=D, F=Fn, H=H, C=C, B=B, lr=1e-3, weight_decay=0.0, max_grad_norm=clip,
                                 inv_batch=inv_batch, noise_scale=noise_scale, key=key)  # fmt: skip
    assert call(L=1, t0=t0) == 0
    scale = np.float64(np.float32(1.0) - BETA1)
    g1 = unblocks(state["m1"], D, H, TILE).double().numpy() / scale
    g2 = state["m2"].double().numpy() / scale
    assert not g1[Fn + 1 :].any(), "the padding rows of the first layer got a gradient"
    grads = {"W1": g1[:Fn], "b1": g1[Fn], "W2": g2[: C * H].reshape(C, H).T, "b2": g2[C * H :]}
    return grads, initial


def reference(
    X: np.ndarray, y: np.ndarray, rows: np.ndarray, initial: dict[str, torch.Tensor], *, clip: float | None,
    inv_batch: float,
) -> dict[str, np.ndarray]:  # fmt: skip
    """float64 autograd, one example at a time, on the kernel's inputs (bf16 records and first-layer weights)."""
    Fn, H, C = SPEC.n_features, SPEC.hidden[0], SPEC.n_classes
    D = padded_width(Fn)
    W1 = unblocks(initial["P1"], D, H, TILE).bfloat16().double()  # the forward pass reads the bf16 copy
    w1, b1 = W1[:Fn].clone().requires_grad_(), W1[Fn].clone().requires_grad_()
    P2 = initial["P2"].double()
    w2 = P2[: C * H].view(C, H).T.clone().requires_grad_()
    b2 = P2[C * H :].clone().requires_grad_()
    xs = torch.from_numpy(X[rows]).bfloat16().double()
    total = [torch.zeros_like(p) for p in (w1, b1, w2, b2)]
    for x, label in zip(xs, y[rows], strict=True):
        logits = torch.relu(x @ w1 + b1) @ w2 + b2
        g = torch.autograd.grad(F.cross_entropy(logits[None], torch.tensor([int(label)])), (w1, b1, w2, b2))
        norm = float(torch.sqrt(sum((t * t).sum() for t in g)))
        factor = 1.0 if clip is None else min(1.0, clip / (norm * (1 + 2**-8) + 1e-6))
        total = [a + factor * t for a, t in zip(total, g, strict=True)]
    return {k: (t * inv_batch).numpy() for k, t in zip(("W1", "b1", "W2", "b2"), total, strict=True)}


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for name, tol in (("W1", 4e-3), ("b1", 4e-3), ("W2", 1e-5), ("b2", 1e-5)):
        scale = float(np.abs(want[name]).max())
        assert scale > 0
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("clip", [None, 0.05], ids=["nothing clipped", "everything clipped"])
def test_noise_off_step_equals_per_example_autograd(digits, clip: float | None) -> None:
    X, y = digits
    rows = np.arange(100, 137)  # 37 rows: padded to 40
    got, initial = one_step(X, y, rows, clip=1e6 if clip is None else clip, inv_batch=1 / 32)
    want = reference(X, y, rows, initial, clip=clip, inv_batch=1 / 32)
    _assert_close(got, want)
    if clip is not None:  # the clipped gradient is not the unclipped one (the test can tell them apart)
        unclipped = reference(X, y, rows, initial, clip=None, inv_batch=1 / 32)
        assert np.abs(unclipped["W2"] - want["W2"]).max() > 100 * 1e-5 * np.abs(want["W2"]).max()


def test_each_example_s_summed_gradient_is_within_the_clipping_bound(digits) -> None:
    X, y = digits
    clip = 0.01
    for r in range(40):
        got, initial = one_step(X, y, np.array([r]), clip=clip, inv_batch=1.0)
        norm = float(np.sqrt(sum((g * g).sum() for g in got.values())))
        assert clip * (1 - 2**-7) <= norm <= clip * (1 + 1e-6), (r, norm)
    # an example below the bound is not scaled
    (got, initial) = one_step(X, y, np.array([3]), clip=1e6, inv_batch=1.0)
    want = reference(X, y, np.array([3]), initial, clip=None, inv_batch=1.0)
    _assert_close(got, want)


def test_an_empty_batch_adds_the_model_s_noise_in_noise_layout_order(digits) -> None:
    X, y = digits
    key, step, scale = 0x1234_5678_9ABC, 7, 0.5
    got, _ = one_step(X, y, np.array([], dtype=np.int64), clip=1.0, inv_batch=1 / 32, noise_scale=scale, key=key,
                      t0=step)  # fmt: skip
    flat = np.concatenate([got["W1"].ravel(), got["b1"], got["W2"].ravel(), got["b2"]])
    want = torch.empty(SPEC.n_parameters)
    NoiseStream(key=key).fill(want, step, scale)
    np.testing.assert_allclose(flat, want.double().numpy(), rtol=1e-6, atol=0)
    other, _ = one_step(X, y, np.array([], dtype=np.int64), clip=1.0, inv_batch=1 / 32, noise_scale=scale, key=key,
                        t0=step + 1)  # fmt: skip
    assert np.abs(other["W1"] - got["W1"]).min() >= 0 and not np.allclose(other["W1"], got["W1"])


def test_fused_dp_trains_like_the_float32_stacked_path(digits) -> None:
    X, y = digits
    perm = np.random.default_rng(3).permutation(len(X))
    sets = [perm[k * 200 : k * 200 + 1000] for k in range(3)]
    test = perm[1300:]
    recipe = TrainSpec(epochs=8, batch_size=32, lr=3e-3, dp_epsilon=8.0)
    assert fused_applies(SPEC, recipe, "bf16")
    fused = train_batched(X, y, sets, seeds=[0, 1, 2], model=SPEC, train=recipe)
    stacked = train_batched(X, y, sets, seeds=[0, 1, 2], model=SPEC, train=dataclasses.replace(recipe, precision="f32"))
    acc_f = np.array([m.accuracy(X[test], y[test]) for m in fused])
    acc_s = np.array([m.accuracy(X[test], y[test]) for m in stacked])
    assert acc_f.min() > 0.7 and abs(acc_f.mean() - acc_s.mean()) < 0.02, (acc_f, acc_s)
    # the same samples and noise, other rounding: close weights, not the same ones
    for a, b in zip(fused, stacked, strict=True):
        assert a.privacy == b.privacy and a.privacy is not None
        diff = max(float(np.abs(u - v).max()) for u, v in zip(a.weights, b.weights, strict=True))
        assert 0 < diff < 0.1
    again = train_batched(X, y, sets[:1], seeds=[0], model=SPEC, train=recipe)
    for u, v in zip(fused[0].weights + fused[0].biases, again[0].weights + again[0].biases, strict=True):
        np.testing.assert_array_equal(u, v)


def test_models_of_the_fused_dp_path_have_cache_keys_of_their_own() -> None:
    from miaudit.studies.cache import train_key

    dp = TrainSpec(epochs=1, batch_size=32, dp_epsilon=4.0, engine="batched")
    fused = train_key(dp, SPEC)
    f32 = train_key(dataclasses.replace(dp, precision="f32"), SPEC)
    with pinned(stacked=True):
        pinned_key = train_key(dp, SPEC)
    assert (fused["precision"], fused["path"]) == ("bf16", f"fused {load_mlp1().kind}")
    assert f32["precision"] == "f32" and "path" not in f32 and pinned_key["precision"] == "f32"
    assert "path" not in train_key(dp, dataclasses.replace(SPEC, hidden=(24,)))  # no fused path for width 24


def test_the_fused_path_draws_the_stacked_path_s_poisson_batches(digits) -> None:
    from miaudit.training.dp import dp_schedule, sample_generator
    from miaudit.training.engine.dp_stacked import PoissonStream, _block
    from miaudit.training.engine.fused import FusedDPModel
    from miaudit.training.engine.planning import BLOCK_STEPS, ChunkJob

    X, y = digits
    train = TrainSpec(epochs=2, batch_size=16, dp_noise_multiplier=1.0, engine="batched")
    rows = np.arange(3, 403)
    pool = torch.zeros(len(X), padded_width(SPEC.n_features), dtype=torch.bfloat16)
    pool[:, : SPEC.n_features] = torch.from_numpy(X)
    pool[:, SPEC.n_features] = 1.0
    sch = dp_schedule(train, len(rows))
    job = ChunkJob(pool=pool, labels=torch.from_numpy(y.astype(np.int64)), train_sets=(rows,), seeds=(7,),
                   positions=(0,), model=SPEC, train=train, precision="bf16", fused=True, dp=(sch,))  # fmt: skip
    fused = FusedDPModel(load_mlp1(), job, 0)
    stacked = PoissonStream(rows, sample_generator(7), sch)
    seen = 0
    while fused.t < fused.stream.total:
        L = min(BLOCK_STEPS, fused.stream.total - fused.t)
        fused.run(L)
        idx, _w, counts, _widths = _block([stacked], L)
        assert torch.equal(fused.counts[:L], counts[0])
        for step in range(L):
            n = int(counts[0][step])
            assert torch.equal(fused.idx[step, :n], idx[step, 0, :n])
            seen += n
    assert seen > 0.9 * train.epochs * len(rows)  # about every record once per epoch


def test_a_short_fused_training_stays_within_rounding_of_the_float32_stacked_one(digits) -> None:
    X, y = digits
    recipe = TrainSpec(epochs=1, batch_size=32, lr=1e-3, dp_noise_multiplier=1.0, max_grad_norm=0.3)
    (fused,) = train_batched(X, y, [np.arange(600)], seeds=[3], model=SPEC, train=recipe)
    (f32,) = train_batched(
        X, y, [np.arange(600)], seeds=[3], model=SPEC, train=dataclasses.replace(recipe, precision="f32")
    )
    # 19 Adam steps of at most about lr each: the same samples, clipping and noise leave rounding (measured:
    # 3.8e-4 in W1, where Adam's normalised steps amplify it on the smallest gradients, 5e-5 elsewhere)
    for name, a, b, tol in zip(("W1", "W2", "b1", "b2"), fused.weights + fused.biases, f32.weights + f32.biases,
                               (1e-3, 2e-4, 2e-4, 2e-4), strict=True):  # fmt: skip
        assert float(np.abs(a - b).max()) < tol, name


def test_a_diverging_fused_dp_model_is_named_with_its_dp_steps() -> None:
    from miaudit.errors import TrainingError

    X = np.full((64, 64), 3e38, dtype=np.float32)  # finite, but products overflow
    y = np.arange(64) % 10
    train = TrainSpec(epochs=1, batch_size=8, dp_noise_multiplier=1.0)
    assert fused_applies(SPEC, train, "bf16")
    with pytest.raises(TrainingError, match=r"non-finite weights\) for model 0 after \d+ DP-SGD steps"):
        train_batched(X, y, [np.arange(64)], seeds=[0], model=SPEC, train=train)

"""The batched engine: independence, determinism, equivalence with the plain loop, precision, chunking."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.training import batched, hardware
from miaudit.training.batched import (
    TrainedBatch,
    bytes_per_model,
    plan_chunks,
    predict_proba_stacked,
    train_batched,
    train_many,
)
from miaudit.training.executors import InProcessExecutor, single_threaded_torch
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models, train_one


def _assert_same(a: MLPParams, b: MLPParams) -> None:
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(x, y)


def _differs(a: MLPParams, b: MLPParams) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True))


def _agreement(a: MLPParams, b: MLPParams, X: np.ndarray) -> float:
    return float(np.mean(a.logits(X).argmax(1) == b.logits(X).argmax(1)))


# ---------------------------------------------------------------------------------------------
# independence and determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_changing_one_models_data_changes_only_that_model(
    digits_split, small_spec, fast_train, subsets, precision
) -> None:
    X, y, pool, _ = digits_split
    train = dataclasses.replace(fast_train, precision=precision)
    sets = subsets(pool, [300, 300, 300, 300])
    before = train_batched(X, y, sets, seeds=[0, 1, 2, 3], model=small_spec, train=train)
    sets[2] = subsets(pool, [300], seed=99)[0]
    after = train_batched(X, y, sets, seeds=[0, 1, 2, 3], model=small_spec, train=train)
    for k in (0, 1, 3):
        _assert_same(before[k], after[k])
    assert _differs(before[2], after[2])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_same_weights_other_seed_other_weights(digits_split, fast_train, subsets, dropout) -> None:
    X, y, pool, _ = digits_split
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32,), dropout=dropout)
    (s,) = subsets(pool, [200])
    a, b, c = train_batched(X, y, [s, s, s], seeds=[7, 7, 8], model=spec, train=fast_train)
    _assert_same(a, b)
    assert _differs(a, c)
    (again,) = train_batched(X, y, [s], seeds=[7], model=spec, train=fast_train)
    _assert_same(a, again)  # and it does not depend on the other models in the batch


def test_result_does_not_depend_on_chunking_or_workers(digits_split, small_spec, fast_train, subsets, caplog) -> None:
    X, y, pool, _ = digits_split
    sets = subsets(pool, [150, 250, 200, 150, 300])
    seeds = [3, 4, 5, 6, 7]
    whole = train_batched(
        X, y, sets, seeds=seeds, model=small_spec, train=fast_train, executor=InProcessExecutor(n_workers=1)
    )
    per_model = bytes_per_model(small_spec, fast_train, "f32")
    calls: list[tuple[int, int]] = []
    chunked = train_batched(
        X,
        y,
        sets,
        seeds=seeds,
        model=small_spec,
        train=fast_train,
        memory_budget_bytes=per_model * 2 + 200_000,
        executor=InProcessExecutor(n_workers=2),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert len(calls) >= 3  # the budget forced several chunks
    assert calls[-1] == (5, 5) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    for a, b in zip(whole, chunked, strict=True):
        _assert_same(a, b)
    with caplog.at_level(logging.WARNING, logger="miaudit.training.engine.planning"):
        tiny = train_batched(
            X, y, sets[:2], seeds=seeds[:2], model=small_spec, train=fast_train, memory_budget_bytes=1000
        )
    assert "below one model's need" in caplog.text
    for a, b in zip(whole[:2], tiny, strict=True):
        _assert_same(a, b)


def test_plan_chunks_respects_budget_workers_and_groups_similar_models() -> None:
    steps = [10, 30, 10, 30, 20, 20, 10, 30]
    chunks = plan_chunks(steps, per_model_bytes=100, shared_bytes=50, budget_bytes=50 + 2 * 100 * 2, n_workers=2)
    assert sorted(k for c in chunks for k in c) == list(range(8))
    assert max(len(c) for c in chunks) <= 2
    assert [[steps[k] for k in c] for c in chunks] == [[10, 10], [10, 20], [20, 30], [30, 30]]
    # plenty of memory: one chunk per worker, capped by MAX_CHUNK
    assert len(plan_chunks([5] * 8, per_model_bytes=1, shared_bytes=0, budget_bytes=10**9, n_workers=2)) == 2
    big = plan_chunks([5] * 256, per_model_bytes=1, shared_bytes=0, budget_bytes=10**9, n_workers=2)
    assert max(len(c) for c in big) <= batched.MAX_CHUNK and sum(len(c) for c in big) == 256
    assert plan_chunks([], per_model_bytes=1, shared_bytes=0, budget_bytes=1, n_workers=2) == []
    # 18 models in chunks of at most 4 on 2 workers: 6 chunks of 3 (5 chunks would leave a worker idle)
    even = plan_chunks([5] * 18, per_model_bytes=1, shared_bytes=0, budget_bytes=10**9, n_workers=2, max_chunk=4)
    assert [len(c) for c in even] == [3] * 6
    odd = plan_chunks([5] * 7, per_model_bytes=1, shared_bytes=0, budget_bytes=10**9, n_workers=2, max_chunk=1)
    assert len(odd) == 7


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(1, 50), max_size=70), workers=st.integers(1, 4), budget_models=st.integers(0, 40))
def test_plan_chunks_properties(steps: list[int], workers: int, budget_models: int) -> None:
    chunks = plan_chunks(
        steps, per_model_bytes=10, shared_bytes=5, budget_bytes=5 + 10 * budget_models, n_workers=workers
    )
    assert sorted(k for c in chunks for k in c) == list(range(len(steps)))
    assert all(c for c in chunks)
    assert len(chunks) >= min(len(steps), workers)
    assert len(chunks) % workers == 0 or len(chunks) == len(steps)  # the workers finish together
    assert max((len(c) for c in chunks), default=0) <= max(1, min(batched.MAX_CHUNK, budget_models))
    flat = [steps[k] for c in chunks for k in c]
    assert flat == sorted(flat)  # similar step counts share chunks


def test_k256_fits_a_24_gib_machine() -> None:
    spec = ModelSpec.from_arch("simple", n_features=784, n_classes=10)
    train = TrainSpec()
    per_model = max(bytes_per_model(spec, train, p) for p in ("f32", "bf16"))
    pool = 60_000 * 785 * 4
    assert pool + 256 * per_model < 4 * 2**30  # all 256 at once would still fit in 4 GiB
    budget = int(min(batched.DEFAULT_BUDGET_CAP, 0.5 * 24 * 2**30))
    chunks = plan_chunks([1410] * 256, per_model_bytes=per_model, shared_bytes=pool, budget_bytes=budget, n_workers=2)
    assert pool + 2 * max(len(c) for c in chunks) * per_model < budget


# ---------------------------------------------------------------------------------------------
# equivalence with the plain loop, unequal sizes, precision
# ---------------------------------------------------------------------------------------------


def test_k1_f32_matches_the_plain_loop(digits_split, small_spec, converging_train, subsets) -> None:
    X, y, pool, test = digits_split
    sets = subsets(pool, [600, 600, 600], seed=1)
    engine = train_batched(X, y, sets, seeds=[0, 1, 2], model=small_spec, train=converging_train)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    with single_threaded_torch():  # two-thread tiny ops crawl when other processes share the cores
        loop = [train_one(Xt, yt, s, seed=k, model=small_spec, train=converging_train) for k, s in enumerate(sets)]
    acc_e = [m.accuracy(X[test], y[test]) for m in engine]
    acc_l = [m.accuracy(X[test], y[test]) for m in loop]
    assert min(acc_e) > 0.9 and min(acc_l) > 0.9
    assert abs(np.mean(acc_e) - np.mean(acc_l)) < 0.03
    # same initialisation and batches (dropout 0): the same model up to float32 rounding
    for a, b in zip(engine, loop, strict=True):
        assert _agreement(a, b, X[test]) > 0.99
        np.testing.assert_allclose(a.weights[0], b.weights[0], atol=1e-4)


def test_unequal_set_sizes_each_model_trains_as_if_alone(digits_split, small_spec, fast_train, subsets) -> None:
    X, y, pool, test = digits_split
    # 97 = 3 batches of 32 and one of 1; 7 is less than one batch; the others run more steps
    small, big1, big2, tiny = subsets(pool, [97, 500, 333, 7], seed=2)
    together = train_batched(X, y, [big1, small, big2, tiny], seeds=[1, 2, 3, 4], model=small_spec, train=fast_train)
    alone, tiny_alone = train_batched(X, y, [small, tiny], seeds=[2, 4], model=small_spec, train=fast_train)
    for a, b in zip(together[1].weights + together[1].biases, alone.weights + alone.biases, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    for a, b in zip(together[3].weights + together[3].biases, tiny_alone.weights + tiny_alone.biases, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # the short model saw exactly its own epochs: it matches the plain loop on its own set
    with single_threaded_torch():
        loop = train_one(torch.from_numpy(X), torch.from_numpy(y), small, seed=2, model=small_spec, train=fast_train)
    np.testing.assert_allclose(alone.weights[0], loop.weights[0], atol=1e-4)
    assert _agreement(alone, loop, X[test]) > 0.99


def test_unequal_sizes_with_dropout_match_alone(digits_split, fast_train, subsets) -> None:
    X, y, pool, _ = digits_split
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(48, 24), dropout=0.25)
    a, b = subsets(pool, [120, 410], seed=3)
    together = train_batched(X, y, [a, b], seeds=[5, 6], model=spec, train=fast_train)
    (alone,) = train_batched(X, y, [a], seeds=[5], model=spec, train=fast_train)
    _assert_same(together[0], alone)


def test_bf16_reaches_f32_accuracy(digits_split, small_spec, converging_train, subsets) -> None:
    X, y, pool, test = digits_split
    sets = subsets(pool, [600] * 4, seed=4)
    acc = {}
    for precision in ("f32", "bf16"):
        train = dataclasses.replace(converging_train, precision=precision)
        models = train_batched(X, y, sets, seeds=[10, 11, 12, 13], model=small_spec, train=train)
        acc[precision] = np.array([m.accuracy(X[test], y[test]) for m in models])
    assert acc["f32"].min() > 0.9 and acc["bf16"].min() > 0.9
    assert abs(acc["bf16"].mean() - acc["f32"].mean()) < 0.03


def test_auto_precision_follows_the_hardware(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert hardware.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert hardware.resolve_precision("auto") == "f32"
    assert hardware.resolve_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        hardware.resolve_precision("fp16")


def test_dropout_and_weight_decay_paths(digits_split, converging_train, subsets) -> None:
    X, y, pool, test = digits_split
    (s,) = subsets(pool, [600], seed=5)
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(64, 32), dropout=0.3)
    plain = ModelSpec(n_features=64, n_classes=10, hidden=(64, 32))
    decayed = dataclasses.replace(converging_train, weight_decay=0.01)
    (m_drop,) = train_batched(X, y, [s], seeds=[0], model=spec, train=converging_train)
    (m_plain,) = train_batched(X, y, [s], seeds=[0], model=plain, train=converging_train)
    (m_decay,) = train_batched(X, y, [s], seeds=[0], model=plain, train=decayed)
    assert m_drop.accuracy(X[test], y[test]) > 0.85
    assert m_decay.accuracy(X[test], y[test]) > 0.85
    assert _differs(m_drop, m_plain)
    norm = [float(sum((w**2).sum() for w in m.weights)) for m in (m_plain, m_decay)]
    assert norm[1] < 0.6 * norm[0]
    # weight decay follows torch.optim.Adam(weight_decay=...) (L2 added to the gradient): the plain loop
    # agrees after one epoch. Not after many: where the gradient is only the decay term, Adam's step is
    # lr * sign(p), so last-bit rounding differences between the fused kernels flip signs and grow.
    one = dataclasses.replace(decayed, epochs=1)
    (e1,) = train_batched(X, y, [s], seeds=[0], model=plain, train=one)
    (e1_plain,) = train_batched(X, y, [s], seeds=[0], model=plain, train=dataclasses.replace(one, weight_decay=0.0))
    with single_threaded_torch():  # two-thread tiny ops crawl when other processes share the cores
        loop = train_one(torch.from_numpy(X), torch.from_numpy(y), s, seed=0, model=plain, train=one)
    np.testing.assert_allclose(e1.weights[0], loop.weights[0], atol=1e-5)
    assert np.abs(e1_plain.weights[0] - loop.weights[0]).max() > 1e-4  # the decay makes a visible difference


def test_network_without_hidden_layers(digits_split, converging_train, subsets) -> None:
    X, y, pool, test = digits_split
    spec = ModelSpec(n_features=64, n_classes=10, hidden=())  # multinomial logistic regression
    (s,) = subsets(pool, [300], seed=6)
    (m32,) = train_batched(X, y, [s], seeds=[0], model=spec, train=converging_train)
    (m16,) = train_batched(
        X, y, [s], seeds=[0], model=spec, train=dataclasses.replace(converging_train, precision="bf16")
    )
    with single_threaded_torch():
        loop = train_one(torch.from_numpy(X), torch.from_numpy(y), s, seed=0, model=spec, train=converging_train)
    np.testing.assert_allclose(m32.weights[0], loop.weights[0], atol=1e-4)
    np.testing.assert_allclose(m32.biases[0], loop.biases[0], atol=1e-4)
    acc32, acc16 = m32.accuracy(X[test], y[test]), m16.accuracy(X[test], y[test])
    assert acc32 > 0.85 and abs(acc16 - acc32) < 0.03
    P = predict_proba_stacked([m32, m16], X[test])
    np.testing.assert_allclose(P[1], m16.predict_proba(X[test]), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# outputs for attacks, the training interface
# ---------------------------------------------------------------------------------------------


def test_predict_proba_stacked_matches_each_model(digits_split, small_spec, fast_train, subsets) -> None:
    X, y, pool, test = digits_split
    models = train_batched(X, y, subsets(pool, [200] * 3), seeds=[0, 1, 2], model=small_spec, train=fast_train)
    P = predict_proba_stacked(models, X[test], max_floats=5000)  # forces row and model chunks
    assert P.shape == (3, len(test), 10) and P.dtype == np.float64
    for k, m in enumerate(models):
        np.testing.assert_allclose(P[k], m.predict_proba(X[test]), atol=1e-6)
    np.testing.assert_allclose(P.sum(axis=2), 1.0)
    assert predict_proba_stacked(models, X[:5], dtype=np.float32).dtype == np.float32
    assert predict_proba_stacked([], X[:5]).shape == (0, 5, 0)
    other = train_batched(
        X, y, [pool[:50]], seeds=[0], model=ModelSpec(n_features=64, n_classes=10, hidden=(8,)), train=fast_train
    )
    with pytest.raises(DataError, match="one architecture"):
        predict_proba_stacked([*models, *other], X[:5])
    with pytest.raises(DataError, match=r"X must have shape \(n_samples, 64\)"):
        predict_proba_stacked(models, X[:5, :10])


def test_train_many_returns_what_attacks_need(digits_split, small_spec, fast_train, subsets) -> None:
    X, y, pool, test = digits_split
    sets = subsets(pool, [200, 300], seed=7)
    batch = train_many(X, y, sets, seeds=[0, 1], model=small_spec, train=fast_train)
    assert isinstance(batch, TrainedBatch) and len(batch) == 2 and batch.precision == "f32" and batch.seconds > 0
    for k, m in enumerate(batch.models):
        assert batch.train_accuracy[k] == pytest.approx(m.accuracy(X[sets[k]], y[sets[k]]))
    assert batch.predict_proba(X[test]).shape == (2, len(test), 10)
    acc = batch.accuracy(X[test], y[test])
    np.testing.assert_allclose(acc, [m.accuracy(X[test], y[test]) for m in batch.models])
    with pytest.raises(DataError, match="y must have shape"):
        batch.accuracy(X[test], y[:3])


def test_train_models_dispatches_to_the_engine(digits_split, small_spec, fast_train, subsets) -> None:
    X, y, pool, _ = digits_split
    sets = subsets(pool, [100, 150], seed=8)
    via_interface = train_models(X, y, sets, seeds=[1, 2], model=small_spec, train=fast_train)
    direct = train_batched(X, y, sets, seeds=[1, 2], model=small_spec, train=fast_train)
    for a, b in zip(via_interface, direct, strict=True):
        _assert_same(a, b)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seeds": [0]}, ValueError, "one seed per training set: 2 sets, 1 seeds"),
        ({"seeds": [0, -1]}, ValueError, r"seeds\[1\] must be between"),
        ({"seeds": [0, 1.5]}, TypeError, r"seeds\[1\] must be a non-negative integer"),
        ({"train_sets": [np.arange(5), np.array([], dtype=int)]}, DataError, r"train_sets\[1\] is empty"),
        ({"train_sets": [np.arange(5), np.array([0, 5000])]}, DataError, r"train_sets\[1\] has indices outside"),
        ({"train_sets": [np.arange(5), np.ones((2, 2), dtype=int)]}, DataError, r"train_sets\[1\] must be a 1-d"),
        ({"train_sets": np.arange(5), "seeds": [0] * 5}, TypeError, "sequence of index arrays"),
        ({"memory_budget_bytes": 0}, ValueError, "memory_budget_bytes must be a positive integer"),
        ({"X": np.zeros((10, 3), np.float32)}, DataError, r"X must have shape \(n_samples, 64\)"),
        ({"y": np.zeros(3, np.int64)}, DataError, "y must have shape"),
        ({"y": np.full(1797, 12)}, DataError, r"labels must be in \[0, 9\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(digits_split, small_spec, fast_train, kwargs, error, match) -> None:
    X, y, _, _ = digits_split
    args = {"X": X, "y": y, "train_sets": [np.arange(5), np.arange(5, 9)], "seeds": [0, 1]} | kwargs
    with pytest.raises(error, match=match):
        train_batched(args.pop("X"), args.pop("y"), args.pop("train_sets"), model=small_spec, train=fast_train, **args)


def test_divergence_raises_training_error(small_spec, fast_train) -> None:
    X = np.full((64, 64), 3e38, dtype=np.float32)
    y = np.arange(64) % 10
    with pytest.raises(TrainingError, match=r"diverged .* models \[0\].*lower the learning rate"):
        train_batched(X, y, [np.arange(64)], seeds=[0], model=small_spec, train=fast_train)


def test_empty_job_and_engine_output_types(digits_split, small_spec, fast_train) -> None:
    X, y, _, _ = digits_split
    assert train_batched(X, y, [], seeds=[], model=small_spec, train=fast_train) == []
    (m,) = train_batched(X, y, [np.arange(40)], seeds=[0], model=small_spec, train=fast_train)
    assert [w.dtype for w in m.weights] == [np.float32, np.float32]
    assert [w.shape for w in m.weights] == [(64, 32), (32, 10)] and [b.shape for b in m.biases] == [(32,), (10,)]


def test_planning_doctests() -> None:
    import doctest

    from miaudit.training.engine import planning

    result = doctest.testmod(planning)
    assert result.failed == 0 and result.attempted >= 2

"""Cache keys field by field: what determines a model changes its key and forces training; nothing else does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from miaudit.errors import DataError
from miaudit.studies.cache import Cache, CachingTrainer, array_digest, key_hash, model_key, train_key
from miaudit.training.hardware import resolve_precision
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

RNG = np.random.default_rng(0)
X = RNG.random((60, 5), dtype=np.float32)
Y = np.arange(60) % 3
IDX = np.arange(0, 40)
SPEC = ModelSpec(n_features=5, n_classes=3, hidden=(8,), name="a")
TRAIN = TrainSpec(epochs=2, batch_size=16, engine="loop")
X_FROZEN, Y_FROZEN = X.copy(), Y.copy()
X_FROZEN.flags.writeable = Y_FROZEN.flags.writeable = False


def _key(X=X, y=Y, idx=IDX, seed=1, model=SPEC, train=TRAIN) -> str:
    return key_hash(model_key(X, y, idx, seed=seed, model=model, train=train))


def _changed(arr: np.ndarray, i: int, value) -> np.ndarray:
    out = arr.copy()
    out.flat[i] = value
    return out


BASE = _key()


@pytest.mark.parametrize(
    ("what", "key"),
    [
        ("a feature of one training record", lambda: _key(X=_changed(X, 7, 0.123))),
        ("a label of one training record", lambda: _key(y=_changed(Y, 39, (Y[39] + 1) % 3))),
        ("the records' order", lambda: _key(idx=IDX[::-1].copy())),
        ("one more record", lambda: _key(idx=np.arange(41))),
        ("the seed", lambda: _key(seed=2)),
        ("the hidden widths", lambda: _key(model=dataclasses.replace(SPEC, hidden=(9,)))),
        ("the depth", lambda: _key(model=dataclasses.replace(SPEC, hidden=(8, 8)))),
        ("dropout", lambda: _key(model=dataclasses.replace(SPEC, dropout=0.5))),
        ("the number of classes", lambda: _key(model=dataclasses.replace(SPEC, n_classes=4))),
        ("epochs", lambda: _key(train=dataclasses.replace(TRAIN, epochs=3))),
        ("batch size", lambda: _key(train=dataclasses.replace(TRAIN, batch_size=8))),
        ("learning rate", lambda: _key(train=dataclasses.replace(TRAIN, lr=2e-3))),
        ("weight decay", lambda: _key(train=dataclasses.replace(TRAIN, weight_decay=1e-4))),
        ("the engine", lambda: _key(train=dataclasses.replace(TRAIN, engine="batched", precision="f32"))),
    ],
)
def test_every_field_that_determines_a_model_changes_its_key(what: str, key) -> None:
    assert key() != BASE, what


@pytest.mark.parametrize(
    ("what", "key"),
    [
        ("the architecture's display name", lambda: _key(model=dataclasses.replace(SPEC, name="b"))),
        ("records outside the training set", lambda: _key(X=_changed(X, 5 * 50, 9.0))),
        ("a copy of the same data", lambda: _key(X=X.copy(), y=Y.copy(), idx=IDX.copy())),
        ("labels as another integer type", lambda: _key(y=Y.astype(np.int32))),
        (
            "precision under the loop engine (it computes in f32)",
            lambda: _key(train=dataclasses.replace(TRAIN, precision="bf16")),
        ),
    ],
)
def test_what_does_not_determine_a_model_leaves_its_key(what: str, key) -> None:
    assert key() == BASE, what


def test_precision_is_resolved_in_the_key() -> None:
    batched = TrainSpec(engine="batched")
    assert train_key(batched)["precision"] == resolve_precision("auto")
    assert train_key(dataclasses.replace(batched, precision="f32")) != train_key(
        dataclasses.replace(batched, precision="bf16")
    )
    auto, resolved = (
        dataclasses.replace(batched, precision="auto"),
        dataclasses.replace(batched, precision=resolve_precision("auto")),
    )
    assert train_key(auto) == train_key(resolved)


def test_keys_resolve_auto_as_the_engine_will_for_the_workload(monkeypatch) -> None:
    """The model's key asks the tuner about the model's own shape: where tuning picks f32, the key says f32."""
    from miaudit.training import hardware

    seen = []

    def tuned(precision, *, model=None, train=None):
        seen.append((model, train))
        # the tuner's choice needs the whole workload: the model and its recipe
        return "f32" if model is not None and train is not None and model.hidden == (8,) else "bf16"

    monkeypatch.setattr(hardware, "resolve_precision", tuned)
    small = ModelSpec(n_features=4, n_classes=2, hidden=(8,))
    assert train_key(TrainSpec(engine="batched"), small)["precision"] == "f32"
    assert train_key(TrainSpec(engine="batched"))["precision"] == "bf16"
    X, y = np.zeros((6, 4), np.float32), np.array([0, 1] * 3)
    recipe = TrainSpec(engine="batched", batch_size=16)
    key = model_key(X, y, np.arange(4), seed=0, model=small, train=recipe)
    assert key["train"]["precision"] == "f32"
    assert any(m is small and t == recipe for m, t in seen)  # asked with the model and its recipe themselves


class _Counting:
    def __init__(self) -> None:
        self.trained: list[int] = []

    def __call__(self, X, y, sets, *, seeds, model, train, progress=None):
        self.trained.append(len(sets))
        return train_models(X, y, sets, seeds=seeds, model=model, train=train, progress=progress)


def test_a_changed_field_forces_training_and_an_equal_key_reuses(tmp_path) -> None:
    cache = Cache(tmp_path)
    base = _Counting()
    trainer = CachingTrainer(cache, base=base)
    (m1,) = trainer(X, Y, [IDX], seeds=[1], model=SPEC, train=TRAIN)
    assert base.trained == [1]
    fresh = CachingTrainer(cache, base=base)  # a new process: from disk, bitwise equal
    (m2,) = fresh(X.copy(), Y.copy(), [IDX.copy()], seeds=[1], model=dataclasses.replace(SPEC, name="b"), train=TRAIN)
    assert base.trained == [1]
    for a, b in zip(m1.weights + m1.biases, m2.weights + m2.biases, strict=True):
        np.testing.assert_array_equal(a, b)
    fresh(X, Y, [IDX], seeds=[1], model=SPEC, train=dataclasses.replace(TRAIN, epochs=3))
    fresh(X, _changed(Y, 0, 2), [IDX], seeds=[1], model=SPEC, train=TRAIN)
    assert base.trained == [1, 1, 1]
    assert fresh.n_trained == 2 and fresh.n_reused == 1


def test_duplicates_in_one_call_are_trained_once_and_returned_in_order(tmp_path) -> None:
    base = _Counting()
    trainer = CachingTrainer(Cache(tmp_path), base=base)
    sets = [IDX, np.arange(10, 50), IDX]
    models = trainer(X, Y, sets, seeds=[1, 1, 1], model=SPEC, train=TRAIN)
    assert base.trained == [2]
    assert models[0] is models[2] and models[0] is not models[1]
    with pytest.raises(ValueError, match="one seed per training set"):
        trainer(X, Y, sets, seeds=[1], model=SPEC, train=TRAIN)


def test_a_corrupt_entry_is_removed_and_retrained(tmp_path) -> None:
    cache = Cache(tmp_path)
    base = _Counting()
    CachingTrainer(cache, base=base)(X, Y, [IDX], seeds=[1], model=SPEC, train=TRAIN)
    (entry,) = (tmp_path / "models").iterdir()
    entry.write_bytes(b"not a safetensors file")
    CachingTrainer(cache, base=base)(X, Y, [IDX], seeds=[1], model=SPEC, train=TRAIN)
    assert base.trained == [1, 1]
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_entry_under_another_key_is_refused(tmp_path) -> None:
    cache = Cache(tmp_path)
    cache.put("evals", {"a": 1}, {"x": np.zeros(2)}, {})
    cache.path("evals", {"a": 1}).rename(cache.path("evals", {"a": 2}))
    with pytest.raises(DataError, match="does not belong to its key"):
        cache.get("evals", {"a": 2})


def test_array_digest_sees_content_dtype_and_shape() -> None:
    a = np.arange(6, dtype=np.float32)
    assert array_digest(a) == array_digest(a.copy())
    assert array_digest(a) != array_digest(a.astype(np.float64))
    assert array_digest(a) != array_digest(a.reshape(2, 3))
    assert array_digest(a) != array_digest(_changed(a, 5, 6.5))
    assert array_digest(a, a) != array_digest(a)


def test_rows_digest_is_the_digest_of_the_rows_and_follows_writes() -> None:
    from miaudit.studies.cache import rows_digest

    rng = np.random.default_rng(0)
    X = rng.random((50, 4), dtype=np.float32)
    y = rng.integers(0, 3, 50)
    rows = np.array([3, 1, 4, 1, 5])
    assert rows_digest(X, y, rows) == array_digest(X[rows], y[rows])
    assert rows_digest(X, y, rows, dtypes=("float64", "int32")) == array_digest(
        X[rows].astype(np.float64), y[rows].astype(np.int32)
    )
    before = rows_digest(X, y, rows)
    X[4, 0] += 1.0  # a writeable array: never answered from memory
    assert rows_digest(X, y, rows) != before
    X.flags.writeable = False
    y.flags.writeable = False
    frozen = rows_digest(X, y, rows)
    assert rows_digest(X, y, rows) == frozen == array_digest(X[rows], y[rows])
    assert rows_digest(X, y, rows[::-1]) != frozen  # the order of the rows counts
    assert rows_digest(X, y, rows[:4]) == array_digest(X[rows[:4]], y[rows[:4]])


def test_a_model_key_of_frozen_records_is_hashed_once(monkeypatch) -> None:
    import miaudit.studies.cache as cache_mod

    X, y = X_FROZEN, Y_FROZEN
    first = model_key(X, y, IDX, seed=1, model=SPEC, train=TRAIN)
    calls = []
    real = cache_mod.array_digest
    monkeypatch.setattr(cache_mod, "array_digest", lambda *a: calls.append(1) or real(*a))
    again = model_key(X, y, IDX, seed=2, model=SPEC, train=TRAIN)
    assert calls == [] and again["data"] == first["data"]
    assert first == model_key(X.copy(), y.copy(), IDX, seed=1, model=SPEC, train=TRAIN)  # the same content
    assert len(calls) == 1


def test_cache_doctests() -> None:
    import doctest

    import miaudit.studies.cache as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted >= 2

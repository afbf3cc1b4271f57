"""Cache-key details that mutation testing showed no test pinned: the JSON fallback of key_hash, the stored
key's values, the in-memory memo of models read from disk, and progress across training chunks."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.studies import cache as cache_mod
from miaudit.studies.cache import Cache, CachingTrainer, key_hash, train_key
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

RNG = np.random.default_rng(1)
X = RNG.random((60, 5), dtype=np.float32)
Y = np.arange(60) % 3
SPEC = ModelSpec(n_features=5, n_classes=3, hidden=(8,), name="a")
TRAIN = TrainSpec(epochs=1, batch_size=16, engine="loop")


class _Counting:
    def __init__(self) -> None:
        self.trained: list[int] = []

    def __call__(self, X, y, sets, *, seeds, model, train, progress=None):
        self.trained.append(len(sets))
        return train_models(X, y, sets, seeds=seeds, model=model, train=train, progress=progress)


def test_key_hash_reads_numpy_scalars_specs_and_pydantic_models_by_value() -> None:
    from miaudit.studies.schema import RunSpec

    assert key_hash({"n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)}) == key_hash(
        {"n": 3, "f": 0.5, "b": True}
    )
    assert key_hash({"spec": SPEC}) == key_hash({"spec": SPEC.to_dict()})
    run = RunSpec(engine="loop")
    assert key_hash({"run": run}) == key_hash({"run": run.model_dump()})
    assert key_hash({"run": run}) != key_hash({"run": RunSpec(engine="batched").model_dump()})
    with pytest.raises(TypeError, match="cannot hash a object"):
        key_hash({"x": object()})


def test_the_stored_key_names_the_engine_and_precision_that_run() -> None:
    # keys are written to disk: their values are the recipe's own words, so existing caches stay valid
    key = train_key(TrainSpec(engine="batched", precision="f32"))
    assert (key["engine"], key["precision"]) == ("batched", "f32")
    assert train_key(TrainSpec(engine="loop", precision="bf16"))["engine"] == "loop"
    assert train_key(TrainSpec(engine="loop", precision="bf16"))["precision"] == "f32"


def test_a_model_read_from_disk_is_kept_in_memory(tmp_path) -> None:
    cache = Cache(tmp_path)
    base = _Counting()
    (first,) = CachingTrainer(cache, base=base)(X, Y, [np.arange(40)], seeds=[1], model=SPEC, train=TRAIN)
    fresh = CachingTrainer(cache, base=base)
    (a,) = fresh(X, Y, [np.arange(40)], seeds=[1], model=SPEC, train=TRAIN)  # from disk
    (b,) = fresh(X, Y, [np.arange(40)], seeds=[1], model=SPEC, train=TRAIN)  # from memory
    assert base.trained == [1]
    assert b is a
    assert fresh.n_trained == 0 and fresh.n_reused == 2
    for w, v in zip(first.weights + first.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(w, v)


def test_progress_counts_models_across_training_chunks(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "TRAIN_CHUNK", 2)
    base = _Counting()
    calls: list[tuple[int, int]] = []
    sets = [np.arange(k, k + 30) for k in range(3)]
    CachingTrainer(Cache(tmp_path), base=base)(
        X, Y, sets, seeds=[1, 2, 3], model=SPEC, train=TRAIN, progress=lambda d, t: calls.append((d, t))
    )
    assert base.trained == [2, 1]
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_without_a_cache_models_are_shared_for_the_trainers_lifetime() -> None:
    base = _Counting()
    trainer = CachingTrainer(None, base=base)
    (a,) = trainer(X, Y, [np.arange(40)], seeds=[1], model=SPEC, train=TRAIN)
    (b,) = trainer(X, Y, [np.arange(40)], seeds=[1], model=SPEC, train=TRAIN)
    assert base.trained == [1]
    assert b is a
    assert trainer.n_trained == 1 and trainer.n_reused == 1


def test_on_train_is_told_the_models_and_seconds_of_each_training_call(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "TRAIN_CHUNK", 2)
    told: list[tuple[int, float]] = []
    trainer = CachingTrainer(Cache(tmp_path), base=_Counting(), on_train=lambda n, s: told.append((n, s)))
    sets = [np.arange(k, k + 30) for k in range(3)]
    trainer(X, Y, sets, seeds=[1, 2, 3], model=SPEC, train=TRAIN)
    assert [n for n, _ in told] == [2, 1]
    assert all(0.0 < s < 60.0 for _, s in told)
    trainer(X, Y, sets, seeds=[1, 2, 3], model=SPEC, train=TRAIN)  # all cached: no training call to report
    assert len(told) == 2


def test_a_dp_recipe_s_key_names_the_precision_it_trains_with(digits) -> None:
    from miaudit.training.engine.orchestration import train_many

    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32,), name="dp")
    dp = TrainSpec(epochs=1, batch_size=32, dp_noise_multiplier=1.0, engine="batched")
    ran = train_many(X, y, [np.arange(200)], seeds=[0], model=spec, train=dp).precision
    key = train_key(dp, spec)
    assert key["precision"] == ran
    assert ("path" in key) is (ran == "bf16")  # DP-SGD's only bf16 path is the fused one
    if "path" in key:  # and the key names the build the models came from
        from miaudit.training.native import load_mlp1

        assert key["path"] == f"fused {load_mlp1().kind}"
    f32 = train_key(
        TrainSpec(epochs=1, batch_size=32, dp_noise_multiplier=1.0, engine="batched", precision="f32"), spec
    )
    assert f32["precision"] == "f32" and "path" not in f32


def test_a_model_read_back_from_disk_keeps_its_privacy_record_and_its_stored_spec(tmp_path) -> None:
    dp = TrainSpec(epochs=1, batch_size=16, engine="loop", dp_noise_multiplier=1.0)
    cache = Cache(tmp_path)
    (first,) = CachingTrainer(cache)(X, Y, [np.arange(40)], seeds=[2], model=SPEC, train=dp)
    assert first.privacy is not None
    (key,) = CachingTrainer(cache).keys(X, Y, [np.arange(40)], seeds=[2], model=SPEC, train=dp)
    stored = cache.get("models", key)
    assert stored is not None and stored[1]["spec"] == SPEC.to_dict()
    fresh = CachingTrainer(cache, base=_refuse)  # a new trainer: no memo, the disk only
    (again,) = fresh(X, Y, [np.arange(40)], seeds=[2], model=SPEC, train=dp)
    assert again.privacy == first.privacy
    for u, v in zip(first.weights + first.biases, again.weights + again.biases, strict=True):
        np.testing.assert_array_equal(u, v)


def test_the_chunk_size_is_not_asked_when_everything_is_cached(tmp_path) -> None:
    cache = Cache(tmp_path)
    CachingTrainer(cache)(X, Y, [np.arange(30)], seeds=[1], model=SPEC, train=TRAIN)

    def no_cluster() -> int:
        raise AssertionError("the chunk size (a cluster's size) was asked although nothing is trained")

    (m,) = CachingTrainer(cache, base=_refuse, chunk_size=no_cluster)(
        X, Y, [np.arange(30)], seeds=[1], model=SPEC, train=TRAIN
    )
    assert m.weights[0].shape == (5, 8)


def _refuse(*args, **kwargs):
    raise AssertionError("a cached model was trained again")


def test_array_digest_refuses_object_arrays_whose_bytes_are_pointers() -> None:
    from miaudit.studies.cache import array_digest

    assert array_digest(np.array(["ab", "c"])) == array_digest(np.array(["ab", "c"]))  # fixed-width strings: fine
    with pytest.raises(TypeError, match="got dtype object"):
        array_digest(np.array(["ab", "c"], dtype=object))

"""Early stopping on a validation split: recipe fields, the split, the stopper, the loop, the engine choice."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from miaudit.errors import ConfigError, DataError, TrainingError
from miaudit.seeding import torch_generator
from miaudit.training import early_stopping
from miaudit.training.early_stopping import EarlyStopper, validation_loss, validation_size, validation_split
from miaudit.training.executors import InProcessExecutor, single_threaded_torch
from miaudit.training.networks import MLPParams, init_params
from miaudit.training.specs import ModelSpec, TrainSpec, spec_hash
from miaudit.training.trainer import resolve_engine, train_models, train_one, train_one_with_record

SPEC = ModelSpec(n_features=64, n_classes=10, hidden=(64,), name="es")
#: 60 digits, half held out, a high learning rate: the validation loss falls, bottoms out and rises
OVERFIT = TrainSpec(epochs=60, batch_size=16, lr=1e-2, early_stopping_patience=5, validation_fraction=0.5)


@pytest.fixture(scope="module")
def data(digits_split):
    X, y, pool, test = digits_split
    return X, y, torch.from_numpy(X), torch.from_numpy(y), pool, test


def _same(a: MLPParams, b: MLPParams) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.weights + a.biases, b.weights + b.biases, strict=True))


# ---------------------------------------------------------------------------------------------
# recipe fields: validation, cache keys of existing recipes unchanged
# ---------------------------------------------------------------------------------------------


def test_to_dict_omits_the_fields_at_their_defaults_and_the_fraction_while_off() -> None:
    base = {"epochs": 30, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0, "precision": "auto", "engine": "auto"}
    assert TrainSpec().to_dict() == base
    assert spec_hash(TrainSpec()) == "6682a3d3c244d9c3"  # the hash before these fields existed
    assert TrainSpec(validation_fraction=0.3).to_dict() == base  # unused without early stopping
    assert TrainSpec(early_stopping_patience=3).to_dict() == {**base, "early_stopping_patience": 3}
    on = TrainSpec(early_stopping_patience=3, validation_fraction=0.25).to_dict()
    assert on == {**base, "early_stopping_patience": 3, "validation_fraction": 0.25}
    assert spec_hash(TrainSpec(early_stopping_patience=3)) != spec_hash(TrainSpec(early_stopping_patience=4))
    assert TrainSpec(early_stopping_patience=2).early_stopping and not TrainSpec().early_stopping


def test_default_recipe_keeps_its_model_cache_key() -> None:
    from miaudit.studies.cache import key_hash, train_key

    assert key_hash(train_key(TrainSpec(precision="f32"))) == "a3f4665a07a5856fcf8cd601"
    assert key_hash(train_key(TrainSpec(precision="f32", validation_fraction=0.5))) == "a3f4665a07a5856fcf8cd601"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"early_stopping_patience": 0}, "early_stopping_patience must be an integer >= 1; got 0"),
        ({"early_stopping_patience": 2.5}, "early_stopping_patience must be an integer"),
        ({"early_stopping_patience": True}, "early_stopping_patience must be an integer"),
        ({"validation_fraction": 0.0}, r"validation_fraction must be a number in \(0, 1\); got 0.0"),
        ({"validation_fraction": 1}, r"validation_fraction must be a number in \(0, 1\); got 1"),
        ({"validation_fraction": -0.1}, "validation_fraction must be"),
        ({"validation_fraction": "0.1"}, "validation_fraction must be"),
        ({"early_stopping_patience": 3, "dp_epsilon": 4.0}, "early_stopping_patience cannot be combined with DP-SGD"),
        ({"early_stopping_patience": 3, "dp_noise_multiplier": 1.0}, r"\(dp_epsilon or dp_noise_multiplier\)"),
        ({"early_stopping_patience": 3, "engine": "batched"}, "early_stopping_patience needs the plain loop"),
    ],
)
def test_bad_fields_raise_config_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainSpec(**kwargs)


def test_train_recipe_accepts_the_fields_and_settings_round_trip() -> None:
    from miaudit.studies.experiment import Experiment
    from miaudit.studies.schema import RunSpec, Setting, TrainRecipe

    assert TrainRecipe().model_dump() == {"epochs": 30, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0}
    assert Setting().setting_id == "sattack-shokri-linear-svm-n6-t3000-call-simple"
    st = Setting(train={"epochs": 20, "early_stopping_patience": 4, "validation_fraction": 0.2})
    assert st.train.model_dump() == {
        "epochs": 20, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0,
        "early_stopping_patience": 4, "validation_fraction": 0.2,
    }  # fmt: skip
    again = Setting.model_validate(st.model_dump())
    assert again == st and again.setting_id == st.setting_id != Setting(train={"epochs": 20}).setting_id
    exp = Experiment.__new__(Experiment)
    exp.run_spec = RunSpec(engine="auto", precision="f32")
    assert exp.train_spec(st) == TrainSpec(
        epochs=20, precision="f32", early_stopping_patience=4, validation_fraction=0.2
    )
    for bad, match in [
        ({"early_stopping_patience": 0}, "greater than or equal to 1"),
        ({"validation_fraction": 1.0}, "less than 1"),
        ({"validation_fraction": 0}, "greater than 0"),
        ({"early_stopping_patience": 2, "dp_epsilon": 1.0}, "cannot be combined with DP-SGD"),
    ]:
        with pytest.raises(ValidationError, match=match):
            TrainRecipe(**bad)


# ---------------------------------------------------------------------------------------------
# the split and the stopper
# ---------------------------------------------------------------------------------------------


def test_validation_split_is_seeded_disjoint_and_covers_the_training_set() -> None:
    train_idx = np.random.default_rng(0).choice(10_000, 501, replace=False)
    fit, val = validation_split(train_idx, fraction=0.1, seed=3)
    assert len(val) == 50 and len(fit) == 451
    assert not set(fit) & set(val) and sorted([*fit, *val]) == sorted(train_idx)
    # each part keeps the order the records had in the training set
    pos = {v: i for i, v in enumerate(train_idx)}
    assert np.all(np.diff([pos[v] for v in fit]) > 0) and np.all(np.diff([pos[v] for v in val]) > 0)
    fit2, val2 = validation_split(train_idx, fraction=0.1, seed=3)
    assert np.array_equal(fit, fit2) and np.array_equal(val, val2)
    _, val_other = validation_split(train_idx, fraction=0.1, seed=4)
    assert not np.array_equal(np.sort(val), np.sort(val_other))


def test_validation_size_bounds_and_too_small_sets() -> None:
    assert [validation_size(n, 0.1) for n in (2, 3, 10, 14, 15, 3000)] == [1, 1, 1, 1, 2, 300]
    assert validation_size(10, 0.95) == 9
    with pytest.raises(DataError, match="needs at least 2 records; got 1"):
        validation_size(1, 0.5)


def test_stopper_keeps_the_lowest_loss_and_counts_patience() -> None:
    stopper = EarlyStopper(patience=2, n_validation=7)
    w = torch.zeros(3)
    stops = []
    for epoch, loss in enumerate([3.0, 2.0, float("nan"), 2.5, 1.0, 1.0, 1.5], start=1):
        w.fill_(epoch)
        stops.append(stopper.update(loss, [w]))
    # equal is not lower; nan is never an improvement
    assert stops == [False, False, False, True, False, False, True]
    rec = stopper.record()
    assert (rec.best_epoch, rec.epochs_run, rec.best_loss, rec.n_validation) == (5, 7, 1.0, 7)
    assert stopper.best[0].tolist() == [5.0, 5.0, 5.0]  # a copy, not the tensor trained on
    assert rec.stopped_early and rec.to_dict()["validation_losses"][4] == 1.0


def test_stopper_without_a_finite_loss_is_a_training_error() -> None:
    stopper = EarlyStopper(patience=1, n_validation=3)
    stopper.update(float("nan"), [torch.zeros(1)])
    with pytest.raises(TrainingError, match="validation loss was never finite"):
        stopper.record()


def test_validation_loss_is_plain_cross_entropy() -> None:
    g = torch_generator(0, "test")
    w, b = init_params(ModelSpec(n_features=5, n_classes=3, hidden=(4,)), g)
    X, y = torch.rand(9, 5, generator=g), torch.tensor([0, 1, 2] * 3)
    h = torch.relu(X @ w[0] + b[0]) @ w[1] + b[1]
    assert validation_loss(X, y, w, b) == pytest.approx(float(F.cross_entropy(h, y)), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# the loop: stops early, keeps the best, never trains on the held-out records
# ---------------------------------------------------------------------------------------------


def test_patience_stops_early_and_keeps_the_epoch_with_the_lowest_validation_loss(data) -> None:
    _, _, Xt, yt, pool, _ = data
    with single_threaded_torch():
        model, rec = train_one_with_record(Xt, yt, pool[:60], seed=0, model=SPEC, train=OVERFIT)
    assert rec is not None and rec.n_validation == 30
    assert rec.best_epoch < rec.epochs_run < OVERFIT.epochs  # measured: best 14, stopped after 19 of 60
    assert rec.epochs_run - rec.best_epoch == OVERFIT.early_stopping_patience
    assert rec.best_loss == min(rec.validation_losses) < rec.validation_losses[-1] - 0.05
    # the returned weights are those of the kept epoch: their validation loss is the recorded minimum
    _, val = validation_split(pool[:60], fraction=0.5, seed=0)
    got = validation_loss(Xt[val], yt[val], [torch.from_numpy(w) for w in model.weights],
                          [torch.from_numpy(b) for b in model.biases])  # fmt: skip
    assert got == pytest.approx(rec.best_loss, rel=1e-6)


def test_kept_model_is_the_model_trained_on_the_rest_for_the_kept_epochs(data) -> None:
    """Restore best, bitwise; the held-out records never reach a gradient."""
    _, _, Xt, yt, pool, _ = data
    with single_threaded_torch():
        model, rec = train_one_with_record(Xt, yt, pool[:60], seed=0, model=SPEC, train=OVERFIT)
        fit, val = validation_split(pool[:60], fraction=0.5, seed=0)
        plain = TrainSpec(epochs=rec.best_epoch, batch_size=16, lr=1e-2)
        same = train_one(Xt, yt, fit, seed=0, model=SPEC, train=plain)
        whole = train_one(Xt, yt, pool[:60], seed=0, model=SPEC, train=plain)
    assert len(fit) == len(val) == 30 and not set(fit) & set(val)
    assert _same(model, same)  # the same initialisation, batches and steps: the held-out half never trained it
    assert not _same(model, whole)


def test_same_seed_same_weights_other_seed_other_weights(data) -> None:
    X, y, *_, pool, _ = data
    recipe = TrainSpec(epochs=8, batch_size=32, lr=3e-3, early_stopping_patience=2)
    sets = [pool[:200], pool[200:330]]
    a = train_models(X, y, sets, seeds=[1, 2], model=SPEC, train=recipe)
    b = train_models(X, y, sets, seeds=[1, 2], model=SPEC, train=recipe)
    c = train_models(X, y, sets, seeds=[3, 2], model=SPEC, train=recipe)
    assert _same(a[0], b[0]) and _same(a[1], b[1])
    assert not _same(a[0], c[0]) and _same(a[1], c[1])


def _reference_loop(Xt, yt, train_idx, *, seed: int, model: ModelSpec, train: TrainSpec) -> list[np.ndarray]:
    """The plain loop as it was before early stopping existed (dropout, weight decay, label smoothing)."""
    gen = torch_generator(seed, "train")
    weights, biases = init_params(model, gen)
    params = [p.requires_grad_() for pair in zip(weights, biases, strict=True) for p in pair]
    opt = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    idx = torch.as_tensor(np.asarray(train_idx, dtype=np.int64))
    keep = 1.0 - model.dropout
    for _ in range(train.epochs):
        order = idx[torch.randperm(len(idx), generator=gen)]
        for start in range(0, len(idx), train.batch_size):
            batch = order[start : start + train.batch_size]
            h = Xt[batch]
            for i in range(len(weights)):
                h = h @ weights[i] + biases[i]
                if i < len(weights) - 1:
                    h = torch.relu(h)
                    if model.dropout > 0:
                        h = h * torch.bernoulli(torch.full_like(h, keep), generator=gen) / keep
            loss = F.cross_entropy(h, yt[batch], label_smoothing=train.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return [p.detach().numpy() for p in params]


def test_off_by_default_the_loop_is_bitwise_what_it_was(data) -> None:
    _, _, Xt, yt, pool, _ = data
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(32, 16), dropout=0.2)
    recipe = TrainSpec(epochs=3, batch_size=32, lr=3e-3, weight_decay=1e-3, label_smoothing=0.1, engine="loop")
    with single_threaded_torch():
        ref = _reference_loop(Xt, yt, pool[:150], seed=5, model=spec, train=recipe)
        model, rec = train_one_with_record(Xt, yt, pool[:150], seed=5, model=spec, train=recipe)
        unused = TrainSpec(epochs=3, batch_size=32, lr=3e-3, weight_decay=1e-3, label_smoothing=0.1, engine="loop",
                           validation_fraction=0.4)  # fmt: skip
        other = train_one(Xt, yt, pool[:150], seed=5, model=spec, train=unused)
    assert rec is None
    got = [p for pair in zip(model.weights, model.biases, strict=True) for p in pair]
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    assert _same(model, other)


# ---------------------------------------------------------------------------------------------
# the engines
# ---------------------------------------------------------------------------------------------


def test_auto_trains_early_stopping_in_the_loop_on_the_executor(data) -> None:
    X, y, Xt, yt, pool, _ = data
    recipe = TrainSpec(epochs=6, batch_size=32, lr=3e-3, early_stopping_patience=2, validation_fraction=0.2)
    assert resolve_engine(recipe) == "loop" and resolve_engine(TrainSpec()) == "batched"
    sets = [pool[:120], pool[500:620], pool[100:180]]  # overlapping sets: the pool of used records is shared
    calls: list[tuple[int, int]] = []
    two = train_models(X, y, sets, seeds=[0, 1, 2], model=SPEC, train=recipe, executor=InProcessExecutor(n_workers=2),
                       progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    one = train_models(X, y, sets, seeds=[0, 1, 2], model=SPEC, train=recipe, executor=InProcessExecutor(n_workers=1))
    with single_threaded_torch():
        loop = [train_one(Xt, yt, s, seed=k, model=SPEC, train=recipe) for k, s in enumerate(sets)]
    assert sorted(calls) == [(1, 3), (2, 3), (3, 3)]
    for a, b, c in zip(two, one, loop, strict=True):
        assert _same(a, b) and _same(a, c)


def test_the_batched_engine_refuses_early_stopping(data) -> None:
    from miaudit.training.batched import train_batched

    X, y, *_, pool, _ = data
    recipe = TrainSpec(epochs=2, early_stopping_patience=1)
    with pytest.raises(ConfigError, match="the batched engine does not run early stopping"):
        train_batched(X, y, [pool[:50]], seeds=[0], model=SPEC, train=recipe)
    with pytest.raises(ConfigError, match="cannot use an executor"):
        train_models(X, y, [pool[:50]], seeds=[0], model=SPEC, executor=InProcessExecutor(n_workers=1),
                     train=TrainSpec(epochs=2, early_stopping_patience=1, engine="loop"))  # fmt: skip


def test_a_one_record_training_set_cannot_hold_out_records(data) -> None:
    X, y, *_, pool, _ = data
    with pytest.raises(DataError, match="needs at least 2 records; got 1"):
        train_models(X, y, [pool[:1]], seeds=[0], model=SPEC, train=TrainSpec(epochs=2, early_stopping_patience=1))


def test_module_doctests() -> None:
    assert doctest.testmod(early_stopping).failed == 0

"""DP-SGD's recipe fields, its pure functions and its accounting against Opacus; label smoothing; the record."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from miaudit.errors import ConfigError, DataError
from miaudit.training import dp
from miaudit.training.dp import (
    DPSchedule,
    PrivacyRecord,
    clip_factors,
    dp_schedule,
    epsilon_spent,
    expected_batch_size,
    noise_for_epsilon,
    noise_layout,
    per_example_sq_norms,
    poisson_masks,
    privacy_record,
    sample_rate,
    smoothed_targets,
    steps_per_epoch,
)
from miaudit.training.networks import MLPParams
from miaudit.training.specs import ModelSpec, TrainSpec, spec_hash

opacus = pytest.importorskip("opacus")

# ---------------------------------------------------------------------------------------------
# recipe fields: validation, and cache keys of existing recipes unchanged
# ---------------------------------------------------------------------------------------------


def test_default_recipe_keeps_its_dict_and_hash() -> None:
    # the dict and hash of the recipe before DP-SGD existed (computed from that version of specs.py)
    assert TrainSpec().to_dict() == {
        "epochs": 30,
        "batch_size": 64,
        "lr": 0.001,
        "weight_decay": 0.0,
        "precision": "auto",
        "engine": "auto",
    }
    assert spec_hash(TrainSpec()) == "6682a3d3c244d9c3"
    assert spec_hash(TrainSpec(epochs=7, weight_decay=1e-3, engine="loop")) == "f014076f019c3b7c"


def test_default_recipe_keeps_its_model_cache_key() -> None:
    from miaudit.studies.cache import key_hash, train_key

    assert key_hash(train_key(TrainSpec(precision="f32"))) == "a3f4665a07a5856fcf8cd601"


def test_to_dict_names_only_fields_that_change_the_model() -> None:
    base = TrainSpec().to_dict()
    # DP-only fields change nothing without DP-SGD
    assert TrainSpec(max_grad_norm=3.0, dp_delta=1e-4, dp_accountant="prv").to_dict() == base
    assert TrainSpec(label_smoothing=0.1).to_dict() == {**base, "label_smoothing": 0.1}
    on = TrainSpec(dp_epsilon=2, max_grad_norm=0.5, dp_accountant="prv").to_dict()
    assert on == {**base, "dp_epsilon": 2.0, "max_grad_norm": 0.5, "dp_accountant": "prv"}
    assert TrainSpec(dp_noise_multiplier=0).to_dict() == {**base, "dp_noise_multiplier": 0.0}
    # 1 and 1.0 are one recipe
    assert spec_hash(TrainSpec(dp_epsilon=1)) == spec_hash(TrainSpec(dp_epsilon=1.0))
    assert spec_hash(TrainSpec(dp_epsilon=1)) != spec_hash(TrainSpec(dp_epsilon=2))
    assert TrainSpec(dp_epsilon=1).dp and TrainSpec(dp_noise_multiplier=0).dp and not TrainSpec().dp


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dp_epsilon": 1.0, "dp_noise_multiplier": 1.0}, "not both"),
        ({"dp_epsilon": 0.0}, "dp_epsilon must be"),
        ({"dp_epsilon": True}, "dp_epsilon must be"),
        ({"dp_noise_multiplier": -0.5}, "dp_noise_multiplier must be"),
        ({"dp_epsilon": 1.0, "dp_delta": 0.0}, r"dp_delta must be a number in \(0, 1\)"),
        ({"dp_epsilon": 1.0, "dp_delta": 1.0}, "dp_delta must be"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be a positive number"),
        ({"max_grad_norm": -1.0}, "max_grad_norm must be"),
        ({"dp_accountant": "gdp"}, "dp_accountant must be one of 'rdp', 'prv'"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be a number in \[0.0, 1.0\)"),
        ({"label_smoothing": -0.1}, "label_smoothing must be"),
    ],
)
def test_bad_dp_fields_raise_config_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainSpec(**kwargs)


def test_train_recipe_has_the_same_fields_validated_and_dumps_like_before() -> None:
    from miaudit.studies.schema import Setting, TrainRecipe

    assert TrainRecipe().model_dump() == {"epochs": 30, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0}
    # setting ids of recipes without the new fields are those of the version before them
    assert Setting().setting_id == "sattack-shokri-linear-svm-n6-t3000-call-simple"
    assert Setting(train=TrainRecipe(epochs=60)).setting_id == "sattack-shokri-linear-svm-n6-t3000-call-simple-5e049a4a"
    r = TrainRecipe(dp_epsilon=4, max_grad_norm=0.5, label_smoothing=0.1)
    assert r.model_dump()["dp_epsilon"] == 4.0 and r.model_dump()["label_smoothing"] == 0.1
    assert Setting(train=r).setting_id != Setting().setting_id
    for bad, match in [
        ({"dp_epsilon": 1, "dp_noise_multiplier": 1}, "not both"),
        ({"dp_accountant": "gdp"}, "unknown accountant 'gdp'"),
        ({"label_smoothing": 1.0}, "less than 1"),
        ({"max_grad_norm": 0}, "greater than 0"),
        ({"dp_delta": 1.0}, "less than 1"),
    ]:
        with pytest.raises(ValidationError, match=match):
            TrainRecipe(**bad)


def test_experiment_turns_the_recipe_into_the_same_train_spec() -> None:
    from miaudit.studies.experiment import Experiment
    from miaudit.studies.schema import RunSpec, Setting, TrainRecipe

    recipe = TrainRecipe(
        epochs=3, dp_epsilon=2, dp_delta=1e-4, max_grad_norm=0.7, dp_accountant="prv", label_smoothing=0.2
    )
    exp = Experiment.__new__(Experiment)
    exp.run_spec = RunSpec(engine="loop", precision="f32")
    spec = exp.train_spec(Setting(train=recipe))
    assert spec == TrainSpec(
        epochs=3, engine="loop", precision="f32", dp_epsilon=2.0, dp_delta=1e-4, max_grad_norm=0.7,
        dp_accountant="prv", label_smoothing=0.2,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# sampling as Opacus's DPDataLoader, expected batch size as its make_private
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "batch"), [(3000, 64), (640, 64), (1000, 1), (10, 64), (97, 32)])
def test_sampling_rate_steps_and_expected_batch_are_opacus_s(n: int, batch: int) -> None:
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(n, 1)), batch_size=batch)
    dp_loader = DPDataLoader.from_data_loader(loader)
    q = sample_rate(n, batch)
    assert q == dp_loader.sample_rate
    assert steps_per_epoch(q) == len(dp_loader)
    assert expected_batch_size(n, q) == int(len(loader.dataset) * (1 / len(loader)))  # PrivacyEngine.make_private
    sch = dp_schedule(TrainSpec(epochs=3, batch_size=batch, dp_noise_multiplier=1.0), n)
    assert sch.steps == 3 * len(dp_loader) and sch.sample_rate == q and sch.delta == 1 / n


def test_sample_rate_of_an_empty_set_is_a_data_error() -> None:
    with pytest.raises(DataError, match="at least one record"):
        sample_rate(0, 64)


def test_poisson_masks_are_seeded_row_major_and_sample_at_the_rate() -> None:
    g1, g2, g3 = (torch.Generator().manual_seed(s) for s in (5, 5, 6))
    block = poisson_masks(g1, 3000, 0.02, 40)
    rows = torch.cat([poisson_masks(g2, 3000, 0.02, 1) for _ in range(40)])
    assert torch.equal(block, rows)  # one block or step by step: the same samples
    assert not torch.equal(block, poisson_masks(g3, 3000, 0.02, 40))
    counts = block.sum(1).double()
    # mean 60 per step, sd sqrt(3000 * 0.02 * 0.98) = 7.7; the mean of 40 steps within 5 standard errors
    assert abs(counts.mean().item() - 60) < 5 * 7.7 / math.sqrt(40)
    assert counts.std().item() == pytest.approx(7.7, rel=0.4)


# ---------------------------------------------------------------------------------------------
# accounting: equal to Opacus's accountants
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_spent_equals_opacus_accountant(accountant: str) -> None:
    from opacus.accountants import create_accountant

    sigma, q, steps, delta = 1.1, 1 / 47, 470, 1 / 3000
    ref = create_accountant(mechanism=accountant)
    for _ in range(steps):  # as Opacus's optimiser hook counts a training, step by step
        ref.step(noise_multiplier=sigma, sample_rate=q)
    expected = ref.get_epsilon(delta=delta)
    got = epsilon_spent(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant=accountant)
    assert got == pytest.approx(expected, rel=1e-9)
    assert 0.5 < got < 5  # a real number, not a default
    other = epsilon_spent(noise_multiplier=2 * sigma, sample_rate=q, steps=steps, delta=delta, accountant=accountant)
    assert other < got


@pytest.mark.filterwarnings("ignore:Optimal order is the")
@pytest.mark.parametrize(("accountant", "target"), [("rdp", 1.0), ("rdp", 4.0), ("rdp", 8.0), ("prv", 2.0)])
def test_noise_for_epsilon_spends_at_most_the_target_and_close_to_it(accountant: str, target: float) -> None:
    q, steps, delta = 1 / 47, 1410, 1 / 3000
    sigma = noise_for_epsilon(epsilon=target, delta=delta, sample_rate=q, steps=steps, accountant=accountant)
    spent = epsilon_spent(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant=accountant)
    assert target - 0.011 <= spent <= target
    from opacus.accountants.utils import get_noise_multiplier

    assert sigma == get_noise_multiplier(
        target_epsilon=target, target_delta=delta, sample_rate=q, steps=steps, accountant=accountant
    )


def test_no_noise_is_infinite_epsilon_without_opacus(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus", None)  # as if the dp extra were not installed
    monkeypatch.setitem(sys.modules, "opacus.accountants", None)
    assert epsilon_spent(noise_multiplier=0.0, sample_rate=0.1, steps=10, delta=1e-3) == math.inf
    with pytest.raises(ConfigError, match=r"optional dependency opacus: pip install 'miaudit\[dp\]'"):
        epsilon_spent(noise_multiplier=0.9123, sample_rate=0.1, steps=10, delta=1e-3)
    with pytest.raises(ConfigError, match="optional dependency opacus"):
        noise_for_epsilon(epsilon=3.21, delta=1e-3, sample_rate=0.1, steps=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier must be"),
        ({"sample_rate": 0.0}, r"sample_rate must be in \(0, 1\]"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
        ({"accountant": "gdp"}, "accountant must be one of"),
    ],
)
def test_bad_accounting_arguments(kwargs, match) -> None:
    args = {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 10, "delta": 1e-3, "accountant": "rdp", **kwargs}
    with pytest.raises(ConfigError, match=match):
        epsilon_spent(**args)


def test_unreachable_epsilon_and_bad_target() -> None:
    with pytest.raises(ConfigError, match="cannot reach epsilon 1e-06"):
        noise_for_epsilon(epsilon=1e-6, delta=1e-5, sample_rate=1.0, steps=10)
    with pytest.raises(ConfigError, match="epsilon must be a positive finite number"):
        noise_for_epsilon(epsilon=math.inf, delta=1e-5, sample_rate=0.5, steps=1000)


def test_dp_schedule_calibrates_per_training_set_size() -> None:
    train = TrainSpec(epochs=2, batch_size=32, dp_epsilon=3.0)
    small, big = dp_schedule(train, 200), dp_schedule(train, 2000)
    assert small.delta == 1 / 200 and big.delta == 1 / 2000
    assert small.sample_rate == 1 / 7 and big.sample_rate == 1 / 63
    assert small.steps == 14 and big.steps == 126
    for sch in (small, big):
        assert privacy_record(sch).epsilon == pytest.approx(3.0, abs=0.011)
        assert privacy_record(sch).epsilon <= 3.0
    fixed = dp_schedule(TrainSpec(epochs=2, batch_size=32, dp_noise_multiplier=0.8, dp_delta=1e-5), 2000)
    assert fixed.noise_multiplier == 0.8 and fixed.delta == 1e-5 and fixed.noise_std == 0.8
    with pytest.raises(ConfigError, match="trains without DP-SGD"):
        dp_schedule(TrainSpec(), 100)
    with pytest.raises(ConfigError, match="default dp_delta 1/n is 1"):
        dp_schedule(TrainSpec(dp_noise_multiplier=1.0), 1)


def test_privacy_record_round_trips_and_rejects_malformed() -> None:
    rec = PrivacyRecord(epsilon=math.inf, delta=1e-3, noise_multiplier=0.0, sample_rate=0.1, steps=5,
                        accountant="rdp", max_grad_norm=0.1)  # fmt: skip
    assert rec.to_dict()["epsilon"] == "inf"
    assert PrivacyRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(DataError, match="malformed privacy record"):
        PrivacyRecord.from_dict({"epsilon": 1.0})


# ---------------------------------------------------------------------------------------------
# the arithmetic: clipping, per-example norms by the trick, label smoothing
# ---------------------------------------------------------------------------------------------


def test_clip_factors_are_opacus_s() -> None:
    norms = torch.tensor([0.0, 0.05, 0.1, 0.2, 10.0])
    expected = (0.1 / (norms + 1e-6)).clamp(max=1.0)
    assert torch.equal(clip_factors(norms, 0.1), expected)
    assert clip_factors(norms, 0.1)[3].item() == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("hidden", [(), (16,), (24, 16, 12)])
def test_per_example_norms_equal_materialised_per_example_gradients(hidden) -> None:
    g = torch.Generator().manual_seed(0)
    sizes = (20, *hidden, 5)
    ws = [(torch.randn(a, b, generator=g) / a**0.5).requires_grad_() for a, b in itertools.pairwise(sizes)]
    bs = [(torch.randn(b, generator=g) * 0.1).requires_grad_() for b in sizes[1:]]
    x, y = torch.randn(9, 20, generator=g), torch.randint(0, 5, (9,), generator=g)

    def forward(params, x):
        acts, h = [], x
        for i in range(len(ws)):
            acts.append(h)
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < len(ws) - 1:
                h = torch.relu(h)
        return acts, h

    def loss(params, x, y):
        return F.cross_entropy(forward(params, x.unsqueeze(0))[1], y.unsqueeze(0))

    params = tuple(p.detach() for pair in zip(ws, bs, strict=True) for p in pair)
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    explicit = torch.stack([gr.reshape(9, -1).norm(dim=1) for gr in grads], 1).norm(dim=1)
    # the trick: each layer's input and output gradient (from one ordinary backward of the summed loss)
    zs: list[torch.Tensor] = []
    acts, h = [], x
    for i in range(len(ws)):
        acts.append(h)
        z = h @ ws[i] + bs[i]
        z.retain_grad()
        zs.append(z)
        h = torch.relu(z) if i < len(ws) - 1 else z
    F.cross_entropy(h, y, reduction="sum").backward()
    trick = per_example_sq_norms(acts, [z.grad for z in zs], bias=[True] * len(ws)).sqrt()
    torch.testing.assert_close(trick, explicit, rtol=1e-5, atol=1e-6)
    assert explicit.min() > 0.01  # real gradients, not zeros


def test_per_example_norms_need_a_layer() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        per_example_sq_norms([], [], bias=[])


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_label_smoothing_gradient_equals_torch_cross_entropy(smoothing: float) -> None:
    from miaudit.training.engine.stacked import neg_targets

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    F.cross_entropy(logits, y, label_smoothing=smoothing).backward()
    expected = logits.grad
    # the loop's DP loss: -(targets * log_softmax), per example
    t = smoothed_targets(y, 4, smoothing)
    own = torch.func.grad(lambda z: -(t * torch.log_softmax(z, dim=-1)).sum() / 6)(logits.detach())
    torch.testing.assert_close(own, expected, rtol=1e-6, atol=1e-7)
    # the stacked path's d(loss)/d(logits) = softmax * w + neg_targets (w = 1/6 on every row)
    w = torch.full((1, 1, 6), 1 / 6)
    neg = neg_targets(y.view(1, 1, 6), w, 4, smoothing)[0, 0]  # (C, B)
    stacked = (torch.softmax(logits.detach(), dim=1).T * w[0, 0] + neg).T
    torch.testing.assert_close(stacked, expected, rtol=1e-6, atol=1e-7)


def test_smoothed_targets_are_distributions() -> None:
    t = smoothed_targets(torch.tensor([2, 0]), 5, 0.25)
    torch.testing.assert_close(t.sum(1), torch.ones(2))
    assert t[0, 2].item() == pytest.approx(0.8) and t[0, 0].item() == pytest.approx(0.05)


def test_noise_layout_covers_every_parameter_in_order() -> None:
    spec = ModelSpec(n_features=7, n_classes=3, hidden=(5, 4))
    layout = noise_layout(spec)
    assert [shape for _, shape in layout] == [(7, 5), (5,), (5, 4), (4,), (4, 3), (3,)]
    ends = [off + math.prod(shape) for off, shape in layout]
    assert [off for off, _ in layout] == [0, *ends[:-1]] and ends[-1] == spec.n_parameters


# ---------------------------------------------------------------------------------------------
# the record travels with the model
# ---------------------------------------------------------------------------------------------


def _tiny_model(privacy: PrivacyRecord | None) -> MLPParams:
    spec = ModelSpec(n_features=3, n_classes=2, hidden=(2,))
    return MLPParams(
        spec=spec,
        weights=(np.ones((3, 2), np.float32), np.ones((2, 2), np.float32)),
        biases=(np.zeros(2, np.float32), np.zeros(2, np.float32)),
        privacy=privacy,
    )


def test_privacy_record_survives_save_and_load(tmp_path) -> None:
    rec = PrivacyRecord(epsilon=2.5, delta=1e-4, noise_multiplier=1.2, sample_rate=0.02, steps=100,
                        accountant="prv", max_grad_norm=1.0)  # fmt: skip
    _tiny_model(rec).save(tmp_path / "m.safetensors")
    assert MLPParams.load(tmp_path / "m.safetensors").privacy == rec
    _tiny_model(None).save(tmp_path / "plain.safetensors")
    assert MLPParams.load(tmp_path / "plain.safetensors").privacy is None


def test_privacy_record_survives_the_model_cache(tmp_path, digits) -> None:
    from miaudit.studies.cache import Cache, CachingTrainer, model_key

    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    train = TrainSpec(epochs=1, batch_size=50, dp_noise_multiplier=1.3, engine="batched")
    sets, seeds = [np.arange(300), np.arange(100, 500)], [3, 4]
    first = CachingTrainer(Cache(tmp_path))(X, y, sets, seeds=seeds, model=spec, train=train)
    again = CachingTrainer(Cache(tmp_path))  # a new process: nothing in memory
    reread = again(X, y, sets, seeds=seeds, model=spec, train=train)
    assert again.n_reused == 2 and again.n_trained == 0
    for a, b, s in zip(first, reread, sets, strict=True):
        assert a.privacy is not None and b.privacy == a.privacy
        assert a.privacy.delta == 1 / len(s) and a.privacy.noise_multiplier == 1.3
        np.testing.assert_array_equal(a.weights[0], b.weights[0])
    key = model_key(X, y, sets[0], seed=3, model=spec, train=train)
    assert key["train"]["precision"] == "f32" and key["train"]["dp_noise_multiplier"] == 1.3


def test_dp_recipes_compute_and_are_keyed_in_float32(monkeypatch, digits) -> None:
    from miaudit.studies.cache import train_key
    from miaudit.training import hardware
    from miaudit.training.engine import orchestration
    from miaudit.training.engine.orchestration import train_many

    monkeypatch.setattr(hardware, "resolve_precision", lambda p, **kw: "bf16")  # a CPU where auto means bf16
    monkeypatch.setattr(orchestration, "resolve_precision", lambda p, **kw: "bf16")
    assert train_key(TrainSpec(dp_epsilon=1.0))["precision"] == "f32"
    assert train_key(TrainSpec())["precision"] == "bf16"
    X, y = digits
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    batch = train_many(
        X, y, [np.arange(200)], seeds=[0], model=spec, train=TrainSpec(epochs=1, dp_noise_multiplier=0.5)
    )
    assert batch.precision == "f32"


def test_schedule_is_picklable_for_workers() -> None:
    import pickle

    sch = DPSchedule(n=10, sample_rate=0.5, steps=4, expected_batch_size=5, noise_multiplier=1.0,
                     max_grad_norm=1.0, delta=0.1, accountant="rdp")  # fmt: skip
    assert pickle.loads(pickle.dumps(sch)) == sch  # our own object, in memory


def test_module_doctests() -> None:
    import doctest

    assert doctest.testmod(dp).failed == 0

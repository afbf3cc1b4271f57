"""Measured path choices: the search, the cache and its key, the rules, explicit precision, seeds and weights.

Every timing here is fake (an injected ``measure``), except where a real measurement is only checked for
giving a positive number: no test asserts a speed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pytest

from miaudit.errors import TrainingError
from miaudit.training import hardware, tuning
from miaudit.training.engine import orchestration
from miaudit.training.engine.orchestration import train_batched, train_many
from miaudit.training.engine.planning import MAX_CHUNK
from miaudit.training.executors import InProcessExecutor
from miaudit.training.native import load_mlp1, load_native
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.tuning import Candidate, choose_path, pick_fastest, pinned, rule_choice

SPEC = ModelSpec(n_features=64, n_classes=10, hidden=(16,), name="tiny")
TRAIN = TrainSpec(epochs=2, batch_size=32, lr=3e-3, engine="batched")

needs_fused_dp = pytest.mark.skipif(
    load_mlp1() is None or not load_mlp1().dp, reason="no compiled DP-SGD steps here (they need AVX512-BF16)"
)
#: the Adam step the fake timers favour, where it builds
COMPILED = "compiled" if load_native() is not None else "torch"


@pytest.fixture(autouse=True)
def _tuning_on(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Tuning on, a fresh tuning file per test, no choices remembered from other tests."""
    monkeypatch.delenv(tuning.TUNING_ENV, raising=False)
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    tuning._clear_memo()
    yield
    tuning._clear_memo()


class FakeTimer:
    """seconds per model-step = product of per-precision, per-Adam and per-chunk factors; counts calls."""

    def __init__(self, precision=None, adam=None, chunk=None, fused=5.0) -> None:
        self.precision = {"f32": 1.0, "bf16": 2.0} | (precision or {})
        self.adam = {"compiled": 1.0, "torch": 1.5} | (adam or {})
        self.chunk = {4: 1.3, 8: 1.1, 16: 1.0, 32: 1.2} | (chunk or {})
        self.fused = fused
        self.calls: list[Candidate] = []

    def __call__(self, c: Candidate, seconds: float) -> float:
        assert seconds > 0
        self.calls.append(c)
        if c.path == "fused":
            return self.fused
        return self.precision[c.precision] * self.adam[c.adam] * self.chunk[c.chunk]


def _grid(precisions=("f32", "bf16"), adams=("compiled", "torch"), chunks=(4, 8, 16, 32)) -> list[Candidate]:
    return [Candidate(p, "stacked", a, k) for p in precisions for a in adams for k in chunks]


# ---------------------------------------------------------------- the search


def test_the_faster_of_two_fake_candidates_is_picked() -> None:
    a, b = Candidate("f32", "stacked", "torch", 4), Candidate("bf16", "stacked", "compiled", 16)
    for times, expected in (({a: 2.0, b: 1.0}, b), ({a: 1.0, b: 2.0}, a)):
        calls: list[Candidate] = []

        def measure(c: Candidate, s: float, times=times, calls=calls) -> float:
            calls.append(c)
            return times[c]

        winner, best = pick_fastest([a, b], measure, seconds=0.1)
        assert winner == expected
        assert best == times and set(calls) == {a, b}


def test_the_search_finds_the_best_of_separable_costs() -> None:
    fake = FakeTimer(precision={"f32": 1.0, "bf16": 0.6}, adam={"compiled": 1.2, "torch": 1.0}, chunk={8: 0.9})
    winner, best = pick_fastest(_grid(), fake, seconds=0.1)
    assert winner == Candidate("bf16", "stacked", "torch", 8)
    assert best[winner] == pytest.approx(0.6 * 1.0 * 0.9)
    assert len(set(fake.calls)) < len(_grid())  # staged: not every candidate needs timing
    fake = FakeTimer()  # f32, compiled Adam, chunks of 16
    assert pick_fastest(_grid(), fake, seconds=0.1)[0] == Candidate("f32", "stacked", "compiled", 16)


def test_the_first_candidate_stays_unless_another_is_3_percent_faster_and_failures_are_never_chosen(caplog) -> None:
    a, b, c = (Candidate("f32", "stacked", "torch", k) for k in (4, 8, 16))
    assert pick_fastest([b, a], lambda c, s: 1.0, seconds=0.1)[0] == b
    assert pick_fastest([b, a], lambda c, s: {a: 1.0, b: 1.02}[c], seconds=0.1)[0] == b
    assert pick_fastest([b, a], lambda c, s: {a: 1.0, b: 1.04}[c], seconds=0.1)[0] == a
    assert pick_fastest([c, b, a], lambda x, s: {a: 1.0, b: 1.01, c: 2.0}[x], seconds=0.1)[0] == a
    assert pick_fastest([c, b, a], lambda x, s: {a: 1.0, b: 1.05, c: 1.02}[x], seconds=0.1)[0] == c  # always timed

    def flaky(cand: Candidate, s: float) -> float:
        if cand == a:
            raise RuntimeError("out of something")
        return {b: -1.0, c: 3.0}[cand]

    with caplog.at_level(logging.WARNING, logger="miaudit.training.tuning"):
        winner, best = pick_fastest([a, b, c], flaky, seconds=0.1)
    assert winner == c and math.isinf(best[a]) and math.isinf(best[b])
    assert "timing f32 stacked, PyTorch Adam, chunks of 4 failed (out of something)" in caplog.text
    assert pick_fastest([a], flaky, seconds=0.1) == (a, {})  # one candidate: nothing to time


def test_search_errors() -> None:
    with pytest.raises(ValueError, match="need at least one candidate and seconds > 0; got 0 candidates"):
        pick_fastest([], lambda c, s: 1.0)
    with pytest.raises(ValueError, match="seconds=0"):
        pick_fastest(_grid(), lambda c, s: 1.0, seconds=0)


# ---------------------------------------------------------------- the cache


def test_the_choice_is_measured_once_cached_on_disk_and_reused() -> None:
    fake = FakeTimer(precision={"bf16": 0.5}, adam={"torch": 0.8}, chunk={4: 0.7})
    first = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert first.source == "measured" and first.adam == "torch" and first.max_chunk == 4
    n = len(fake.calls)
    assert n > 0
    assert choose_path(model=SPEC, train=TRAIN, measure=fake) is first  # same process: fixed, not re-timed
    path = tuning.tuning_file()
    assert path.parent.name == "cache" and path.name == "tuning.json"
    data = json.loads(path.read_text())
    (entry,) = data["entries"].values()
    key = entry["key"]
    assert key["layers"] == [64, 16, 10] and key["batch_size"] == 32 and key["dropout"] is False
    assert key["cpu"] == hardware.cpu_model() and key["torch"] and key["kernels"] and key["precision"] == "auto"
    assert entry["choice"] == {"precision": first.precision, "path": "stacked", "adam": "torch", "max_chunk": 4}
    tuning._clear_memo()  # a new process: reads the file, times nothing
    again = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert len(fake.calls) == n
    assert again.source == "cache" and (again.precision, again.adam, again.max_chunk) == (first.precision, "torch", 4)
    assert again.reason.startswith("cached choice (measured ") and again.timings == first.timings


def test_choices_of_another_tuner_version_are_timed_again(monkeypatch, caplog) -> None:
    fake = FakeTimer()
    choose_path(model=SPEC, train=TRAIN, measure=fake)
    n = len(fake.calls)
    monkeypatch.setattr(tuning, "TUNER_VERSION", tuning.TUNER_VERSION + 1)
    tuning._clear_memo()
    with caplog.at_level(logging.WARNING, logger="miaudit.training.tuning"):
        assert choose_path(model=SPEC, train=TRAIN, measure=fake).source == "measured"
    assert len(fake.calls) > n and not caplog.text  # not damaged: another key
    assert len(json.loads(tuning.tuning_file().read_text())["entries"]) == 2


def test_the_key_holds_the_workload_shape() -> None:
    fake = FakeTimer()
    choose_path(model=SPEC, train=TRAIN, measure=fake)
    shapes = [
        (dataclasses.replace(SPEC, hidden=(32,)), TRAIN),
        (dataclasses.replace(SPEC, dropout=0.25), TRAIN),
        (SPEC, dataclasses.replace(TRAIN, batch_size=64)),
        (SPEC, dataclasses.replace(TRAIN, precision="f32")),
    ]
    for model, train in shapes:
        n = len(fake.calls)
        assert choose_path(model=model, train=train, measure=fake).source == "measured"
        assert len(fake.calls) > n
    # what only changes the number of steps shares the choice
    n = len(fake.calls)
    other = dataclasses.replace(TRAIN, epochs=30, lr=1e-3, weight_decay=1e-4)
    assert choose_path(model=dataclasses.replace(SPEC, name="other"), train=other, measure=fake).source == "measured"
    assert len(fake.calls) == n
    assert len(json.loads(tuning.tuning_file().read_text())["entries"]) == 5


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"format": 99, "entries": {}}', "[1, 2]", '{"format": 1, "entries": []}'],
)
def test_a_damaged_cache_file_is_ignored_with_a_warning_and_rewritten(content: str, caplog) -> None:
    path = tuning.tuning_file()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    fake = FakeTimer()
    with caplog.at_level(logging.WARNING, logger="miaudit.training.tuning"):
        choice = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert "ignoring the damaged tuning cache" in caplog.text and "measuring again and rewriting it" in caplog.text
    assert choice.source == "measured" and fake.calls
    data = json.loads(path.read_text())
    assert data["format"] == 1 and list(data["entries"]) == [choice.key]


def test_a_damaged_entry_is_measured_again(caplog) -> None:
    fake = FakeTimer()
    choice = choose_path(model=SPEC, train=TRAIN, measure=fake)
    path = tuning.tuning_file()
    data = json.loads(path.read_text())
    data["entries"][choice.key]["choice"]["path"] = "warp"
    path.write_text(json.dumps(data))
    tuning._clear_memo()
    n = len(fake.calls)
    with caplog.at_level(logging.WARNING, logger="miaudit.training.tuning"):
        again = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert "ignoring a damaged entry of the tuning cache" in caplog.text and "warp" in caplog.text
    assert again.source == "measured" and len(fake.calls) > n


def test_an_unwritable_cache_keeps_the_choice_for_the_process(monkeypatch, tmp_path, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(blocker))  # tuning.json would go under a file
    fake = FakeTimer()
    with caplog.at_level(logging.WARNING, logger="miaudit.training.tuning"):
        choice = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert "cannot write the tuning cache" in caplog.text
    assert choose_path(model=SPEC, train=TRAIN, measure=fake) is choice


def test_tune_force_times_again() -> None:
    fake = FakeTimer()
    first = tuning.tune(model=SPEC, train=TRAIN, measure=fake)
    n = len(fake.calls)
    assert tuning.tune(model=SPEC, train=TRAIN, measure=fake) is first and len(fake.calls) == n
    slow_f32 = FakeTimer(precision={"f32": 9.0, "bf16": 1.0}, adam={"compiled": 3.0, "torch": 1.0})
    forced = tuning.tune(model=SPEC, train=dataclasses.replace(TRAIN, precision="f32"), measure=slow_f32, force=True)
    assert forced.precision == "f32" and forced.adam == "torch" and forced.source == "measured"


# ---------------------------------------------------------------- rules, explicit precision, DP


def test_tuning_off_gives_the_old_rules(monkeypatch) -> None:
    monkeypatch.setenv(tuning.TUNING_ENV, "off")
    fake = FakeTimer(precision={"bf16": 0.1}, adam={"torch": 0.1})
    choice = choose_path(model=SPEC, train=TRAIN, measure=fake)
    assert not fake.calls and not tuning.tuning_file().exists()
    assert choice.source == "rules" and choice.reason.startswith("MIAUDIT_TUNING=off: fixed rules")
    assert choice.precision == hardware.resolve_precision("auto")
    assert choice.adam == ("compiled" if load_native() is not None else "torch")
    assert choice.max_chunk == (1 if choice.fused else MAX_CHUNK)
    assert choice == rule_choice(model=SPEC, train=TRAIN, why="MIAUDIT_TUNING=off")
    for p in ("auto", "f32", "bf16"):
        assert hardware.resolve_precision(p, model=SPEC, train=TRAIN) == hardware.resolve_precision(p)
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert choose_path(model=SPEC, train=TRAIN).precision == "bf16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert choose_path(model=SPEC, train=TRAIN).precision == "f32"


def test_an_explicit_precision_is_never_overridden(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)  # bf16 is a candidate of auto
    bf16_fast = FakeTimer(precision={"f32": 10.0, "bf16": 1.0})
    f32_fast = FakeTimer(precision={"f32": 1.0, "bf16": 10.0})
    assert choose_path(model=SPEC, train=TRAIN, measure=bf16_fast).precision == "bf16"
    assert hardware.resolve_precision("auto", model=SPEC, train=TRAIN) == "bf16"
    explicit_f32 = dataclasses.replace(TRAIN, precision="f32")
    assert choose_path(model=SPEC, train=explicit_f32, measure=bf16_fast).precision == "f32"
    assert {c.precision for c in bf16_fast.calls[-3:]} == {"f32"}
    explicit_bf16 = dataclasses.replace(TRAIN, precision="bf16")
    assert choose_path(model=SPEC, train=explicit_bf16, measure=f32_fast).precision == "bf16"
    assert hardware.resolve_precision("f32", model=SPEC, train=TRAIN) == "f32"
    assert hardware.resolve_precision("bf16", model=SPEC, train=TRAIN) == "bf16"
    # the engine trains in the precision asked for
    X, y = np.random.default_rng(0).random((200, 64), dtype=np.float32), np.arange(200) % 10
    batch = train_many(X, y, [np.arange(100)], seeds=[1], model=SPEC, train=dataclasses.replace(explicit_f32, epochs=1))
    assert batch.precision == "f32"


def test_without_native_bf16_auto_times_only_f32(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    fake = FakeTimer(precision={"f32": 10.0, "bf16": 1.0})
    assert choose_path(model=SPEC, train=TRAIN, measure=fake).precision == "f32"
    assert {c.precision for c in fake.calls} == {"f32"}


def test_dp_recipes_are_not_tuned_and_train_in_float32_where_the_fused_path_does_not_apply(digits) -> None:
    fake = FakeTimer(precision={"bf16": 0.1})
    dp = dataclasses.replace(TRAIN, dp_noise_multiplier=0.5, epochs=1)  # hidden width 16: no fused path
    choice = choose_path(model=SPEC, train=dp, measure=fake)
    assert choice.precision == "f32" and choice.path == "stacked" and choice.source == "rules"
    assert choice.reason.startswith("DP-SGD (not tuned)") and not fake.calls
    assert hardware.resolve_precision("auto", model=SPEC, train=dp) == "f32"
    X, y = digits
    batch = train_many(X, y, [np.arange(200), np.arange(100, 300)], seeds=[0, 1], model=SPEC, train=dp)
    assert batch.precision == "f32" and batch.models[0].privacy is not None
    assert not tuning.tuning_file().exists()


@needs_fused_dp
def test_dp_recipes_take_the_fused_path_in_bf16_where_it_applies(digits, monkeypatch) -> None:
    wide = dataclasses.replace(SPEC, hidden=(32,))
    dp = dataclasses.replace(TRAIN, dp_noise_multiplier=0.5, epochs=1)
    fake = FakeTimer(precision={"f32": 0.1})
    choice = choose_path(model=wide, train=dp, measure=fake)
    assert (choice.precision, choice.path, choice.max_chunk, choice.source) == ("bf16", "fused", 1, "rules")
    assert not fake.calls
    X, y = digits
    batch = train_many(X, y, [np.arange(200)], seeds=[0], model=wide, train=dp)
    assert batch.precision == "bf16" and batch.models[0].privacy is not None
    # float32 asked for, or pinned to the stacked path: the stacked path, in float32 (its only precision)
    f32 = choose_path(model=wide, train=dataclasses.replace(dp, precision="f32"))
    assert (f32.precision, f32.path) == ("f32", "stacked")
    with tuning.pinned(stacked=True):
        pinned = choose_path(model=wide, train=dp)
    assert (pinned.precision, pinned.path) == ("f32", "stacked")
    # no bf16 units: float32, stacked
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    assert (choose_path(model=wide, train=dp).precision, choose_path(model=wide, train=dp).path) == ("f32", "stacked")


# ---------------------------------------------------------------- the engine follows the choice; weights


class RecordingExecutor(InProcessExecutor):
    def __init__(self, n_workers: int = 1) -> None:
        super().__init__(n_workers=n_workers)
        self.jobs: list = []

    def map(self, fn, jobs, *, on_done=None):
        self.jobs.extend(jobs)
        return super().map(fn, jobs, on_done=on_done)


def _fit(X, y, sets, seeds, train, executor=None):
    return train_batched(X, y, sets, seeds=seeds, model=SPEC, train=train, executor=executor)


def test_the_engine_trains_on_the_chosen_path(digits) -> None:
    X, y = digits
    sets = [np.arange(k * 50, k * 50 + 300) for k in range(9)]
    f32 = dataclasses.replace(TRAIN, precision="f32", epochs=1)
    tuning.tune(model=SPEC, train=f32, measure=FakeTimer(adam={"torch": 0.5}, chunk={4: 0.5}))
    ex = RecordingExecutor()
    _fit(X, y, sets, list(range(9)), f32, ex)
    assert [len(j.seeds) for j in ex.jobs] == [3, 3, 3]  # at most 4 per chunk
    assert {j.adam for j in ex.jobs} == {"torch"} and {j.precision for j in ex.jobs} == {"f32"}
    with pinned(adam="compiled", max_chunk=16):
        ex = RecordingExecutor()
        _fit(X, y, sets, list(range(9)), f32, ex)
        assert len(ex.jobs) == 1 and ex.jobs[0].adam == "compiled"
        assert choose_path(model=SPEC, train=f32).source == "pinned"
    assert choose_path(model=SPEC, train=f32).source == "measured"


def test_same_seed_same_weights_whatever_the_tuner_chose_when_the_path_is_the_same(monkeypatch, digits) -> None:
    """Chunks differ (the tuner's at most 4: 4 chunks, 2 per worker; the rules' 16: 2); precision and Adam the same."""
    X, y = digits
    sets = [np.arange(k * 40, k * 40 + 500 + 7 * k) for k in range(10)]  # unequal sizes: models leave the stack
    seeds = list(range(11, 21))
    f32 = dataclasses.replace(TRAIN, precision="f32", epochs=2)
    monkeypatch.setenv(tuning.TUNING_ENV, "off")
    ex = RecordingExecutor(n_workers=2)
    ruled = _fit(X, y, sets, seeds, f32, ex)
    assert [len(j.seeds) for j in ex.jobs] == [5, 5]
    rule_adam = rule_choice(model=SPEC, train=f32).adam
    monkeypatch.delenv(tuning.TUNING_ENV)
    other = "torch" if rule_adam == "compiled" else "compiled"
    chosen = tuning.tune(model=SPEC, train=f32, measure=FakeTimer(adam={rule_adam: 0.5, other: 1.0}, chunk={4: 0.1}))
    assert (chosen.adam, chosen.max_chunk) == (rule_adam, 4)
    ex = RecordingExecutor(n_workers=2)
    tuned = _fit(X, y, sets, seeds, f32, ex)
    assert [len(j.seeds) for j in ex.jobs] == [2, 3, 3, 2] and {j.adam for j in ex.jobs} == {rule_adam}
    for a, b in zip(ruled, tuned, strict=True):
        for wa, wb in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
            assert np.array_equal(wa, wb)
    again = _fit(X, y, sets, seeds, f32)
    assert all(np.array_equal(a.weights[0], b.weights[0]) for a, b in zip(tuned, again, strict=True))
    moved = _fit(X, y, sets, [s + 100 for s in seeds], f32)
    assert not np.array_equal(moved[0].weights[0], tuned[0].weights[0])


def test_both_adam_steps_train_alike() -> None:
    """The compiled and PyTorch Adam steps are one algorithm: weights agree to float rounding."""
    if load_native() is None:
        pytest.skip("the compiled Adam step does not build here (no C compiler)")
    rng = np.random.default_rng(0)
    X, y = rng.random((600, 64), dtype=np.float32), rng.integers(0, 10, 600)
    f32 = dataclasses.replace(TRAIN, precision="f32", epochs=2)
    out = {}
    for adam in ("compiled", "torch"):
        with pinned(adam=adam):
            out[adam] = _fit(X, y, [np.arange(300), np.arange(300, 600)], [1, 2], f32)
    for a, b in zip(out["compiled"], out["torch"], strict=True):
        np.testing.assert_allclose(a.weights[0], b.weights[0], rtol=0, atol=1e-5)


def test_the_step_plan_refuses_an_unknown_adam() -> None:
    import torch

    from miaudit.seeding import torch_generator
    from miaudit.training.engine.stack import Stack, layer_layout
    from miaudit.training.engine.stacked import StepPlan
    from miaudit.training.networks import init_params

    layers = layer_layout(SPEC, "f32")
    stack = Stack.initial(SPEC, layers, [init_params(SPEC, torch_generator(0, "train"))])
    with pytest.raises(TrainingError, match="adam must be 'compiled' or 'torch'; got 'sgd'"):
        StepPlan(stack, torch.zeros(10, 65), 32, TRAIN, 0.0, adam="sgd")


def test_pinned_errors() -> None:
    with pytest.raises(ValueError, match="adam must be one of 'compiled', 'torch'; got 'sgd'"), pinned(adam="sgd"):
        pass
    with pytest.raises(ValueError, match="max_chunk must be an integer >= 1; got 0"), pinned(max_chunk=0):
        pass


# ---------------------------------------------------------------- describing the choice; real timing


def test_describe_choice_says_which_path_and_why() -> None:
    tuning.tune(model=SPEC, train=TRAIN, measure=FakeTimer())
    d = tuning.describe_choice(model=SPEC, train=TRAIN)
    assert d["engine"] == "batched" and d["source"] == "measured" and d["tuning_file"] == str(tuning.tuning_file())
    assert d["precision"] in ("f32", "bf16") and d["path"] == "stacked" and d["adam"] == COMPILED
    assert "ms per model-step" in d["reason"] and d["ms_per_model_step"] and d["key"]
    json.dumps(d)
    made = tuning.choices_made()
    assert [m["model"] for m in made] == ["64-16-10 tiny"] and made[0]["reason"] == d["reason"]
    loop = tuning.describe_choice(model=SPEC, train=dataclasses.replace(TRAIN, engine="loop"))
    assert loop == {"engine": "loop", "precision": "f32", "reason": "the plain PyTorch loop, one model at a time"}


@pytest.mark.parametrize("adam", ["compiled", "torch"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_real_measurement_gives_seconds_per_model_step(adam: str, dropout: float) -> None:
    spec = dataclasses.replace(SPEC, hidden=(16, 8), dropout=dropout)
    for precision in ("f32", "bf16"):
        t = tuning.measure_candidate(Candidate(precision, "stacked", adam, 4), model=spec, train=TRAIN, seconds=0.01)
        assert 0 < t < 1


def test_candidates_put_the_rules_path_first(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    cands = tuning.candidates(model=SPEC, train=TRAIN)
    rule = rule_choice(model=SPEC, train=TRAIN)
    assert cands[0] == Candidate(rule.precision, rule.path, rule.adam, rule.max_chunk)
    assert {c.precision for c in cands} == {"f32", "bf16"}
    assert {c.chunk for c in cands if c.path == "stacked"} == set(tuning.CHUNK_CANDIDATES)
    tight = tuning.candidates(model=SPEC, train=TRAIN, n_workers=10**9)  # no room: the smallest chunk, and the rules'
    assert tight[0] == cands[0] and len(tight) == len(set(tight))
    assert {c.chunk for c in tight[1:] if c.path == "stacked"} == {min(tuning.CHUNK_CANDIDATES)}


def test_orchestration_still_resolves_precision_through_hardware(monkeypatch, digits) -> None:
    """Replacing resolve_precision (as tests of other CPUs do) changes the precision the engine trains in."""
    monkeypatch.setenv(tuning.TUNING_ENV, "off")
    monkeypatch.setattr(orchestration, "resolve_precision", lambda p, **kw: "bf16")
    X, y = digits
    batch = train_many(X, y, [np.arange(100)], seeds=[0], model=SPEC, train=dataclasses.replace(TRAIN, epochs=1))
    assert batch.precision == "bf16"


def test_the_tune_command(monkeypatch) -> None:
    from typer.testing import CliRunner

    from miaudit.cli import app

    monkeypatch.setattr(tuning, "measure_candidate", lambda c, *, model, train, seconds: FakeTimer()(c, seconds))
    runner = CliRunner()
    res = runner.invoke(app, ["tune", "--hidden", "16", "--n-features", "64", "--batch-size", "32", "--json"])
    assert res.exit_code == 0, res.output
    (d,) = json.loads(res.output)
    assert d["model"] == "64-16-10 custom" and d["source"] == "measured" and d["adam"] == COMPILED
    res = runner.invoke(app, ["tune", "--hidden", "16", "--n-features", "64", "--batch-size", "32", "--cached"])
    assert res.exit_code == 0 and "chosen (measured)" in res.output and "tuning.json" in res.output
    tuning._clear_memo()
    res = runner.invoke(app, ["tune", "--hidden", "16", "--n-features", "64", "--batch-size", "32", "--cached"])
    assert "chosen (cache)" in res.output
    for args, message in (
        (["--hidden", "a,b"], "--hidden takes layer widths separated by commas"),
        (["--hidden", ","], "--hidden needs at least one layer width"),
        (["--arch", ","], "--arch needs at least one of simple, dense, dropout"),
        (["--seconds", "0"], "--seconds must be a positive number"),
        (["--arch", "huge"], "arch must be one of"),
    ):
        res = runner.invoke(app, ["tune", *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)


@pytest.mark.parametrize("path", ["stacked", "fused"])
def test_a_candidate_is_timed_on_every_worker_at_once_and_their_times_averaged(monkeypatch, path) -> None:
    import threading

    seen: list[str] = []
    both = threading.Barrier(2, timeout=10)  # passes only if the two timings run at the same time
    times = iter([0.002, 0.004])
    lock = threading.Lock()

    def fake(c, model, train, seconds):
        with lock:
            seen.append(threading.current_thread().name)
            t = next(times)
        both.wait()
        return t

    monkeypatch.setattr(tuning, "_time_stacked" if path == "stacked" else "_time_fused", fake)
    spec = ModelSpec(n_features=8, n_classes=2, hidden=(32,))
    c = Candidate("f32", path, "torch", 4)
    got = tuning.measure_candidate(c, model=spec, train=TrainSpec(), seconds=0.01, n_workers=2)
    assert got == pytest.approx(0.003)
    assert len(seen) == 2 and len(set(seen)) == 2
    seen.clear()
    times = iter([0.005])
    one = threading.Barrier(1)
    both = one
    assert tuning.measure_candidate(c, model=spec, train=TrainSpec(), seconds=0.01, n_workers=1) == 0.005
    assert len(seen) == 1

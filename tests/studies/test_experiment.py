"""The one experiment layer: splits, shared targets and shadows, any attack, planning, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from tests.studies.conftest import LOOP, TINY, tiny

from miaudit.errors import DataError
from miaudit.studies.cache import Cache
from miaudit.studies.experiment import Experiment, target_pool_size
from miaudit.studies.run import attack_study, compare_study, run_studies
from miaudit.studies.schema import RunSpec, StudyConfig, parse_config
from miaudit.training.trainer import train_models


def test_target_pool_size() -> None:
    assert target_pool_size(1797) == 539
    assert target_pool_size(70_000) == 12_000


def test_split_is_disjoint_deterministic_and_seed_dependent() -> None:
    ex = Experiment(LOOP, cache=None)
    sp = ex.split("digits", None, 0)
    parts = [set(sp.members), set(sp.nonmembers), set(sp.population)]
    assert sum(len(p) for p in parts) == ex.view("digits", None).n_samples  # every record somewhere
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i] & parts[j], (i, j)
    assert len(sp.members) == len(sp.nonmembers) == 539
    again = Experiment(LOOP, cache=None).split("digits", None, 0)
    np.testing.assert_array_equal(sp.members, again.members)
    other = ex.split("digits", None, 1)
    assert not np.array_equal(sp.members, other.members)
    # a class view is its own pool: the 5-class split takes only classes 0-4
    five = ex.split("digits", 5, 0)
    assert set(ex.view("digits", 5).y[np.concatenate([five.members, five.population])]) == {0, 1, 2, 3, 4}


def test_target_trains_on_a_prefix_of_the_members_and_is_evaluated_on_as_many_nonmembers() -> None:
    ex = Experiment(LOOP, cache=None)
    st = tiny()
    t = ex.target(st, 0)
    sp = ex.split("digits", None, 0)
    np.testing.assert_array_equal(t.eval_idx[:200], sp.members[:200])
    np.testing.assert_array_equal(t.eval_idx[200:], sp.nonmembers[:200])
    assert t.is_member.sum() == 200 and len(t.is_member) == 400
    assert t.info.n_train == 200 and 0.5 < t.info.train_accuracy <= 1.0
    with pytest.raises(DataError, match="asks for 600 target members.*reserves only 539"):
        ex.target(tiny(target_size=600), 0)


def test_attack_and_a_study_with_the_same_setting_give_the_same_target_and_numbers(tmp_path) -> None:
    st = tiny(attack="loss")
    run = RunSpec(engine="loop", first_seed=4)
    alone = Experiment(run, cache=Cache(tmp_path / "a")).evaluate(st, 4)
    study = parse_config(
        StudyConfig,
        {"id": "x", "title": "t", "base": {**TINY, "attack": "loss"}, "grid": {"n_shadows": [2, 3]}},
    )
    result = run_studies([study], run, tmp_path / "run", cache=Cache(tmp_path / "b"))
    (same,) = [e for e in result.evaluations if e.setting.n_shadows == 3]
    np.testing.assert_array_equal(alone.member_scores, same.member_scores)
    np.testing.assert_array_equal(alone.nonmember_scores, same.nonmember_scores)
    assert alone.target == same.target
    assert alone.metrics == same.metrics
    other_seed = Experiment(run, cache=None).evaluate(st, 5)
    assert not np.array_equal(alone.member_scores, other_seed.member_scores)


def test_attacks_share_shadows_and_a_second_command_trains_only_what_it_lacks(tmp_path) -> None:
    cache = Cache(tmp_path / "cache")
    first = run_studies([attack_study(tiny())], LOOP, tmp_path / "one", kind="attack", cache=cache)
    assert first.manifest["timings"]["models_trained"] == 1 + 3  # the target and three shadows
    # the threshold attacks calibrate on the same shadows; ML-Leaks' one shadow is shadow 0
    second = run_studies([compare_study(tiny(), "shokri,loss,confidence,ml-leaks")], LOOP, tmp_path / "cmp",
                         kind="compare", cache=cache)  # fmt: skip
    t = second.manifest["timings"]
    assert t["models_trained"] == 0
    assert t["attacks_from_cache"] == 1 and t["attacks_run"] == 3
    shokri = [e for e in second.evaluations if e.setting.attack == "shokri"]
    np.testing.assert_array_equal(shokri[0].member_scores, first.evaluations[0].member_scores)


def test_every_registered_attack_runs_in_a_study_and_planning_trains_everything_first(tmp_path) -> None:
    base = tiny(n_refs=4, ref_train_size=60)
    study = compare_study(base, "all")
    ex = Experiment(LOOP, cache=Cache(tmp_path))
    settings = study.settings()
    ex.plan([(s, 0) for s in settings])
    planned = ex.stats.models_trained
    # target + 3 shadows (shared by shokri, the threshold attacks and ML-Leaks) + lira's 4 references +
    # lira-offline's 4 and a pseudo-target + rmia's 4 (its pseudo-target is lira-offline's: same records and seed);
    # the label-only attacks calibrate on the threshold attacks' shadows
    assert planned == 1 + 3 + 4 + 5 + 4
    evaluations = [ex.evaluate(s, 0) for s in settings]
    assert ex.stats.models_trained == planned  # the dry runs found every model the attacks train
    assert [e.setting.attack for e in evaluations] == [s.attack for s in settings]
    assert len({e.setting.setting_id for e in evaluations}) == 12
    for e in evaluations:
        assert 0.0 <= e.metrics["auc"] <= 1.0 and e.queries >= 400
    assert ex.stats.attacks_run == 12


def test_rerun_trains_nothing_and_gives_the_same_numbers(tmp_path) -> None:
    cache = Cache(tmp_path)
    st = tiny(attack="lira", n_refs=4, ref_train_size=60)
    a = Experiment(LOOP, cache=cache).run([st], [0, 1])
    again = Experiment(LOOP, cache=cache)
    b = again.run([st], [0, 1])
    assert again.stats.models_trained == 0 and again.stats.attacks_run == 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.member_scores, y.member_scores)
        assert x.metrics == y.metrics and y.from_cache
    # without a stored evaluation, the models are still reused and the scores recomputed equal
    for entry in (tmp_path / "evals").iterdir():
        entry.unlink()
    third = Experiment(LOOP, cache=cache)
    c = third.run([st], [0, 1])
    assert third.stats.models_trained == 0 and third.stats.attacks_run == 2
    for x, y in zip(a, c, strict=True):
        np.testing.assert_array_equal(x.member_scores, y.member_scores)


def test_the_attackers_recipe_is_part_of_its_knowledge() -> None:
    ex = Experiment(RunSpec(engine="loop", precision="f32"), cache=None)
    kn = ex.knowledge(tiny(shadow_arch="dense", train={"epochs": 7, "lr": 0.01}), 0)
    assert kn.model.hidden == (512, 256, 128) and kn.train.epochs == 7 and kn.train.lr == 0.01
    assert kn.train.engine == "loop"
    assert len(kn.y) == len(ex.split("digits", None, 0).population)


def test_a_run_trains_every_seed_s_models_of_one_architecture_and_recipe_in_one_request(tmp_path) -> None:
    calls: list[tuple[int, int]] = []  # (models asked for, records in the array they index)

    def recording(X, y, sets, *, seeds, model, train, progress=None):
        calls.append((len(sets), len(X)))
        return train_models(X, y, sets, seeds=seeds, model=model, train=train, progress=progress)

    st = tiny()  # a target and three shadows per seed
    ex = Experiment(LOOP, cache=Cache(tmp_path))
    ex.trainer.base = recording
    evaluations = ex.run([st], [0, 1, 2])
    # the three targets and nine shadows in one request (the seeds' attacker populations taken as rows of the
    # view, which the targets are trained on too); nothing left to train when the attacks run
    assert calls == [(12, len(ex.view(st.dataset, st.classes).X))]
    # the same models as training each seed on its own: the same scores
    alone = Experiment(LOOP, cache=None).evaluate(st, 1)
    np.testing.assert_array_equal(evaluations[1].member_scores, alone.member_scores)
    np.testing.assert_array_equal(evaluations[1].nonmember_scores, alone.nonmember_scores)


def test_settings_that_share_models_compute_each_model_s_outputs_once(tmp_path, monkeypatch) -> None:
    from miaudit.training.networks import MLPParams

    asked: list[int] = []  # records each model was asked about
    real = MLPParams._logits
    monkeypatch.setattr(MLPParams, "_logits", lambda self, X: asked.append(len(X)) or real(self, X))
    settings = [tiny(n_shadows=n) for n in (2, 3, 4)]
    ex = Experiment(LOOP, cache=Cache(tmp_path))
    evaluations = ex.run(settings, [0])
    shadow_rows = TINY["shadow_train_size"] + TINY["shadow_test_size"]
    # four shadows' outputs on their records, and the target's on its evaluated records, once each (the
    # target's train and test accuracies are two more questions): not 2 + 3 + 4 shadows and three targets
    assert sorted(asked) == sorted([shadow_rows] * 4 + [2 * TINY["target_size"]] + [TINY["target_size"]] * 2)
    # the same scores as evaluating each setting on its own, without any model's outputs kept
    for st, ev in zip(settings, evaluations, strict=True):
        alone = Experiment(LOOP, cache=None).evaluate(st, 0)
        np.testing.assert_array_equal(ev.member_scores, alone.member_scores)
        np.testing.assert_array_equal(ev.nonmember_scores, alone.nonmember_scores)
        assert ev.queries == alone.queries == 2 * TINY["target_size"]


def test_evaluations_side_by_side_give_the_numbers_of_one_by_one_in_order(tmp_path, monkeypatch) -> None:
    import miaudit.studies.experiment as experiment_mod

    settings = [tiny(n_shadows=n) for n in (2, 3)] + [tiny(attack="loss"), tiny(attack_model="lr")]
    monkeypatch.setattr(experiment_mod, "EVAL_THREADS", 1)
    one = Experiment(LOOP, cache=Cache(tmp_path / "a"))
    alone = one.run(settings, [0, 1])
    monkeypatch.setattr(experiment_mod, "EVAL_THREADS", 3)
    ex = Experiment(LOOP, cache=Cache(tmp_path / "b"))
    together = ex.run(settings, [0, 1])
    assert (one.stats.attack_threads, ex.stats.attack_threads) == (1, 3)
    assert ex.stats.attacks_run == one.stats.attacks_run == 8
    assert [(e.setting.setting_id, e.seed) for e in together] == [(e.setting.setting_id, e.seed) for e in alone]
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.member_scores, b.member_scores)
        np.testing.assert_array_equal(a.nonmember_scores, b.nonmember_scores)
        assert a.metrics == b.metrics and a.queries == b.queries


def test_a_failing_evaluation_stops_the_run_and_keeps_the_finished_ones(tmp_path, monkeypatch) -> None:
    import miaudit.studies.experiment as experiment_mod

    monkeypatch.setattr(experiment_mod, "EVAL_THREADS", 2)
    settings = [tiny(n_shadows=n) for n in (2, 3, 4)]
    ex = Experiment(LOOP, cache=Cache(tmp_path))
    real = Experiment.evaluate

    def failing(self, st, seed):
        if st.n_shadows == 3:
            raise DataError("the target answered garbage")
        return real(self, st, seed)

    monkeypatch.setattr(Experiment, "evaluate", failing)
    with pytest.raises(DataError, match="answered garbage"):
        ex.run(settings, [0])
    monkeypatch.setattr(Experiment, "evaluate", real)
    again = Experiment(LOOP, cache=Cache(tmp_path))
    again.run(settings[:1], [0])
    assert again.stats.attacks_from_cache == 1 and again.stats.attacks_run == 0  # the finished one was kept


def test_a_population_s_digest_is_that_of_its_records_and_survives_its_arrays() -> None:
    from miaudit.studies.cache import array_digest

    st = tiny()
    ex = Experiment(LOOP, cache=None)
    X, y, digest = ex._population(st, 0)
    assert digest == array_digest(X, y)  # evaluation keys stored earlier keep their meaning
    assert digest != ex._population(st, 1)[2]
    ex._populations.clear()  # the arrays dropped, gathered again: the same digest
    assert ex._population(st, 0)[2] == digest

"""The one setting schema: allowed values from the registries, attack parameters, studies, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from miaudit.errors import ConfigError
from miaudit.studies.schema import (
    RBF_MAX_SAMPLES,
    Setting,
    StudyConfig,
    default_config_dir,
    known_attacks,
    load_studies,
    load_study,
    parse_config,
)


def test_defaults_are_the_seed_studys_best_run() -> None:
    s = Setting()
    assert (s.attack, s.attack_model, s.n_shadows, s.target_size, s.arch) == ("shokri", "linear-svm", 6, 3000, "simple")
    assert s.attacker_arch == "simple"
    assert Setting(shadow_arch="dense").attacker_arch == "dense"


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [
        ("arch", "huge", "simple, dense, dropout"),
        ("shadow_arch", "huge", "simple, dense, dropout"),
        ("attack_model", "svm", "lr, tree, linear-svm, rbf-svm"),
        ("dataset", "mnist", "fashion-mnist, digits"),
        ("features", "all", "raw, sorted, log-sorted, true-label, rich"),
        ("attack", "magic", "shokri, loss, confidence, entropy, modified-entropy, ml-leaks, lira, lira-offline, rmia"),
    ],
)
def test_unknown_values_list_what_the_registries_allow(field: str, value: str, listed: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}: unknown .*{value!r}; choose one of: {listed}"):
        parse_config(Setting, {field: value})


def test_every_registered_attack_is_known_in_a_stable_order() -> None:
    assert known_attacks()[:9] == [
        "shokri", "loss", "confidence", "entropy", "modified-entropy", "ml-leaks", "lira", "lira-offline", "rmia",
    ]  # fmt: skip


def test_attack_params_are_checked_against_the_constructor() -> None:
    with pytest.raises(ConfigError, match="'lira' takes no parameter 'n_shadowz'; its parameters: n_refs, "):
        parse_config(Setting, {"attack": "lira", "attack_params": {"n_shadowz": 3}})
    with pytest.raises(ConfigError, match="may not set 'seed'"):
        parse_config(Setting, {"attack": "loss", "attack_params": {"seed": 3}})
    with pytest.raises(ConfigError, match="lira needs n_refs >= 4; got 2"):
        parse_config(Setting, {"attack": "lira", "n_refs": 2})
    with pytest.raises(ConfigError, match="fix_variance must be True, False or None"):
        parse_config(Setting, {"attack": "lira-offline", "attack_params": {"fix_variance": "yes"}})


def test_shared_fields_fill_the_parameters_each_attack_takes() -> None:
    s = Setting(n_shadows=4, shadow_train_size=500, shadow_test_size=300, per_class=True, target_size=1200)
    shokri = s.model_copy(update={"attack": "shokri"}).attack_kwargs(seed=9)
    assert shokri["n_shadows"] == 4 and shokri["per_class"] is True and shokri["features"] == "rich"
    assert shokri["seed"] == 9 and "max_train_samples" not in shokri
    rbf = s.model_copy(update={"attack_model": "rbf-svm"}).attack_kwargs(seed=9)
    assert rbf["max_train_samples"] == RBF_MAX_SAMPLES
    loss = Setting(attack="loss", n_shadows=4).attack_kwargs(seed=1)
    assert loss == {"n_shadows": 4, "shadow_train_size": 3000, "shadow_test_size": 2000, "disjoint_shadows": True,
                    "seed": 1}  # fmt: skip
    # ML-Leaks' adversary 1 keeps its single shadow model
    assert "n_shadows" not in Setting(attack="ml-leaks", n_shadows=6).attack_kwargs(seed=1)
    # reference attacks: their own default count, and the target's size as the believed training size
    assert Setting(attack="lira", target_size=700).attack_kwargs(seed=1) == {"ref_train_size": 700, "seed": 1}
    assert Setting(attack="rmia", n_refs=8, ref_train_size=50).attack_kwargs(seed=1) == {
        "n_refs": 8, "ref_train_size": 50, "seed": 1,
    }  # fmt: skip
    # attack_params override a shared field
    got = Setting(attack="loss", n_shadows=4, attack_params={"n_shadows": 2}).attack_kwargs(seed=1)
    assert got["n_shadows"] == 2


def test_setting_ids_are_readable_and_tell_every_field_apart() -> None:
    s = Setting(study="1")
    assert s.setting_id == "s1-shokri-linear-svm-n6-t3000-call-simple"
    assert Setting(study="1", shadow_arch="dense").setting_id.endswith("-simple-sh-dense")
    ids = {
        s.setting_id,
        s.model_copy(update={"attack": "loss"}).setting_id,
        Setting(study="1", features="raw").setting_id,
        Setting(study="1", train={"epochs": 5}).setting_id,
        Setting(study="1", attack="lira", attack_params={"fix_variance": False}).setting_id,
        Setting(study="1", attack="lira", attack_params={"fix_variance": True}).setting_id,
    }
    assert len(ids) == 6


def test_a_study_grids_over_attacks_and_any_field() -> None:
    study = parse_config(
        StudyConfig,
        {"id": "9", "title": "t", "base": {"n_shadows": 2}, "grid": {"attack": ["shokri", "loss", "lira"],
                                                                       "target_size": [100, 200]}},
    )  # fmt: skip
    settings = study.settings()
    assert [(s.attack, s.target_size) for s in settings] == [
        ("shokri", 100), ("shokri", 200), ("loss", 100), ("loss", 200), ("lira", 100), ("lira", 200),
    ]  # fmt: skip
    assert all(s.study == "9" and s.n_shadows == 2 for s in settings)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grid": {"colour": [1]}}, "grid.colour is not a setting field"),
        ({"base": {"study": "x"}}, "base.study is not a setting field"),
        ({"grid": {"n_shadows": []}}, "grid.n_shadows must be a non-empty list"),
        ({"quick": {"seeds": 2}}, "quick.seeds is not allowed"),
        ({"grid": {"attack": ["shokri", "nope"]}}, "unknown attack 'nope'"),
        ({"quick": {"grid": {"arch": ["tiny"]}}}, "unknown architecture 'tiny'"),
        ({"base": {"attack": "loss", "attack_params": {"n_refs": 3}}}, "'loss' takes no parameter 'n_refs'"),
    ],
)
def test_bad_studies_are_refused_when_loaded(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(StudyConfig, {"id": "9", "title": "t", **data})


def test_study_files_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "study9.toml")
    bad = tmp_path / "study9.toml"
    bad.write_text("id = \n")
    with pytest.raises(ConfigError, match="study9.toml is not valid TOML"):
        load_study(bad)
    bad.write_text('id = "9"\ntitle = "t"\n[base]\nn_shadows = 0\n')
    with pytest.raises(ConfigError, match=r"study9.toml: .*n_shadows: Input should be greater than or equal to 1"):
        load_study(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no study"):
        load_studies(config_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        load_studies(config_dir=tmp_path / "nowhere")


def test_shipped_studies_load_in_both_tiers() -> None:
    studies = load_studies(config_dir=default_config_dir())
    assert [s.id for s in studies] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    # the main job is the seed's six studies; defences (7) and the API (8) run when named
    assert [s.id for s in studies if s.in_default_run] == ["1", "2", "3", "4", "5", "6"]
    for s in studies:
        assert s.settings() and s.settings(quick=True)
    with pytest.raises(ConfigError, match="unknown study id"):
        load_studies(["42"])


def test_an_axis_of_arms_sets_several_fields_together() -> None:
    study = parse_config(
        StudyConfig,
        {"id": "9", "title": "t", "base": {"train": {"epochs": 10}},
         "grid": {"target": [{"arch": "simple"}, {"arch": "dense", "train": {"epochs": 60}}], "n_shadows": [2, 3]},
         "quick": {"grid": {"target": [{"arch": "dropout"}]}}},
    )  # fmt: skip
    got = [(s.arch, s.train.epochs, s.n_shadows) for s in study.settings()]
    assert got == [("simple", 10, 2), ("simple", 10, 3), ("dense", 60, 2), ("dense", 60, 3)]
    assert [(s.arch, s.train.epochs) for s in study.settings(quick=True)] == [("dropout", 10), ("dropout", 10)]
    with pytest.raises(ConfigError, match="grid.target: colour is not a setting field"):
        parse_config(StudyConfig, {"id": "9", "title": "t", "grid": {"target": [{"colour": 1}]}})
    with pytest.raises(ConfigError, match="quick.grid.target must be a non-empty list"):
        parse_config(StudyConfig, {"id": "9", "title": "t", "quick": {"grid": {"target": []}}})
    with pytest.raises(ConfigError, match="an axis of arms needs a table of setting fields per value"):
        parse_config(StudyConfig, {"id": "9", "title": "t", "grid": {"target": ["dense"]}})


def test_the_shipped_overfitting_study_trains_dense_longer_than_simple() -> None:
    (study5,) = load_studies(["5"])
    epochs = {s.arch: s.train.epochs for s in study5.settings()}
    assert epochs == {"simple": 30, "dense": 60, "dropout": 60}
    quick = {s.arch: s.train.epochs for s in study5.settings(quick=True)}
    assert quick["dense"] > quick["simple"] and quick["dense"] == quick["dropout"]

from __future__ import annotations

from pathlib import Path

import pytest

from miaudit.errors import ConfigError
from miaudit.studies.paper import paper_value
from miaudit.studies.study import ReproduceConfig, StudyConfig, load_studies, load_study

TINY = Path(__file__).parent / "configs_tiny"


def test_shipped_configs_validate_and_expand() -> None:
    studies = load_studies()
    assert [s.id for s in studies] == ["1", "2", "3", "4", "5", "6"]
    counts = {s.id: len(s.settings()) for s in studies}
    assert counts == {"1": 16, "2": 8, "3": 20, "4": 20, "5": 24, "6": 4}
    ids = [st.setting_id for s in studies for st in s.settings()]
    assert len(ids) == len(set(ids))
    for s in studies:
        assert s.settings(quick=True), f"study {s.id} has no quick settings"
    s1 = studies[0].settings()
    assert {st.attack_model for st in s1} == {"lr", "tree", "linear-svm", "rbf-svm"}
    assert {st.n_shadows for st in s1} == {4, 5, 6, 7}


def test_select_studies() -> None:
    assert [s.id for s in load_studies(["5", "2"])] == ["5", "2"]
    with pytest.raises(ConfigError, match="unknown study id.*9.*available: 1, 2, 3, 4, 5, 6"):
        load_studies(["9"])


def test_bad_fields_give_clear_errors(tmp_path) -> None:
    bad = tmp_path / "study1.toml"
    bad.write_text('id = "1"\ntitle = "x"\n[base]\narch = "huge"\n')
    with pytest.raises(ConfigError, match=r"study1.toml.*arch: must be one of 'simple', 'dense' or 'dropout'.*'huge'"):
        load_study(bad)
    bad.write_text('id = "1"\ntitle = "x"\n[grid]\nepochs = [1, 2]\n')
    with pytest.raises(ConfigError, match="grid key 'epochs' is not allowed; allowed: attack_model"):
        load_study(bad)
    bad.write_text('id = "1"\ntitle = "x"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="colour: unknown field"):
        load_study(bad)
    bad.write_text('id = "1"\ntitle = "x"\n[grid]\nn_shadows = [0]\n')
    with pytest.raises(ConfigError, match="n_shadows: Input should be greater than or equal to 1"):
        load_study(bad)
    bad.write_text("id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "nope.toml")


def test_quick_overrides() -> None:
    s = StudyConfig(id="x", title="t", grid={"n_shadows": [2, 3, 4]}, quick={"grid": {"n_shadows": [2]}})
    assert len(s.settings()) == 3
    assert [st.n_shadows for st in s.settings(quick=True)] == [2]
    cfg = ReproduceConfig(studies=(s,), seeds=3, first_seed=10)
    assert cfg.seed_list == [10, 11, 12]


def test_tiny_configs_load() -> None:
    assert [s.id for s in load_studies(config_dir=TINY)] == ["1", "2"]


def test_paper_values() -> None:
    kw = dict(target_size=3000, classes=10, arch="simple")
    assert paper_value("1", metric="accuracy", attack_model="linear-svm", n_shadows=6, **kw) == 0.6962
    assert paper_value("1", metric="recall", attack_model="linear-svm", n_shadows=6, **kw) == 0.9892
    assert paper_value("1", metric="recall", attack_model="lr", n_shadows=6, **kw) is None
    assert (
        paper_value(
            "3", metric="accuracy", attack_model="linear-svm", n_shadows=8, target_size=6000, classes=10, arch="simple"
        )
        == 0.5054
    )
    assert (
        paper_value(
            "5", metric="accuracy", attack_model="linear-svm", n_shadows=5, target_size=3000, classes=10, arch="dropout"
        )
        == 0.5
    )
    # a scaled-down run is not the paper's setting: no value beside it
    assert (
        paper_value("1", metric="accuracy", attack_model="lr", n_shadows=4, target_size=1000, classes=10, arch="simple")
        is None
    )

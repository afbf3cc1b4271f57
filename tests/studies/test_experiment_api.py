"""Settings that say what the attacker sees: an output policy at the target's API, in process or over HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from miaudit.errors import ConfigError
from miaudit.studies.cache import Cache
from miaudit.studies.experiment import Experiment
from miaudit.studies.run import run_studies
from miaudit.studies.schema import RunSpec, StudyConfig, parse_config

from .conftest import LOOP, TINY, tiny


def test_defaults_keep_setting_ids_and_evaluation_keys() -> None:
    """A setting at the default policy and transport has the id and key it had before these fields existed."""
    exp = Experiment(LOOP, cache=None)
    st = tiny(attack="loss")
    assert "policy" not in exp.eval_key(st, 0) and "transport" not in exp.eval_key(st, 0)
    assert st.setting_id == tiny(attack="loss", output_policy="full", transport="local").setting_id
    labelled = exp.eval_key(tiny(attack="loss", output_policy="label_only"), 0)
    assert labelled["policy"] == "label_only"
    assert exp.eval_key(tiny(attack="loss", transport="http"), 0)["transport"] == "http"


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="output policy"):
        parse_config(StudyConfig, {"id": "x", "title": "t", "base": {**TINY, "output_policy": "top_k:zero"}})


def test_policy_changes_scores_and_reports_served_accuracy(tmp_path) -> None:
    exp = Experiment(LOOP, cache=Cache(tmp_path / "c"))
    full = exp.evaluate(tiny(attack="loss"), 0)
    labels = exp.evaluate(tiny(attack="loss", output_policy="label_only"), 0)
    assert full.target.served_test_accuracy is None
    # label only keeps the predicted label: the utility through the API is the model's own test accuracy
    assert labels.target.served_test_accuracy == pytest.approx(labels.target.test_accuracy, abs=1e-12)
    # the loss of one-hot answers is 0 or "infinite": only two values, so the attack's AUC is the gap's
    assert len(np.unique(np.r_[labels.member_scores, labels.nonmember_scores])) <= 2
    assert labels.metrics["auc"] != full.metrics["auc"]


def test_over_http_equals_in_process(tmp_path) -> None:
    """The same target attacked through the service on 127.0.0.1: bitwise the same scores as in process."""
    pytest.importorskip("uvicorn")
    exp = Experiment(LOOP, cache=Cache(tmp_path / "c"))
    local = exp.evaluate(tiny(attack="loss", output_policy="top_k:3"), 0)
    remote = exp.evaluate(tiny(attack="loss", output_policy="top_k:3", transport="http"), 0)
    assert not remote.from_cache
    np.testing.assert_array_equal(local.member_scores, remote.member_scores)
    np.testing.assert_array_equal(local.nonmember_scores, remote.nonmember_scores)
    assert remote.queries == local.queries


def test_run_directory_describes_every_setting(tmp_path) -> None:
    study = parse_config(
        StudyConfig,
        {
            "id": "api",
            "title": "t",
            "base": {**TINY, "attack": "loss"},
            "grid": {"policy": [{"label": "full"}, {"label": "labels", "output_policy": "label_only"}]},
        },
    )
    result = run_studies([study], RunSpec(engine="loop"), tmp_path / "run", cache=Cache(tmp_path / "c"))
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert {s["label"] for s in settings.values()} == {"full", "labels"}
    served = [r for r in result.rows if r.metric == "served_test_accuracy"]
    assert len(served) == 1 and settings[served[0].setting_id]["output_policy"] == "label_only"

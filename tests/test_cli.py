from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from miaudit.cli import app

runner = CliRunner()


def test_attack_command_on_digits(tmp_path) -> None:
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        [
            "attack",
            "--dataset",
            "digits",
            "--target-size",
            "150",
            "--shadow-train-size",
            "150",
            "--shadow-test-size",
            "100",
            "--shadows",
            "2",
            "--epochs",
            "5",
            "--attack-model",
            "tree",
            "--seed",
            "3",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "attack accuracy" in res.output and "AUC" in res.output and "TPR at FPR 0.001" in res.output
    record = json.loads(out.read_text())
    assert set(record) >= {"config", "target", "metrics", "timings", "versions"}
    assert set(record["target"]) >= {"train_accuracy", "test_accuracy"}
    assert set(record["metrics"]["tpr_at_fpr"]) >= {"0.01", "0.001"}
    assert record["config"]["attack_model"] == "tree"
    assert record["config"]["seed"] == 3


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--arch", "huge", "'simple', 'dense', 'dropout'"),
        ("--attack-model", "svm", "'lr', 'tree', 'linear-svm', 'rbf-svm'"),
        ("--dataset", "mnist", "'fashion-mnist', 'digits'"),
    ],
)
def test_unknown_values_are_rejected_with_the_allowed_list(option: str, value: str, allowed: str) -> None:
    res = runner.invoke(app, ["attack", option, value])
    assert res.exit_code == 2
    flat = " ".join(res.output.replace("│", " ").split())
    assert allowed in flat


def test_bad_config_value_exits_with_a_clear_message() -> None:
    res = runner.invoke(app, ["attack", "--dataset", "digits", "--shadows", "0"])
    assert res.exit_code == 2
    assert "shadows" in res.output and "greater than or equal to 1" in res.output


def test_too_small_pool_exits_with_a_clear_message() -> None:
    res = runner.invoke(app, ["attack", "--dataset", "digits"])
    assert res.exit_code == 2
    assert "1797" in res.output


def test_data_info(fmnist_available) -> None:
    if not fmnist_available:
        pytest.skip("Fashion-MNIST is not installed")
    res = runner.invoke(app, ["data", "info", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["n_records"]["total"] == 70000
    assert all(f["sha256_ok"] for f in info["files"].values())


def test_data_info_missing_dir(tmp_path) -> None:
    res = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "miaudit data fetch" in " ".join(res.output.split())


TINY = [
    "--dataset",
    "digits",
    "--target-size",
    "150",
    "--shadow-train-size",
    "150",
    "--shadow-test-size",
    "100",
    "--shadows",
    "2",
    "--epochs",
    "5",
]


def test_attack_command_runs_lira_with_refs(tmp_path) -> None:
    out = tmp_path / "lira.json"
    res = runner.invoke(app, ["attack", "--attack", "lira", "--refs", "4", *TINY, "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "lira attack" in res.output and "TPR at FPR 0" in res.output
    record = json.loads(out.read_text())
    assert record["config"]["attack"] == "lira" and record["config"]["refs"] == 4
    assert record["attack"]["n_refs"] == 4
    assert record["queries"] == 300
    assert set(record["metrics"]["tpr_at_fpr"]) == {"0.01", "0.001", "0"}


def test_unknown_attack_name_lists_the_allowed_ones() -> None:
    res = runner.invoke(app, ["attack", "--attack", "lyra", "--dataset", "digits"])
    assert res.exit_code == 2
    flat = " ".join(res.output.split())
    assert "unknown attack 'lyra'; choose one of: shokri, loss, confidence, entropy" in flat and "rmia" in flat


def test_compare_command(tmp_path) -> None:
    out = tmp_path / "compare.json"
    res = runner.invoke(
        app, ["compare", "--attacks", "loss,rmia", "--seeds", "2", "--refs", "2", *TINY, "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "loss" in res.output and "rmia" in res.output and "TPR @ 0.1% FPR" in res.output
    record = json.loads(out.read_text())
    assert list(record["attacks"]) == ["loss", "rmia"] and record["seeds"] == [0, 1]
    assert set(record["attacks"]["rmia"]["tpr_at_fpr"]) == {"0.01", "0.001", "0"}
    assert set(record["attacks"]["loss"]["auc"]) == {"mean", "low", "high", "std", "n"}
    assert set(record["scores"]["loss"]) == {"0", "1"}


def test_compare_rejects_bad_names() -> None:
    res = runner.invoke(app, ["compare", "--attacks", "loss,nope", "--dataset", "digits"])
    assert res.exit_code == 2
    assert "unknown attack 'nope'" in " ".join(res.output.split())

from __future__ import annotations

import csv
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
        ("--arch", "huge", "arch: unknown architecture 'huge'; choose one of: simple, dense, dropout"),
        ("--attack-model", "svm", "unknown attack model 'svm'; choose one of: lr, tree, linear-svm, rbf-svm"),
        ("--dataset", "mnist", "unknown dataset 'mnist'; choose one of: fashion-mnist, digits"),
        ("--features", "all", "unknown feature set 'all'; choose one of: raw, sorted"),
        ("--precision", "f16", "precision: unknown precision 'f16'; choose one of: auto, f32, bf16"),
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


def test_too_small_pool_exits_with_a_clear_message(tmp_path) -> None:
    res = runner.invoke(app, ["attack", "--dataset", "digits", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2
    flat = " ".join(res.output.split())
    assert "asks for 3000 target members, but the 10-class digits pool reserves only 539" in flat
    assert "use a smaller target_size" in flat


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
    assert record["config"]["attack"] == "lira" and record["config"]["n_refs"] == 4
    assert record["attack"]["n_refs"] == 4
    assert record["queries"] == 300
    assert set(record["metrics"]["tpr_at_fpr"]) == {"0.01", "0.001", "0"}


def test_unknown_attack_name_lists_the_allowed_ones() -> None:
    res = runner.invoke(app, ["attack", "--attack", "lyra", "--dataset", "digits"])
    assert res.exit_code == 2
    flat = " ".join(res.output.split())
    assert "unknown attack 'lyra'; choose one of: shokri, loss, confidence, entropy" in flat and "rmia" in flat


def test_compare_command_writes_a_run_directory_and_its_report(tmp_path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--attacks", "loss,rmia", "--seeds", "3", "--refs", "2", *TINY, "--engine", "loop",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "2 attacks on the same targets (150 members, simple network), 3 seeds: mean and [95% interval]" in flat
    assert "TPR @ 0.1% FPR" in flat and f"results are in {out}" in flat
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    summary = list(csv.DictReader((out / "summary.csv").open()))
    auc = {r["attack"]: r for r in summary if r["metric"] == "auc"}
    assert set(auc) == {"loss", "rmia"} and auc["rmia"]["n"] == "3" and auc["rmia"]["low"] != ""
    # the table prints the summary's numbers: the mean, and below it the interval
    loss = auc["loss"]
    assert f"{float(loss['mean']):.3f}" in flat and f"[{float(loss['low']):.3f}, {float(loss['high']):.3f}]" in flat
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "compare" and list(manifest["studies"]) == ["compare"]
    again = runner.invoke(app, [*args, "--no-report"], env={"COLUMNS": "200"})
    assert "trained 0 models and ran 0 attacks" in " ".join(again.output.split())


def test_attack_and_compare_share_the_cache_and_the_numbers(tmp_path) -> None:
    cache = str(tmp_path / "cache")
    one = tmp_path / "one.json"
    res = runner.invoke(app, ["attack", "--attack", "loss", *TINY, "--engine", "loop", "--seed", "1",
                              "--cache-dir", cache, "--json", str(one)])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", "--attacks", "shokri,loss", "--seeds", "1", "--seed", "1", *TINY,
                              "--engine", "loop", "--cache-dir", cache, "--out", str(out), "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "reused from the cache: 3 models, 1 attacks" in " ".join(res.output.split())
    rows = list(csv.DictReader((out / "results.csv").open()))
    (auc,) = [float(r["value"]) for r in rows if r["attack"] == "loss" and r["metric"] == "auc"]
    assert auc == json.loads(one.read_text())["metrics"]["auc"]


def test_attack_takes_any_parameter_of_the_attack(tmp_path) -> None:
    args = ["attack", "--attack", "lira", "--refs", "4", "--attack-param", "fix_variance=false", *TINY,
            "--engine", "loop", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "r")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "attack: fix variance" in res.output and "False" in res.output
    assert (tmp_path / "r" / "report.html").exists() is False  # attack writes the run directory, report on demand
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["kind"] == "attack"
    bad = runner.invoke(app, ["attack", "--attack", "lira", "--attack-param", "fix_variance", *TINY])
    assert bad.exit_code == 2 and "--attack-param takes KEY=VALUE" in " ".join(bad.output.split())
    unknown = runner.invoke(app, ["attack", "--attack", "loss", "--attack-param", "n_refs=3", *TINY])
    assert unknown.exit_code == 2 and "'loss' takes no parameter 'n_refs'" in " ".join(unknown.output.split())


def test_compare_rejects_bad_names() -> None:
    res = runner.invoke(app, ["compare", "--attacks", "loss,nope", "--dataset", "digits"])
    assert res.exit_code == 2
    assert "unknown attack 'nope'" in " ".join(res.output.split())


def test_attack_takes_defences_and_what_the_api_lets_out(tmp_path) -> None:
    """--dp-epsilon trains the target with DP-SGD (its spent epsilon recorded), --output-policy applies at the API."""
    pytest.importorskip("opacus")
    out = tmp_path / "r.json"
    args = ["attack", "--dataset", "digits", "--target-size", "200", "--shadows", "2", "--shadow-train-size", "150",
            "--shadow-test-size", "60", "--epochs", "3", "--attack", "loss", "--dp-epsilon", "2",
            "--label-smoothing", "0.1", "--output-policy", "label_only", "--json", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert rec["config"]["train"]["dp_epsilon"] == 2.0 and rec["config"]["train"]["label_smoothing"] == 0.1
    assert rec["config"]["output_policy"] == "label_only"
    assert 0 < rec["target"]["epsilon_spent"] <= 2.0
    assert rec["target"]["served_test_accuracy"] == pytest.approx(rec["target"]["test_accuracy"])
    bad = runner.invoke(app, ["attack", "--output-policy", "top_k:0"])
    assert bad.exit_code == 2 and "output_policy" in bad.output

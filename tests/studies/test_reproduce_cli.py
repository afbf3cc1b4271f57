from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from miaudit.cli import app

TINY = Path(__file__).parent / "configs_tiny"
runner = CliRunner()


def test_reproduce_command_prints_tables_verdicts_and_where_results_are(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["reproduce", "--config-dir", str(TINY), "--studies", "2", "--seeds", "2", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--engine", "loop", "--no-report"]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "Study 2: Number of shadow models (tiny)" in res.output
    assert "accuracy [95% CI]" in res.output
    assert "F2: more shadow models raise attack accuracy: inconclusive" in " ".join(res.output.split())
    assert f"results are in {out}" in res.output
    assert (out / "results.csv").exists()
    again = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert "trained 0 models and ran 0 attacks" in " ".join(again.output.split())


def test_reproduce_rejects_unknown_studies(tmp_path) -> None:
    res = runner.invoke(app, ["reproduce", "--config-dir", str(TINY), "--studies", "7", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "unknown study id(s) 7; available: 1, 2" in " ".join(res.output.split())


def test_reproduce_rejects_bad_seeds(tmp_path) -> None:
    res = runner.invoke(app, ["reproduce", "--config-dir", str(TINY), "--seeds", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "seeds: Input should be greater than or equal to 1 (given: 0)" in " ".join(res.output.split())


ATTACK_GRID_STUDY = """
id = "9"
title = "Three attacks on one target"
[base]
dataset = "digits"
target_size = 300
shadow_train_size = 150
shadow_test_size = 100
n_shadows = 4
n_refs = 8
train = { epochs = 30 }
[grid]
attack = ["shokri", "loss", "lira"]
[quick.base]
target_size = 200
shadow_train_size = 100
shadow_test_size = 60
n_shadows = 3
n_refs = 4
train = { epochs = 15 }
"""


def test_reproduce_quick_runs_a_grid_over_attacks_and_a_rerun_trains_nothing(tmp_path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "study9.toml").write_text(ATTACK_GRID_STUDY)
    out = tmp_path / "run"
    args = ["reproduce", "--quick", "--config-dir", str(configs), "--seeds", "2", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--engine", "loop", "--no-report"]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    import csv

    summary = list(csv.DictReader((out / "summary.csv").open()))
    auc = [r for r in summary if r["metric"] == "auc"]
    assert sorted(r["attack"] for r in auc) == ["lira", "loss", "shokri"]
    assert {r["target_size"] for r in auc} == {"200"}  # the quick tier
    results = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["attack"], r["seed"]) for r in results} == {(a, s) for a in ("shokri", "loss", "lira") for s in "01"}
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "trained 0 models and ran 0 attacks" in " ".join(again.output.split())

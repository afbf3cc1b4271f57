from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from miaudit.cli import app

TINY = Path(__file__).parent / "configs_tiny"
runner = CliRunner()


def test_reproduce_command_prints_tables_verdicts_and_where_results_are(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["reproduce", "--config-dir", str(TINY), "--studies", "2", "--seeds", "2", "--out", str(out),
            "--engine", "loop", "--no-report"]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "Study 2: Number of shadow models (tiny)" in res.output
    assert "accuracy [95% CI]" in res.output
    assert "F2: more shadow models raise attack accuracy:" in res.output
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

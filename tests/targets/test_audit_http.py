"""An audit over HTTP: the model behind a prediction service on 127.0.0.1, a token, a query budget, a resume."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from miaudit.cli import app
from miaudit.targets import as_target
from miaudit.targets.service import create_app

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def case(tmp_path: Path) -> dict[str, object]:
    """A forest that memorised random labels, its data file (300 records) and 100 member ids."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    members = np.arange(100)
    forest = RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1).fit(X[members], y[members])
    with (tmp_path / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *(f"f{j}" for j in range(6)), "label"])
        for i in range(300):
            w.writerow([f"r{i}", *(f"{v:.9g}" for v in X[i]), int(y[i])])
    (tmp_path / "members.csv").write_text("id\n" + "\n".join(f"r{i}" for i in members) + "\n")
    (tmp_path / "token.txt").write_text(TOKEN + "\n")
    target = as_target(forest, n_features=6)
    app = create_app(target, n_features=6, n_classes=3, classes=[0, 1, 2], tokens=[TOKEN])
    return {"app": app, "dir": tmp_path}


def _args(d: Path, url: str, out: str, *extra: str) -> list[str]:
    return [
        "audit", "--model", url, "--data", str(d / "data.csv"), "--members", str(d / "members.csv"),
        "--token-file", str(d / "token.txt"), "--attack", "loss", "--n-shadows", "2", "--epochs", "3",
        "--out", str(d / out), "--no-report", *extra,
    ]  # fmt: skip


def test_audit_over_http_with_budget_and_resume(
    case: dict[str, object], live_server: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = case["dir"]
    assert isinstance(d, Path)
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(d / "cache"))
    server = live_server(case["app"])
    url = server.url  # type: ignore[attr-defined]
    runner = CliRunner()
    # 200 evaluated records (100 members, 100 non-members): a budget of 150 runs out
    first = runner.invoke(app, _args(d, url, "a1", "--budget", "150"))
    assert first.exit_code == 2, first.output
    assert "budget" in first.output and "Traceback" not in first.output
    assert TOKEN not in first.output
    rec = json.loads((d / "a1" / "audit.json").read_text())
    assert rec["status"] == "interrupted" and "BudgetExhaustedError" in rec["error"]
    # a rerun with a larger budget sends only the records whose answers are not cached
    second = runner.invoke(app, _args(d, url, "a2", "--budget", "200"))
    assert second.exit_code == 0, second.output
    rec = json.loads((d / "a2" / "audit.json").read_text())
    assert rec["status"] == "complete"
    assert rec["queries"]["sent"] == 50 and rec["queries"]["budget"] == 200
    assert rec["target"]["family"] == "http" and rec["shadows"]["family"] == "mlp"
    assert rec["target"]["member_accuracy"] == 1.0
    assert rec["attacks"]["loss"]["metrics"]["auc"] > 0.9
    assert TOKEN not in (d / "a2" / "audit.json").read_text()


def test_wrong_token_is_a_clear_error(case: dict[str, object], live_server: Callable[..., object]) -> None:
    d = case["dir"]
    assert isinstance(d, Path)
    (d / "token.txt").write_text("wrong\n")
    server = live_server(case["app"])
    result = CliRunner().invoke(app, _args(d, server.url, "a"))  # type: ignore[attr-defined]
    assert result.exit_code == 2
    assert "token" in result.output and "Traceback" not in result.output


def test_server_gone_is_a_clear_error(case: dict[str, object], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _args(tmp_path, "http://127.0.0.1:9", "a"))
    assert result.exit_code == 2
    assert "127.0.0.1:9" in result.output and "Traceback" not in result.output

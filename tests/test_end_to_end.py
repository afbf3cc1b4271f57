"""The main job at its quick tier, end to end: real Fashion-MNIST, every study, then the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_reproduce_writes_results_and_a_report(tmp_path: Path, fmnist_available: bool) -> None:
    if not fmnist_available:
        pytest.skip("Fashion-MNIST is not installed (run scripts/setup.sh)")
    out = tmp_path / "quick"
    cmd = [sys.executable, "-m", "miaudit.cli", "reproduce", "--quick", "--seeds", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={"COLUMNS": "160", **_env()})
    assert done.returncode == 0, done.stderr[-3000:]
    text = " ".join(done.stdout.split())
    for sid in "123456":
        assert f"Study {sid}:" in text
    assert "F5b: dropout lowers attack accuracy against the dense network:" in text
    assert f"html report written to {out / 'report.html'}" in text
    assert "train models" in done.stderr  # plain progress lines when not on a terminal
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["timings"]["models_trained"] > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10
    findings = json.loads((out / "findings.json").read_text())
    assert {f["id"] for f in findings} == {"F1", "F1b", "F2", "F3", "F4", "F5a", "F5b", "F6"}
    assert all(f["verdict"] in {"supported", "contradicted", "negligible", "inconclusive"} for f in findings)
    assert all(f["margin"] > 0 and "margin" in f["sentence"] for f in findings)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)

"""The README's "Audit your own model" examples run: their inputs are made, and the audit reads them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from miaudit.cli import app

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("skops")


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tabular_example(tmp_path: Path) -> None:
    args = _example("audit_tabular").make_inputs(tmp_path / "inputs")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", *args, "--n-refs", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "audit.json").read_text())
    assert rec["target"]["family"] == "sklearn" and rec["shadows"]["family"] == "family"
    assert rec["data"]["n_members"] == 284 and rec["data"]["n_classes"] == 2
    assert set(rec["attacks"]) == {"lira", "rmia", "loss"}
    assert rec["target"]["member_accuracy"] == 1.0
    assert (out / "report.html").is_file()


def test_cnn_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("examples.digits_cnn", None)
    args = _example("audit_cnn").make_inputs(tmp_path / "inputs", epochs=3)
    out = tmp_path / "audit"
    result = CliRunner().invoke(
        app, ["audit", *args, "--attack", "loss", "--n-shadows", "2", "--epochs", "2", "--out", str(out), "--no-report"]
    )
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "audit.json").read_text())
    assert rec["target"]["family"] == "torch" and rec["shadows"]["family"] == "family"
    assert rec["data"]["record_shape"] == [8, 8] and rec["data"]["n_features"] == 64
    assert rec["target"]["output_kind"] == "logits"
    assert rec["attacks"]["loss"]["queries"] == rec["data"]["n_members"] + rec["data"]["n_nonmembers"]

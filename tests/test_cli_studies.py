"""``miaudit studies list|show|export``, ``miaudit --version``, ``python -m miaudit`` and one-line errors."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import miaudit
from miaudit._extras import require_extra
from miaudit.cli import _export_studies, _find_study, _study_files, app, one_line_errors
from miaudit.errors import ConfigError
from miaudit.studies.schema import default_config_dir, load_studies

runner = CliRunner()
SHIPPED = Path(miaudit.__file__).parent / "configs"
TINY = Path(__file__).parent / "studies" / "configs_tiny"


def _flat(text: str) -> str:
    """The output with every run of whitespace as one space (rich wraps long lines)."""
    return " ".join(text.split())


def _grid_size(path: Path, *, quick: bool) -> int:
    """The number of settings of a study file, counted from its TOML alone: the product of its grid's list lengths."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    grid = dict(data.get("grid", {}))
    if quick:
        grid.update(data.get("quick", {}).get("grid", {}))
    return math.prod(len(values) for values in grid.values())


def _study_id(path: Path) -> str:
    return str(tomllib.loads(path.read_text(encoding="utf-8"))["id"])


def _table_rows(output: str) -> dict[str, list[str]]:
    """The body rows of a rich table printed to a non-terminal, by their first cell."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells
    return rows


def test_shipped_configs_are_found_inside_the_package() -> None:
    assert default_config_dir() == SHIPPED
    assert sorted(p.name for p in SHIPPED.glob("study*.toml")) == [f"study{i}.toml" for i in range(1, 9)]


def test_studies_list_shows_every_shipped_study_and_its_settings_counts() -> None:
    res = runner.invoke(app, ["studies", "list"])
    assert res.exit_code == 0, res.output
    rows = _table_rows(res.output)
    studies = load_studies()
    assert res.output.splitlines()[0] == f"{len(studies)} studies in {SHIPPED}"
    assert list(rows) == [s.id for s in studies] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    for study in studies:
        path = SHIPPED / f"study{study.id}.toml"
        expected = [study.id, study.title, study.paper_ref]
        expected += [str(_grid_size(path, quick=False)), str(_grid_size(path, quick=True))]
        expected += ["yes" if study.id in "123456" else "no (--studies)"]
        assert rows[study.id] == expected
    assert rows["2"][3:] == ["8", "3", "yes"]  # study 2: shadows 2..9, and 2, 4, 6 with --quick


def test_studies_list_reads_a_users_folder(tmp_path: Path) -> None:
    res = runner.invoke(app, ["studies", "list", "--config-dir", str(TINY)])
    assert res.exit_code == 0, res.output
    ids = sorted(_study_id(p) for p in TINY.glob("study*.toml"))
    assert sorted(_table_rows(res.output)) == ids

    res = runner.invoke(app, ["studies", "list", "--config-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert re.search(r"no study\*\.toml files in .*; `miaudit studies export DIR` writes", _flat(res.output))
    with pytest.raises(ConfigError, match=r"no study\*\.toml files in .*studies export DIR"):
        _study_files(tmp_path)
    with pytest.raises(ConfigError, match="config folder .*nowhere does not exist; pass --config-dir"):
        _study_files(tmp_path / "nowhere")


@pytest.mark.parametrize("study_id", ["2", "5"])
def test_studies_show_prints_the_toml_and_its_settings_count(study_id: str) -> None:
    res = runner.invoke(app, ["studies", "show", study_id])
    assert res.exit_code == 0, res.output
    path = SHIPPED / f"study{study_id}.toml"
    assert path.read_text(encoding="utf-8").rstrip("\n") in res.output
    full, quick = _grid_size(path, quick=False), _grid_size(path, quick=True)
    assert f"# study {study_id} expands to {full} settings ({quick} with --quick)" in res.output


def test_studies_show_unknown_id_names_the_ids_there_are() -> None:
    res = runner.invoke(app, ["studies", "show", "9"])
    assert res.exit_code == 2
    assert "unknown study id '9'; available: 1, 2, 3, 4, 5, 6, 7, 8" in _flat(res.output)
    assert "Traceback" not in res.output
    with pytest.raises(ConfigError, match=r"unknown study id .9.; available: 1, 2, 3, 4, 5, 6, 7, 8 \(`miaudit"):
        _find_study("9", None)


def test_studies_export_copies_the_shipped_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "my-studies"
    res = runner.invoke(app, ["studies", "export", str(dest)])
    assert res.exit_code == 0, res.output
    shipped = [*sorted(SHIPPED.glob("study*.toml")), SHIPPED / "README.md"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in shipped)
    for p in shipped:
        assert (dest / p.name).read_bytes() == p.read_bytes()
    assert [s.id for s in load_studies(config_dir=dest)] == [s.id for s in load_studies()]

    edited = "# my own study 2\n" + (dest / "study2.toml").read_text(encoding="utf-8")
    (dest / "study2.toml").write_text(edited, encoding="utf-8")
    res = runner.invoke(app, ["studies", "export", str(dest)])
    assert res.exit_code == 2
    assert re.search(r"already holds study1\.toml, study2\.toml, .*README\.md; pass --force", _flat(res.output))
    assert (dest / "study2.toml").read_text(encoding="utf-8") == edited  # left alone
    with pytest.raises(ConfigError, match=r"already holds study1\.toml.*; pass --force to overwrite them"):
        _export_studies(dest)

    res = runner.invoke(app, ["studies", "export", str(dest), "--force"])
    assert res.exit_code == 0, res.output
    assert (dest / "study2.toml").read_bytes() == (SHIPPED / "study2.toml").read_bytes()


def test_studies_export_into_a_file_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    res = runner.invoke(app, ["studies", "export", str(target)])
    assert res.exit_code == 2
    with pytest.raises(ConfigError, match="is a file, not a folder; choose a folder"):
        _export_studies(target, force=True)
    assert target.read_text() == "x"


def test_version_names_miaudit_torch_and_the_native_kernels() -> None:
    import torch

    from miaudit.training.native import native_status

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"miaudit {miaudit.__version__} ({Path(miaudit.__file__).parent})"
    assert lines[1] == f"torch {torch.__version__}"
    assert lines[2] == f"native kernels: {native_status()}"


def test_python_dash_m_miaudit_is_the_same_app(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "miaudit", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("attack", "compare", "reproduce", "report", "data", "studies"):
        assert re.search(rf"│ {command}\s", proc.stdout), command
    proc = subprocess.run(
        [sys.executable, "-m", "miaudit", "studies", "show", "nope"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error: unknown study id 'nope'; available: 1, 2, 3, 4, 5, 6, 7, 8" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_extra_is_one_line_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info, one_line_errors():
        require_extra("miaudit_no_such_module", "dp")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: this needs the optional dependency miaudit_no_such_module: pip install 'miaudit[dp]'\n"

    # an import of an extra's module that escaped a command becomes the same line, naming its extra
    with pytest.raises(SystemExit), one_line_errors():
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
    err = capsys.readouterr().err
    assert err == "error: this needs the optional dependency fastapi: pip install 'miaudit[serve]'\n"

    # any other missing module is a bug, not a missing extra: its traceback stays
    with pytest.raises(ModuleNotFoundError, match="miaudit_other"), one_line_errors():
        raise ModuleNotFoundError("No module named 'miaudit_other'", name="miaudit_other")


def test_the_console_script_prints_a_missing_extra_as_one_line(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from miaudit._extras import require_extra\n"
        "from miaudit.cli import app, main\n"
        "@app.command('needs-dask')\n"
        "def needs_dask() -> None:\n"
        "    require_extra('miaudit_no_such_module.distributed', 'dask')\n"
        "sys.argv = ['miaudit', 'needs-dask']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "error: this needs the optional dependency miaudit_no_such_module: pip install 'miaudit[dask]'\n"
    )

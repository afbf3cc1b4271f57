"""The distributions carry everything the commands need, and an installed wheel works from any folder.

The sdist and the wheel are built without build isolation (no network) from a copy of the source tree, so a
stale ``build/`` folder of the checkout cannot leak into them; the wheel is built from the sdist, so it is
also a check that the sdist is complete. The slow test installs the wheel into a fresh virtual environment
and runs the commands from a folder outside the checkout.
"""

from __future__ import annotations

import csv
import email
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import miaudit
from miaudit._extras import EXTRAS, extra_for_module, require_extra
from miaudit.errors import ConfigError
from miaudit.studies.schema import default_config_dir, load_studies

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "miaudit"
STUDY_FILES = [f"study{i}.toml" for i in range(1, 9)]
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
_NOT_SOURCES = (".venv", ".git", "build", "dist", "runs", "test-artifacts", "*.egg-info", "__pycache__", ".*cache",
                ".hypothesis", "*.so")  # fmt: skip


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``cmd``; its stdout, or a test failure quoting its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    said = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{said}"
    return proc.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sdist": ..., "wheel": ...}`` built by ``python -m build --no-isolation`` (wheel from the sdist)."""
    pytest.importorskip("build", reason="needs the `build` package (the dev extra): pip install 'miaudit[dev]'")
    base = tmp_path_factory.mktemp("dists")
    source, out = base / "source", base / "dist"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)], cwd=base)
    (sdist,) = out.glob("miaudit-*.tar.gz")
    (wheel,) = out.glob("miaudit-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_wheel_carries_the_study_configs_and_the_c_kernels(dists: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    for study in STUDY_FILES:
        assert f"miaudit/configs/{study}" in names
    assert {"miaudit/configs/README.md", "miaudit/configs/__init__.py", "miaudit/__main__.py"} <= names
    kernels = sorted(p.name for p in (PACKAGE / "training" / "_native").iterdir() if p.suffix in (".c", ".h"))
    assert {"adam.c", "gauss.c", "mlp1.c", "adam_math.h"} <= set(kernels)
    for name in kernels:
        assert f"miaudit/training/_native/{name}" in names
    # every module of the source tree is in the wheel, and nothing of the tests
    modules = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names
    assert not any(n.startswith("tests/") for n in names)


def test_the_wheel_metadata_has_what_a_registry_page_needs(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        info = f"miaudit-{miaudit.__version__}.dist-info"
        meta = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
        assert "MIT License" in wheel.read(f"{info}/licenses/LICENSE").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert meta["Version"] == miaudit.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# miaudit")  # the README is the long description
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    assert {url.split(",")[0] for url in meta.get_all("Project-URL")} >= {"Homepage", "Repository", "Issues"}
    assert set(meta.get_all("Provides-Extra")) == {"dp", "serve", "dask", "audit", "all", "dev"}
    assert re.search(r"^miaudit = miaudit\.cli:main$", entry_points, re.MULTILINE)


def test_the_sdist_carries_the_c_sources_the_configs_and_the_license(dists: dict[str, Path]) -> None:
    top = dists["sdist"].name.removesuffix(".tar.gz")
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.removeprefix(f"{top}/") for n in sdist.getnames()}
    kernels = [p.name for p in (PACKAGE / "training" / "_native").iterdir() if p.suffix in (".c", ".h")]
    assert {f"src/miaudit/training/_native/{k}" for k in kernels} <= names
    assert {f"src/miaudit/configs/{s}" for s in STUDY_FILES} <= names
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "constraints.txt"} <= names


def test_extras_match_the_features_that_name_them() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    assert set(extras) == {*EXTRAS, "all", "dev"}
    (everything,) = extras["all"]
    assert everything.startswith("miaudit[") and set(everything[8:].rstrip("]").split(",")) == set(EXTRAS)
    for extra, modules in EXTRAS.items():
        distributions = {re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in extras[extra]}
        assert distributions <= set(modules), extra
        assert all(extra_for_module(d) == extra for d in distributions)
    assert any(req.startswith("build") for req in extras["dev"])
    assert "version" in _pyproject()["project"]["dynamic"]  # type: ignore[index]


def test_require_extra_imports_what_is_there_and_names_the_extra_of_what_is_not() -> None:
    assert require_extra("csv", "audit") is csv
    with pytest.raises(ConfigError, match=r"^this needs the optional dependency miaudit_no_such_module: "
                                          r"pip install 'miaudit\[dp\]'$"):  # fmt: skip
        require_extra("miaudit_no_such_module", "dp")
    with pytest.raises(ConfigError, match=r"optional dependency miaudit_no_such_pkg: pip install 'miaudit\[dask\]'"):
        require_extra("miaudit_no_such_pkg.distributed", "dask")
    with pytest.raises(ValueError, match="unknown extra 'gpu'; miaudit's extras are dp, serve, dask, audit"):
        require_extra("csv", "gpu")


def _zipped_package(tmp_path: Path, files: dict[str, bytes]) -> zipfile.Path:
    """``miaudit/configs/`` of a zip holding ``files``, as importlib.resources gives it for a zip import."""
    archive = tmp_path / "miaudit.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("miaudit/configs/__init__.py", "")
        for name, data in files.items():
            z.writestr(f"miaudit/configs/{name}", data)
    return zipfile.Path(archive, "miaudit/configs/")


def test_shipped_configs_are_extracted_once_from_a_zip_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import resources

    shipped = {p.name: p.read_bytes() for p in (PACKAGE / "configs").iterdir() if p.suffix in (".toml", ".md")}
    root = _zipped_package(tmp_path, shipped)
    monkeypatch.setattr(resources, "files", lambda package: root)
    monkeypatch.setenv("MIAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    folder = default_config_dir()
    assert folder.parent == tmp_path / "cache" / "configs"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == shipped
    assert [s.id for s in load_studies(config_dir=folder)] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    stamp = (folder / "study1.toml").stat().st_mtime_ns
    assert default_config_dir() == folder  # the same contents: the same folder, not written again
    assert (folder / "study1.toml").stat().st_mtime_ns == stamp

    changed = {**shipped, "study1.toml": shipped["study1.toml"] + b"\n# edited\n"}
    monkeypatch.setattr(resources, "files", lambda package: _zipped_package(tmp_path / "other", changed))
    (tmp_path / "other").mkdir()
    assert default_config_dir() != folder  # other contents: another folder


def test_missing_shipped_configs_say_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import resources

    monkeypatch.setattr(resources, "files", lambda package: _zipped_package(tmp_path, {"README.md": b"#"}))
    with pytest.raises(ConfigError, match=r"no study\*\.toml in miaudit\.configs\); reinstall miaudit, or pass "):
        default_config_dir()
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    with pytest.raises(ConfigError, match=r"no study\*\.toml in .*\); reinstall miaudit, or pass --config-dir DIR"):
        default_config_dir()

    def no_package(package: str) -> object:
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)

    monkeypatch.setattr(resources, "files", no_package)
    with pytest.raises(ConfigError, match=r"\(no package miaudit\.configs\); reinstall miaudit"):
        default_config_dir()


def _clean_env(cache: Path) -> dict[str, str]:
    """This process's environment without what points at the checkout, its environment or its cache.

    ``MIAUDIT_DATA_DIR`` stays: it says where the dataset is, not where miaudit is.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env = {k: v for k, v in env.items() if not k.startswith("MIAUDIT_") or k == "MIAUDIT_DATA_DIR"}
    return {**env, "MIAUDIT_CACHE_DIR": str(cache), "COLUMNS": "160"}


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_environment_runs_from_any_folder(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert ROOT not in elsewhere.parents
    env = _clean_env(tmp_path / "cache")
    constraints = str(ROOT / "constraints.txt")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", constraints]
    _run([*pip, "torch==2.13.0"], cwd=tmp_path, env=env, timeout=900)  # the same torch as here, first
    _run([*pip, str(dists["wheel"])], cwd=tmp_path, env=env, timeout=900)
    miaudit_cmd = str(venv / "bin" / "miaudit")

    version = _run([miaudit_cmd, "--version"], cwd=elsewhere, env=env).splitlines()
    installed = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert version[0] == f"miaudit {miaudit.__version__} ({installed / 'miaudit'})"  # the installed copy
    assert version[1].startswith("torch 2.13.0")
    assert version[2].startswith("native kernels: adam ")

    assert "--attack" in _run([miaudit_cmd, "attack", "--help"], cwd=elsewhere, env=env)
    listing = _run([miaudit_cmd, "studies", "list"], cwd=elsewhere, env=env)
    assert listing.splitlines()[0] == f"8 studies in {installed / 'miaudit' / 'configs'}"
    assert "studies" in _run([str(venv / "bin" / "python"), "-m", "miaudit", "--help"], cwd=elsewhere, env=env)

    if not FMNIST.exists() and "MIAUDIT_DATA_DIR" not in env:
        pytest.skip(f"Fashion-MNIST is not installed at {FMNIST.parent} (nor MIAUDIT_DATA_DIR set): the install "
                    "checks passed, reproduce not run")  # fmt: skip
    out = elsewhere / "out"
    args = ["reproduce", "--quick", "--studies", "2", "--seeds", "2", "--out", str(out), "--no-report"]
    printed = _run([miaudit_cmd, *args], cwd=elsewhere, env=env, timeout=900)
    assert "Study 2: Number of shadow models" in printed
    with (out / "summary.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "accuracy"]
    quick = tomllib.loads((PACKAGE / "configs" / "study2.toml").read_text(encoding="utf-8"))["quick"]
    assert [int(r["n_shadows"]) for r in rows] == quick["grid"]["n_shadows"]
    for r in rows:
        assert (r["study"], int(r["target_size"]), int(r["n"])) == ("2", quick["base"]["target_size"], 2)
        assert math.isfinite(float(r["mean"])) and 0.45 < float(r["mean"]) < 0.8

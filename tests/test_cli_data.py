"""``miaudit data info`` and ``miaudit data fetch`` through the command line (typer's CliRunner).

``data info`` runs on the real Fashion-MNIST files (the Debian package installs them in
/usr/share/datasets/fashion-mnist; see tests/data/conftest.py) and on a tiny fake copy whose
checksums the test sets, so that a mismatch can be shown too.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.data import fashion_mnist as fm
from miaudit.data.idx import write_idx

REAL_DIR = fm.SYSTEM_DIR
runner = CliRunner()
needs_real = pytest.mark.skipif(
    not all((REAL_DIR / name).is_file() for name in fm.FILES),
    reason=f"real Fashion-MNIST not installed at {REAL_DIR} (apt-get install dataset-fashion-mnist)",
)

# 3 records of each class in the training file, 1 in the test file
FAKE_TRAIN_LABELS = np.repeat(np.arange(10, dtype=np.uint8), 3)
FAKE_TEST_LABELS = np.arange(10, dtype=np.uint8)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _write_fake(directory: Path) -> dict[str, str]:
    """Fake Fashion-MNIST files in ``directory``; return their decompressed sha256 by official name."""
    rng = np.random.default_rng(7)
    arrays = {
        fm.TRAIN_IMAGES: rng.integers(0, 256, size=(30, 2, 2), dtype=np.uint8),
        fm.TRAIN_LABELS: FAKE_TRAIN_LABELS,
        fm.TEST_IMAGES: rng.integers(0, 256, size=(10, 2, 2), dtype=np.uint8),
        fm.TEST_LABELS: FAKE_TEST_LABELS,
    }
    sums = {}
    for name, array in arrays.items():
        path = write_idx(directory / name, array)
        sums[name] = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    return sums


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake Fashion-MNIST directory whose checksums the loader accepts; the search path is isolated."""
    directory = tmp_path / "fake"
    sums = _write_fake(directory)
    monkeypatch.setattr(fm, "SHA256", sums)
    shapes = {fm.TRAIN_IMAGES: (30, 2, 2), fm.TRAIN_LABELS: (30,), fm.TEST_IMAGES: (10, 2, 2), fm.TEST_LABELS: (10,)}
    monkeypatch.setattr(fm, "SHAPES", shapes)
    monkeypatch.delenv(fm.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(fm.CACHE_DIR_ENV, str(tmp_path / "cache-root"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    return directory


@needs_real
def test_data_info_plain_on_real_data() -> None:
    res = runner.invoke(app, ["data", "info", "--data-dir", str(REAL_DIR)])
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert f"Fashion-MNIST found in {REAL_DIR.resolve()} (verified)" in out
    assert "70000 records: 60000 training, 10000 test" in out
    for label, name in enumerate(fm.CLASS_NAMES):
        assert f"{label} │ {name} │ 7000" in out
    for name in fm.FILES:
        size = (REAL_DIR / name).stat().st_size
        assert f"{name} │ {size} │ ok" in out
    assert "MISMATCH" not in out


@needs_real
def test_data_info_json_on_real_data() -> None:
    res = runner.invoke(app, ["data", "info", "--json", "--data-dir", str(REAL_DIR)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["directory"] == str(REAL_DIR.resolve())
    assert info["n_records"] == {"train": 60000, "test": 10000, "total": 70000}
    assert [c["count"] for c in info["records_per_class"]] == [7000] * 10
    assert [c["name"] for c in info["records_per_class"]] == list(fm.CLASS_NAMES)
    assert list(info["files"]) == list(fm.FILES)
    assert all(f["sha256_ok"] is True for f in info["files"].values())
    assert info["checksums_ok"] is True
    assert info["searched"] == [
        {"place": "data_dir argument (--data-dir)", "path": str(REAL_DIR), "found": True, "used": True, "missing": []}
    ]


def test_data_info_plain_counts_per_class(fake_dir: Path) -> None:
    res = runner.invoke(app, ["data", "info", "--data-dir", str(fake_dir)])
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert "40 records: 30 training, 10 test" in out
    for label, name in enumerate(fm.CLASS_NAMES):
        assert f"{label} │ {name} │ 4" in out


def test_data_info_reports_a_mismatch_and_unverified(fake_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fm.SHA256, fm.TEST_IMAGES, "0" * 64)
    res = runner.invoke(app, ["data", "info", "--data-dir", str(fake_dir)])
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert "(CHECKSUM MISMATCH)" in out
    assert f"{fm.TEST_IMAGES} │ {(fake_dir / fm.TEST_IMAGES).stat().st_size} │ MISMATCH" in out
    assert f"{fm.TRAIN_IMAGES} │ {(fake_dir / fm.TRAIN_IMAGES).stat().st_size} │ ok" in out
    res = runner.invoke(app, ["data", "info", "--no-verify", "--json", "--data-dir", str(fake_dir)])
    info = json.loads(res.output)
    assert info["checksums_ok"] is None and all(f["sha256_ok"] is None for f in info["files"].values())
    res = runner.invoke(app, ["data", "info", "--no-verify", "--data-dir", str(fake_dir)])
    assert "(not verified)" in _flat(res.output) and "not checked" in res.output


def test_data_info_json_matches_the_typed_record(fake_dir: Path) -> None:
    res = runner.invoke(app, ["data", "info", "--json", "--data-dir", str(fake_dir)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == fm.fashion_mnist_info(fake_dir).to_dict()


def test_data_info_missing_data_exits_with_the_fix(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    out = _flat(res.output)
    assert "Fashion-MNIST not found in the given data directory" in out and "miaudit data fetch" in out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, fake_dir: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving ``fake_dir`` under /data/; yields the base URL."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "data").symlink_to(fake_dir)
    handler = functools.partial(_Quiet, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/data/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_data_fetch_downloads_and_verifies(served: str, tmp_path: Path, fake_dir: Path) -> None:
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["data", "fetch", "--dest", str(dest), "--base-url", served])
    assert res.exit_code == 0, res.output
    assert f"Fashion-MNIST is in {dest.resolve()}" in _flat(res.output)
    for name in fm.FILES:
        assert (dest / name).read_bytes() == (fake_dir / name).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(fm.FILES)  # no temporary file left


def test_data_fetch_tries_mirrors_in_order(served: str, tmp_path: Path) -> None:
    dead = served.replace("/data/", "/missing/")
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["data", "fetch", "--dest", str(dest), "--url", dead, "--url", served])
    assert res.exit_code == 0, res.output
    assert all((dest / name).is_file() for name in fm.FILES)


def test_data_fetch_checksum_mismatch_exits_with_the_fix(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fm.SHA256, fm.TRAIN_LABELS, "0" * 64)
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["data", "fetch", "--dest", str(dest), "--base-url", served])
    assert res.exit_code == 2
    out = _flat(res.output)
    assert f"downloaded {fm.TRAIN_LABELS} does not match the official Fashion-MNIST checksum" in out
    assert "--base-url" in out
    assert not (dest / fm.TRAIN_LABELS).exists()
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".")]

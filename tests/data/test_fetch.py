from __future__ import annotations

import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from miaudit.data import fashion_mnist as fm
from miaudit.errors import ChecksumError, DataError


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; records request paths; ``truncate`` paths get half a body then a hang-up."""

    requests: list[str]
    truncate: set[str]

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if name in self.truncate:
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        handler = type("Handler", (_Handler,), {"requests": [], "truncate": set()})
        self.handler = handler
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[str]:
        return self.handler.requests

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path: Path, fake_checksums: dict[str, str], fake_writer) -> Iterator[Server]:
    """A local HTTP server whose /data/ holds the fake .gz files."""
    fake_writer(tmp_path / "www" / "data")
    srv = Server(tmp_path / "www")
    yield srv
    srv.close()


def _leftovers(directory: Path) -> list[str]:
    """Hidden temporary files left in ``directory`` (atomic writes use ``.<name>.<pid>.<token>.tmp``)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".part")))


def test_download(server: Server, tmp_path: Path, fake_checksums: dict[str, str]) -> None:
    dest = tmp_path / "dest" / "nested"
    calls: list[tuple[str, int, int | None]] = []
    out = fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5, progress=lambda *a: calls.append(a))
    assert out == dest.resolve()
    for name in fm.FILES:
        assert (dest / name).read_bytes() == (server.root / "data" / name).read_bytes()
        size = (dest / name).stat().st_size
        assert calls.count((name, size, size)) == 1 and (name, 0, size) in calls
    assert sorted(server.requests) == sorted(f"/data/{n}" for n in fm.FILES)
    assert _leftovers(dest) == []
    assert fm.load_fashion_mnist(dest).n_samples == 40


def test_default_dest_is_user_cache(server: Server, places) -> None:
    assert fm.fetch_fashion_mnist(base_url=server.url, timeout=5) == places.cache.resolve()
    assert fm.locate_fashion_mnist() == places.cache.resolve()


def test_skip_if_present_unless_force(server: Server, tmp_path: Path) -> None:
    dest = fm.fetch_fashion_mnist(tmp_path / "dest", base_url=server.url, timeout=5)
    n = len(server.requests)
    fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5)
    assert len(server.requests) == n
    (dest / fm.TEST_LABELS).write_bytes(b"garbage")  # present but invalid: fetched again
    fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5)
    assert server.requests[n:] == [f"/data/{fm.TEST_LABELS}"]
    fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5, force=True)
    assert len(server.requests) == n + 1 + 4


def test_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dest"
    monkeypatch.setitem(fm.SHA256, fm.TRAIN_LABELS, "0" * 64)
    with pytest.raises(
        ChecksumError,
        match=rf"(?s){re.escape(fm.TRAIN_LABELS)}.*nothing was saved.*"
        rf"{re.escape(server.url)}.*expected {'0' * 64}.*dataset-fashion-mnist",
    ):
        fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5)
    assert not (dest / fm.TRAIN_LABELS).exists()
    assert _leftovers(dest) == []


def test_404_names_url(server: Server, tmp_path: Path) -> None:
    (server.root / "data" / fm.TEST_IMAGES).unlink()
    dest = tmp_path / "dest"
    with pytest.raises(
        DataError,
        match=rf"(?s){re.escape(server.url + fm.TEST_IMAGES)}: HTTP Error 404.*"
        "apt-get install dataset-fashion-mnist",
    ) as info:
        fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5)
    assert not isinstance(info.value, ChecksumError)
    assert not (dest / fm.TEST_IMAGES).exists() and _leftovers(dest) == []


def test_mirror_list(server: Server, tmp_path: Path) -> None:
    dead = server.url.replace("/data/", "/missing/")
    dest = fm.fetch_fashion_mnist(tmp_path / "dest", base_url=[dead, server.url.rstrip("/")], timeout=5)
    assert all((dest / n).is_file() for n in fm.FILES)
    assert sum(r.startswith("/missing/") for r in server.requests) == 4


def test_interrupted_download_is_atomic(server: Server, tmp_path: Path, fake_checksums) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    old = dest / fm.TRAIN_IMAGES
    old.write_bytes(b"previous, damaged file")
    server.handler.truncate.add(fm.TRAIN_IMAGES)
    with pytest.raises(DataError, match=re.escape(server.url + fm.TRAIN_IMAGES) + ": connection closed after"):
        fm.fetch_fashion_mnist(dest, base_url=server.url, timeout=5)
    assert old.read_bytes() == b"previous, damaged file"  # never replaced by a partial download
    assert _leftovers(dest) == []


def test_broken_gzip_is_checksum_error(server: Server, tmp_path: Path) -> None:
    (server.root / "data" / fm.TEST_LABELS).write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(ChecksumError, match=rf"{re.escape(fm.TEST_LABELS)}: not a valid gzip stream"):
        fm.fetch_fashion_mnist(tmp_path / "dest", base_url=server.url, timeout=5)
    assert not (tmp_path / "dest" / fm.TEST_LABELS).exists()


def test_connection_refused(tmp_path: Path, fake_checksums) -> None:
    srv = Server(tmp_path)
    url = srv.url
    srv.close()
    with pytest.raises(DataError, match=rf"(?s){re.escape(url)}.*refused.*apt-get install dataset-fashion-mnist"):
        fm.fetch_fashion_mnist(tmp_path / "dest", base_url=url, timeout=5)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="base_url must be a URL"):
        fm.fetch_fashion_mnist(tmp_path, base_url=[])
    with pytest.raises(DataError, match="timeout must be a positive"):
        fm.fetch_fashion_mnist(tmp_path, timeout=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot create download directory"):
        fm.fetch_fashion_mnist(blocker / "sub")


def test_fetch_from_real_files(tmp_path: Path, fmnist_available: bool) -> None:
    """The real (Debian re-compressed) files pass the official checksums when served over HTTP."""
    if not fmnist_available:  # in CI this fixture fails instead
        pytest.skip("real Fashion-MNIST not found where the library looks (apt-get install dataset-fashion-mnist)")
    real = fm.locate_fashion_mnist()
    www = tmp_path / "www" / "data"
    www.mkdir(parents=True)
    for name in (fm.TRAIN_LABELS, fm.TEST_LABELS):  # the small ones
        shutil.copy(real / name, www / name)
    srv = Server(tmp_path / "www")
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        for name in (fm.TRAIN_IMAGES, fm.TEST_IMAGES):
            (dest / name).symlink_to(real / name)  # already present and valid: skipped
        fm.fetch_fashion_mnist(dest, base_url=srv.url, timeout=5)
        assert sorted(srv.requests) == sorted(f"/data/{n}" for n in (fm.TRAIN_LABELS, fm.TEST_LABELS))
    finally:
        srv.close()

"""Fashion-MNIST from its official IDX files: search path, checksums, loading and download.

The four official files are looked for, in this order, in

1. the ``data_dir`` argument (``--data-dir``); if given, it must hold the files,
2. the directory in the environment variable ``MIAUDIT_DATA_DIR``,
3. the user cache, ``platformdirs.user_cache_dir("miaudit")/fashion-mnist`` (the cache root can be
   moved with ``MIAUDIT_CACHE_DIR``); ``miaudit data fetch`` downloads into it,
4. :data:`SYSTEM_DIR`, where the Debian package ``dataset-fashion-mnist`` installs them.

A directory qualifies if it holds each file either gzipped (official name) or decompressed (the name
without ``.gz``). Checksums are the sha256 of the *decompressed* bytes, because Debian re-compresses
the files. Expected checksums and shapes are module-level dicts read at call time, so tests can
replace them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import platformdirs

from miaudit._io import atomic_path
from miaudit.data.base import Dataset
from miaudit.data.idx import GZIP_MAGIC, parse_idx, read_decompressed
from miaudit.data.info import ClassCount, FashionMNISTInfo, FileInfo, SearchedPlace
from miaudit.errors import ChecksumError, DataError

__all__ = [
    "CACHE_DIR_ENV",
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_URL",
    "FILES",
    "MIRRORS",
    "SHA256",
    "SHAPES",
    "SYSTEM_DIR",
    "ClassCount",
    "FashionMNISTInfo",
    "FileInfo",
    "SearchedPlace",
    "default_cache_dir",
    "fashion_mnist_info",
    "fetch_fashion_mnist",
    "load_fashion_mnist",
    "locate_fashion_mnist",
]

logger = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

#: The official file names, in the order train images, train labels, test images, test labels.
FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

#: sha256 of each file's decompressed bytes.
SHA256: dict[str, str] = {
    TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: Expected array shape of each file.
SHAPES: dict[str, tuple[int, ...]] = {
    TRAIN_IMAGES: (60000, 28, 28),
    TRAIN_LABELS: (60000,),
    TEST_IMAGES: (10000, 28, 28),
    TEST_LABELS: (10000,),
}

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

DEFAULT_URL = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"
#: Official locations of the files, tried in order by ``fetch_fashion_mnist(base_url=MIRRORS)``.
MIRRORS: tuple[str, ...] = (DEFAULT_URL, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "MIAUDIT_DATA_DIR"
CACHE_DIR_ENV = "MIAUDIT_CACHE_DIR"

_FIX_MISSING = (
    "Fix: run `miaudit data fetch` (downloads the four files, about 30 MB, into {cache}), "
    "or install the Debian package: apt-get install dataset-fashion-mnist, "
    "or point --data-dir / MIAUDIT_DATA_DIR at a directory holding " + ", ".join(FILES) + "."
)
_FIX_CORRUPT = (
    "Fix: delete it and run `miaudit data fetch`, or reinstall the Debian package dataset-fashion-mnist "
    "(apt-get install --reinstall dataset-fashion-mnist)."
)

_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------
# Search path


def default_cache_dir() -> Path:
    """The user cache directory for Fashion-MNIST (where ``miaudit data fetch`` writes).

    ``$MIAUDIT_CACHE_DIR/fashion-mnist`` if that variable is set, else
    ``platformdirs.user_cache_dir("miaudit")/fashion-mnist``.
    """
    root = os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("miaudit")
    return Path(root).expanduser() / "fashion-mnist"


def _scan(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each official name to the file holding it in ``directory`` (gzipped preferred)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in FILES:
        for candidate in (directory / name, directory / name.removesuffix(".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def _places() -> list[tuple[str, Path]]:
    """The implicit search path: (description, directory) in order."""
    places = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        places.append((f"${DATA_DIR_ENV}", Path(env).expanduser()))
    cache_label = f"user cache (${CACHE_DIR_ENV})" if os.environ.get(CACHE_DIR_ENV) else "user cache"
    places.append((cache_label, default_cache_dir()))
    places.append(("system (Debian package dataset-fashion-mnist)", SYSTEM_DIR))
    return places


def _search(data_dir: str | Path | None) -> tuple[Path | None, tuple[SearchedPlace, ...]]:
    """Return the first qualifying directory (or None) and a record of every place looked at."""
    places = [("data_dir argument (--data-dir)", Path(data_dir).expanduser())] if data_dir is not None else _places()
    chosen: Path | None = None
    searched: list[SearchedPlace] = []
    for label, directory in places:
        _, missing = _scan(directory)
        ok = not missing
        searched.append(
            SearchedPlace(
                place=label, path=str(directory), found=ok, used=ok and chosen is None, missing=tuple(missing)
            )
        )
        if ok and chosen is None:
            chosen = directory.resolve()
        elif not ok and label == f"${DATA_DIR_ENV}":
            logger.warning(
                "%s=%s does not hold Fashion-MNIST (missing %s); looking further",
                DATA_DIR_ENV,
                directory,
                ", ".join(missing),
            )
    return chosen, tuple(searched)


def _describe(searched: Sequence[SearchedPlace]) -> str:
    lines = []
    for s in searched:
        state = (
            "found"
            if s.found
            else ("directory does not exist" if not Path(s.path).is_dir() else "missing " + ", ".join(s.missing))
        )
        lines.append(f"  - {s.place}: {s.path} ({state})")
    return "\n".join(lines)


def locate_fashion_mnist(data_dir: str | Path | None = None) -> Path:
    """Find the directory holding the Fashion-MNIST files.

    Parameters
    ----------
    data_dir : str or Path, optional
        Use this directory and nothing else; without it, search ``$MIAUDIT_DATA_DIR``, the user cache
        and :data:`SYSTEM_DIR`, in that order.

    Returns
    -------
    Path
        The resolved directory.

    Raises
    ------
    DataError
        If ``data_dir`` lacks a file, or no place on the search path holds all four; the message
        lists every place searched and how to get the data.
    """
    chosen, searched = _search(data_dir)
    if chosen is not None:
        return chosen
    fix = _FIX_MISSING.format(cache=default_cache_dir())
    if data_dir is not None:
        raise DataError(
            f"Fashion-MNIST not found in the given data directory (no fallback to other places):\n"
            f"{_describe(searched)}\n{fix}"
        )
    raise DataError(f"Fashion-MNIST not found. Searched, in order:\n{_describe(searched)}\n{fix}")


# --------------------------------------------------------------------------------------------------
# Checksums


_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    """What identifies a file's contents without reading them: path, size, mtime, and the inode and ctime.

    A rewrite that keeps the size and restores the mtime (``cp -p``, ``rsync -t``, ``tar x``) still
    changes the ctime (the kernel sets it on every write and on the mtime's restoring) or the inode.
    """
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _sha256_decompressed(path: Path) -> str:
    """sha256 of the decompressed bytes of ``path``, streamed; memoised by :func:`_stat_key`."""
    key = _stat_key(path)
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream or unreadable file ({exc}). {_FIX_CORRUPT}") from exc
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _checksum_error(path: Path, name: str, actual: str, *, expected: str) -> ChecksumError:
    return ChecksumError(
        f"{path}: sha256 of the decompressed contents is {actual}, expected {expected} "
        f"(official Fashion-MNIST {name}); the file is corrupt or not the official data. {_FIX_CORRUPT}"
    )


# --------------------------------------------------------------------------------------------------
# Loading


def load_fashion_mnist(data_dir: str | Path | None = None, *, verify: bool = True) -> Dataset:
    """Load all 70,000 Fashion-MNIST records (train then test, pooled).

    Parameters
    ----------
    data_dir : str or Path, optional
        Directory holding the four files; see :func:`locate_fashion_mnist` for the search without it.
    verify : bool, default=True
        Check the sha256 of each file's decompressed bytes against :data:`SHA256`.

    Returns
    -------
    Dataset
        X an ndarray of shape (70000, 784), float32 in [0, 1] (pixel / 255); y an ndarray of shape
        (70000,), int64 in 0..9; records 0..59999 are the official training set. The result is cached
        in-process (keyed by directory, file sizes and times, ``verify`` and the expected checksums
        and shapes), so later calls are free; its arrays are read-only.

    Raises
    ------
    DataError
        If the files are missing, not valid IDX, of the wrong shape, or labels are outside 0..9.
    ChecksumError
        If ``verify`` and a file's checksum differs.
    """
    directory = locate_fashion_mnist(data_dir)
    found, _ = _scan(directory)
    files = tuple((name, *_stat_key(found[name])) for name in FILES)
    expected = (tuple(sorted(SHA256.items())), tuple(sorted(SHAPES.items())))
    return _load_cached(str(directory), files, bool(verify), expected)


@functools.lru_cache(maxsize=1)  # one pooled copy is about 220 MB
def _load_cached(
    directory: str,
    files: tuple[tuple[str, str, int, int, int, int], ...],
    verify: bool,
    expected: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, tuple[int, ...]], ...]],
) -> Dataset:
    sha256, shapes = dict(expected[0]), dict(expected[1])
    arrays: dict[str, np.ndarray] = {}
    for name, path_str, size, mtime_ns, inode, ctime_ns in files:
        path = Path(path_str)
        raw = read_decompressed(path, hint=_FIX_CORRUPT)
        if verify:
            actual = hashlib.sha256(raw).hexdigest()
            _DIGESTS[(path_str, size, mtime_ns, inode, ctime_ns)] = actual
            if actual != sha256[name]:
                raise _checksum_error(path, name, actual, expected=sha256[name])
        array = parse_idx(raw, source=path_str, hint=_FIX_CORRUPT)
        del raw
        if array.shape != tuple(shapes[name]) or array.dtype != np.uint8:
            raise DataError(
                f"{path}: expected an array of shape {tuple(shapes[name])} and dtype uint8 for {name}, "
                f"got shape {array.shape} and dtype {array.dtype}. {_FIX_CORRUPT}"
            )
        arrays[name] = array
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if len(arrays[images]) != len(arrays[labels]):
            raise DataError(
                f"{directory}: {images} has {len(arrays[images])} images but {labels} has "
                f"{len(arrays[labels])} labels. {_FIX_CORRUPT}"
            )
        if arrays[labels].max(initial=0) >= len(CLASS_NAMES):
            raise DataError(
                f"{directory}/{labels}: labels must lie in 0..{len(CLASS_NAMES) - 1}, "
                f"found {int(arrays[labels].max())}. {_FIX_CORRUPT}"
            )
    train, test = arrays[TRAIN_IMAGES], arrays[TEST_IMAGES]
    n_train, n = len(train), len(train) + len(test)
    X = np.empty((n, int(np.prod(train.shape[1:]))), dtype=np.float32)
    np.divide(train.reshape(n_train, -1), np.float32(255), out=X[:n_train], dtype=np.float32)
    np.divide(test.reshape(len(test), -1), np.float32(255), out=X[n_train:], dtype=np.float32)
    y = np.concatenate([arrays[TRAIN_LABELS], arrays[TEST_LABELS]]).astype(np.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    logger.info("loaded Fashion-MNIST from %s: %d records (verify=%s)", directory, n, verify)
    return Dataset(
        name="fashion-mnist", X=X, y=y, n_classes=len(CLASS_NAMES), class_names=CLASS_NAMES, source=directory
    )


def fashion_mnist_info(data_dir: str | Path | None = None, *, verify: bool = True) -> FashionMNISTInfo:
    """Describe the Fashion-MNIST files that would be used (for ``miaudit data info``).

    Parameters
    ----------
    data_dir : str or Path, optional
        As for :func:`locate_fashion_mnist`.
    verify : bool, default=True
        Hash each file; without it every ``sha256_ok`` and ``checksums_ok`` are None.

    Returns
    -------
    FashionMNISTInfo
        The directory, every place searched, the four files, record counts overall and per class;
        :meth:`FashionMNISTInfo.to_dict` gives its JSON form.

    Raises
    ------
    DataError
        If the data is not found or a label file cannot be read. Checksum mismatches are reported in
        the result, not raised.
    """
    directory, searched = _search(data_dir)
    if directory is None:
        directory = locate_fashion_mnist(data_dir)  # raises the DataError listing every place searched
    found, _ = _scan(directory)
    files = tuple(
        FileInfo(
            name=name,
            path=str(found[name]),
            size_bytes=found[name].stat().st_size,
            sha256_ok=_sha256_decompressed(found[name]) == SHA256[name] if verify else None,
        )
        for name in FILES
    )
    counts = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    sizes: dict[str, int] = {}
    for name in (TRAIN_LABELS, TEST_LABELS):
        labels = parse_idx(
            read_decompressed(found[name], hint=_FIX_CORRUPT), source=str(found[name]), hint=_FIX_CORRUPT
        )
        sizes[name] = len(labels)
        counts += np.bincount(labels, minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
    return FashionMNISTInfo(
        directory=str(directory),
        searched=searched,
        files=files,
        n_train=sizes[TRAIN_LABELS],
        n_test=sizes[TEST_LABELS],
        records_per_class=tuple(ClassCount(label=i, name=c, count=int(counts[i])) for i, c in enumerate(CLASS_NAMES)),
        checksums_ok=all(f.sha256_ok for f in files) if verify else None,
    )


# --------------------------------------------------------------------------------------------------
# Download


def _download(
    url: str,
    out_path: Path,
    name: str,
    *,
    timeout: float,
    progress: Callable[[str, int, int | None], None] | None,
) -> None:
    """Download ``url`` into ``out_path`` (a temporary path from :func:`~miaudit._io.atomic_path`)."""
    request = urllib.request.Request(url, headers={"User-Agent": "miaudit"})
    with urllib.request.urlopen(request, timeout=timeout) as response, out_path.open("wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress is not None:
            progress(name, done, total)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(name, done, total)
        if total is not None and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")
        out.flush()
        os.fsync(out.fileno())


class _Rejected(Exception):
    """A complete download whose contents are not the official file (internal to :func:`_fetch_one`)."""


def fetch_fashion_mnist(
    dest: str | Path | None = None,
    *,
    base_url: str | Sequence[str] = DEFAULT_URL,
    timeout: float = 30,
    progress: Callable[[str, int, int | None], None] | None = None,
    force: bool = False,
) -> Path:
    """Download the four official Fashion-MNIST files.

    Each file is written to a temp file in ``dest``, its decompressed sha256 is checked, and only then
    is it renamed into place (atomic), so ``dest`` never holds a partial or wrong file.

    Parameters
    ----------
    dest : str or Path, optional
        Target directory, created if needed; defaults to :func:`default_cache_dir`.
    base_url : str or sequence of str, default=DEFAULT_URL
        URL of the directory holding the files, or several mirrors tried in order (e.g. :data:`MIRRORS`).
    timeout : float, default=30
        Seconds to wait for the server on each network operation.
    progress : callable, optional
        Called as ``progress(file_name, bytes_done, total_bytes_or_None)`` while downloading.
    force : bool, default=False
        Download even files that are already present and valid.

    Returns
    -------
    Path
        The resolved ``dest``.

    Raises
    ------
    ChecksumError
        If a downloaded file does not match the official checksum (nothing is left behind).
    DataError
        If a file cannot be downloaded from any URL, or ``dest`` cannot be written.
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise DataError(f"base_url must be a URL or a non-empty list of URLs, got {base_url!r}")
    if not timeout > 0:
        raise DataError(f"timeout must be a positive number of seconds, got {timeout!r}")
    target_dir = Path(dest).expanduser() if dest is not None else default_cache_dir()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download directory {target_dir} ({exc}); pass another dest") from exc
    for name in FILES:
        target = target_dir / name
        if target.is_file() and not force:
            try:
                valid = _sha256_decompressed(target) == SHA256[name]
            except DataError:
                valid = False
            if valid:
                logger.info("%s: already present and valid, skipping", target)
                continue
            logger.warning("%s: present but invalid; downloading it again", target)
        _fetch_one(name, target, urls, timeout=timeout, progress=progress)
    return target_dir.resolve()


def _fetch_one(
    name: str,
    target: Path,
    urls: list[str],
    *,
    timeout: float,
    progress: Callable[[str, int, int | None], None] | None,
) -> None:
    failures: list[str] = []
    bad_checksum = False
    for base in urls:
        url = base.rstrip("/") + "/" + name
        logger.info("downloading %s", url)
        try:
            with atomic_path(target) as tmp:  # renamed into place only if verified
                _download(url, tmp, name, timeout=timeout, progress=progress)
                try:
                    actual = _sha256_decompressed(tmp)
                except DataError as exc:
                    raise _Rejected(f"not a valid gzip stream ({exc.__cause__ or exc})") from exc
                if actual != SHA256[name]:
                    raise _Rejected(f"sha256 of the decompressed contents is {actual}, expected {SHA256[name]}")
        except _Rejected as exc:
            bad_checksum = True
            failures.append(f"{url}: {exc}")
            logger.warning("download of %s failed: %s", url, exc)
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) if not isinstance(exc, urllib.error.HTTPError) else None
            failures.append(f"{url}: {reason or exc}")
            logger.warning("download of %s failed: %s", url, reason or exc)
            continue
        _DIGESTS[_stat_key(target)] = actual
        logger.info("%s: downloaded and verified", target)
        return
    details = "\n".join(f"  - {f}" for f in failures)
    if bad_checksum:
        raise ChecksumError(
            f"downloaded {name} does not match the official Fashion-MNIST checksum; nothing was saved:\n"
            f"{details}\nFix: try again or another mirror (--base-url), or install the Debian package: "
            "apt-get install dataset-fashion-mnist"
        )
    raise DataError(
        f"could not download {name}:\n{details}\nFix: check the network connection or proxy, try another "
        "mirror (--base-url), or install the Debian package instead: apt-get install dataset-fashion-mnist"
    )

"""The on-disk cache of a prediction service's answers, one row per record.

A remote target's answers cost money, time and query budget, and an attack may ask the same records again
(shadow calibration, a rerun after a crash, a larger budget). :class:`AnswerCache` keeps every answer in an
SQLite database (standard library, WAL journal, no pickle): the key of a record is
``sha256(url + "\\n" + the record's float32 bytes)`` and the answer is the row of float64 probabilities as raw
little-endian bytes. Each :meth:`AnswerCache.put` commits at once, so a crash loses at most the batch in flight.

The cache assumes the model behind a URL does not change: after redeploying a model at the same URL, use a new
cache folder (or delete ``answers.sqlite``).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from miaudit.errors import ConfigError

__all__ = ["CACHE_FILE", "AnswerCache", "record_keys"]

logger = logging.getLogger(__name__)

#: the database file inside a cache folder
CACHE_FILE = "answers.sqlite"
#: the schema version, stored as SQLite's ``user_version``
_SCHEMA_VERSION = 1
#: keys per ``SELECT ... IN (...)`` (under SQLite's oldest limit of 999 bound parameters)
_CHUNK = 900


def record_keys(url: str, X: np.ndarray) -> list[bytes]:
    """The cache key of each record: sha256 of the service URL, a newline and the record's float32 bytes.

    Parameters
    ----------
    url : str
        The service's root URL (normalised by the caller: no trailing slash).
    X : ndarray of shape (n_samples, n_features)
        The records; they are rounded to float32 (what is sent to the service) before hashing.

    Returns
    -------
    list of bytes, length n_samples
        32-byte digests.

    >>> a, b = record_keys("http://h", np.array([[0.5, 1.0], [0.5, 1.0]]))
    >>> a == b, len(a)
    (True, 32)
    >>> record_keys("http://h", np.zeros((1, 2))) == record_keys("http://g", np.zeros((1, 2)))
    False
    """
    prefix = hashlib.sha256(url.encode("utf-8") + b"\n")
    rows = np.ascontiguousarray(np.asarray(X, dtype="<f4"))
    keys = []
    for row in rows:
        h = prefix.copy()
        h.update(row.tobytes())
        keys.append(h.digest())
    return keys


class AnswerCache:
    """Answers of one prediction service, keyed by record (see :func:`record_keys`).

    Parameters
    ----------
    cache_dir : str, Path or None
        Folder of the database file ``answers.sqlite`` (created if missing). ``None`` keeps the answers in
        memory for the lifetime of this object only.
    n_classes : int
        The width of every answer; a stored answer of another width is ignored (and answered again).

    Thread-safe: one connection guarded by a lock. Several processes may share a folder (SQLite's WAL journal
    lets readers run beside the one writer; a writer waits up to 30 s for another).
    """

    def __init__(self, cache_dir: str | Path | None, *, n_classes: int) -> None:
        self.n_classes = n_classes
        self.path: Path | None = None
        if cache_dir is None:
            target = ":memory:"
        else:
            folder = Path(cache_dir).expanduser()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the answer cache folder {folder} ({exc.strerror}); pass a writable cache_dir"
                ) from exc
            self.path = folder / CACHE_FILE
            target = str(self.path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise ConfigError(
                    f"the answer cache {self.path} has schema version {version}, newer than this miaudit "
                    f"understands ({_SCHEMA_VERSION}); upgrade miaudit or use another cache_dir"
                )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, answer BLOB NOT NULL) WITHOUT ROWID"
            )
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"the answer cache {self.path} is not a readable SQLite database ({exc}); "
                "delete it or pass another cache_dir"
            ) from exc

    @property
    def where(self) -> str:
        """Where the answers are kept, in words for messages."""
        return str(self.path) if self.path is not None else "memory only (pass cache_dir to keep them)"

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored answers among ``keys``: key -> ndarray of shape (n_classes,), float64."""
        found: dict[bytes, np.ndarray] = {}
        width = 8 * self.n_classes
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    if len(blob) != width:
                        logger.warning("ignoring a cached answer of %d bytes (expected %d)", len(blob), width)
                        continue
                    found[bytes(key)] = np.frombuffer(blob, dtype="<f8").copy()
        return found

    def put(self, keys: Sequence[bytes], answers: np.ndarray) -> None:
        """Store answers (ndarray of shape (len(keys), n_classes)) in one committed transaction."""
        A = np.ascontiguousarray(np.asarray(answers, dtype="<f8"))
        if A.shape != (len(keys), self.n_classes):
            raise ValueError(f"answers of shape {A.shape} for {len(keys)} keys and {self.n_classes} classes")
        rows = [(key, A[i].tobytes()) for i, key in enumerate(keys)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO answers (key, answer) VALUES (?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

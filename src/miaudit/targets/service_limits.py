"""Access control and limits of the prediction service: bearer tokens, rate limits, budgets, the query log.

Pure bookkeeping, without HTTP: :mod:`miaudit.targets.service` asks these objects before a request reaches
the model. Decisions (``docs/http-protocol.md``):

* **Tokens** come from a file (one per line, ``token`` or ``name:token``; blank lines and ``#`` comments
  skipped) or the environment (the same syntax, entries separated by commas). Each token has an id, its name or
  ``sha256:`` and the first 8 hex digits of the token's SHA-256; only ids are ever logged or shown.
  :class:`Authenticator` compares the SHA-256 of the presented token with every accepted token's in constant
  time (``hmac.compare_digest``, all tokens compared every time).
* The **rate limit** counts records, not requests (the cost of an attack is the records it sends; one request of
  4096 records is 4096 queries): a token bucket per token id that refills at ``rate`` records per second up
  to ``burst`` records. A request takes as many units as it has records or is refused, taking nothing, with the
  seconds until it would pass (``Retry-After``). A request of more than ``burst`` records can never pass: the
  service answers 413 for it, so that clients split their batches.
* The **budget** is the most records one token may have answered over the service's life, in total; with a
  query log it survives restarts (:meth:`QueryLog.spent` sums the answered records of each token in the log).
* The **query log** is JSON lines, one per request to ``/v1/model`` or ``/v1/predict``: time, token id (null
  when refused), client address, path, status, records, answer policy, and a digest of the records (equal
  records in equal order give equal digests, so repeated batches stand out). Never a token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from miaudit.errors import ConfigError

__all__ = [
    "ANONYMOUS",
    "TOKEN_ENV",
    "Authenticator",
    "Budget",
    "QueryLog",
    "RateLimiter",
    "is_loopback",
    "parse_rate",
    "parse_tokens",
    "read_token_file",
    "records_digest",
    "token_id",
    "tokens_from_env",
]

logger = logging.getLogger(__name__)

#: the environment variable the service reads its tokens from when no token file is given (the client's too)
TOKEN_ENV = "MIAUDIT_TOKEN"
#: the id of every request to a service that serves without tokens
ANONYMOUS = "anonymous"
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


# ------------------------------------------------------------------------------------------------ tokens
def token_id(token: str) -> str:
    """The id of an unnamed token: ``sha256:`` and the first 8 hex digits of its SHA-256 (never the token).

    >>> token_id("s3cret")
    'sha256:4e738ca5'
    """
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def parse_tokens(entries: Sequence[str], *, source: str) -> dict[str, str]:
    """Tokens by id from entries ``token`` or ``name:token`` (blank entries and ``#`` comments skipped).

    Parameters
    ----------
    entries : sequence of str
        One entry each (the lines of a token file).
    source : str
        Where the entries come from, for error messages ("the token file tokens.txt").

    Returns
    -------
    dict of str to str
        ``{id: token}``; the id is the name, or :func:`token_id` of an unnamed token.

    Raises
    ------
    ConfigError
        No token, a token or name with characters an HTTP header or a log line cannot hold, two tokens with one
        id, or the same token twice. Messages name the entry by its position, never the token.

    >>> parse_tokens(["alice:k1-abcdefgh", "# comment", "", "k2-abcdefgh"], source="t")  # doctest: +ELLIPSIS
    {'alice': 'k1-abcdefgh', 'sha256:...': 'k2-abcdefgh'}
    """
    out: dict[str, str] = {}
    for i, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, token = entry.partition(":")
        if not colon:
            name, token = "", entry
        name, token = name.strip(), token.strip()
        where = f"entry {i} of {source}"
        if colon and not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: a token's name may hold only letters, digits and _ . @ - (1 to 64 of them); write "
                "name:token, or the token alone"
            )
        if not token or not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise ConfigError(f"{where}: the token is empty or holds spaces or characters an HTTP header cannot carry")
        ident = name or token_id(token)
        if ident in out:
            raise ConfigError(f"{where}: a second token with the id {ident!r}; give every token its own name")
        if token in out.values():
            raise ConfigError(f"{where}: the same token appears twice in {source}; remove one")
        if len(token) < 16:
            logger.warning("the token %s in %s is shorter than 16 characters; use long random tokens", ident, source)
        out[ident] = token
    if not out:
        raise ConfigError(f"{source} holds no token; write one per line, as token or name:token")
    return out


def read_token_file(path: str | Path) -> dict[str, str]:
    """Tokens by id from a file of one ``token`` or ``name:token`` per line (see :func:`parse_tokens`)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the token file {path} ({type(exc).__name__}); check --token-file") from None
    return parse_tokens(text.splitlines(), source=f"the token file {path}")


def tokens_from_env(var: str = TOKEN_ENV) -> dict[str, str] | None:
    """Tokens by id from the environment variable ``var`` (entries separated by commas), or None if unset."""
    value = os.environ.get(var, "").strip()
    if not value:
        return None
    return parse_tokens(value.split(","), source=f"${var}")


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Authenticator:
    """Who sent a request: the id of its bearer token, compared in constant time.

    Parameters
    ----------
    tokens : mapping of id to token, or None
        The accepted tokens; None accepts every request as :data:`ANONYMOUS`.
    """

    def __init__(self, tokens: Mapping[str, str] | None) -> None:
        self.required = tokens is not None
        self._digests = [(ident, _digest(t.encode())) for ident, t in (tokens or {}).items()]

    @property
    def ids(self) -> list[str]:
        """The ids of the accepted tokens."""
        return [ident for ident, _ in self._digests]

    def identify(self, authorization: str | None) -> str | None:
        """The id of the token in an ``Authorization: Bearer <token>`` header, or None when it is refused.

        Every accepted token is compared (SHA-256 digests, ``hmac.compare_digest``), whatever matches, so the
        time taken does not depend on which token (if any) was given.
        """
        if not self.required:
            return ANONYMOUS
        scheme, _, given = (authorization or "").strip().partition(" ")
        presented = _digest(given.strip().encode("utf-8", "surrogateescape"))
        found = None
        for ident, digest in self._digests:
            if hmac.compare_digest(presented, digest) and found is None:
                found = ident
        return found if scheme.lower() == "bearer" else None


# ------------------------------------------------------------------------------------------------ limits
def parse_rate(text: str | float) -> float:
    """Records per second from ``"100/s"``, ``"6000/min"``, ``"10/h"`` or a number (per second).

    >>> parse_rate("100/s"), parse_rate("120/min"), parse_rate(5)
    (100.0, 2.0, 5.0)
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        number, unit = float(text), "s"
    elif isinstance(text, str):
        number_text, _, unit = text.strip().partition("/")
        unit = unit.strip().lower() or "s"
        try:
            number = float(number_text)
        except ValueError:
            number = math.nan
    else:
        number, unit = math.nan, "s"
    if unit not in _UNITS or not math.isfinite(number) or number <= 0:
        raise ConfigError(
            f"a rate limit is a positive number of records per second, minute or hour, e.g. 100/s or 6000/min; "
            f"got {text!r}"
        )
    return number / _UNITS[unit]


class RateLimiter:
    """Token buckets by key: ``rate`` units per second, at most ``burst`` stored; a request takes all or nothing.

    Parameters
    ----------
    rate : float
        Units (records) added per second, > 0.
    burst : int, optional
        The bucket's size, the most one request may take (default: one second's worth, at least 1).
    clock : callable
        Seconds, monotonic (tests pass a fake clock).
    """

    def __init__(self, rate: float, *, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ConfigError(f"the rate limit must be a positive number of records per second; got {rate!r}")
        if burst is None:
            burst = max(1, math.ceil(rate))
        if type(burst) is not int or burst < 1:
            raise ConfigError(f"burst must be an integer >= 1 (records); got {burst!r}")
        self.rate, self.burst, self._clock = float(rate), burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (units, time of last update)
        self._lock = threading.Lock()

    def take(self, key: str, n: int) -> float:
        """Take ``n`` units from ``key``'s bucket: 0.0 if taken, else the seconds until they are there (> 0).

        ``n`` must not exceed ``burst`` (the service answers 413 first).
        """
        with self._lock:
            now = self._clock()
            units, last = self._buckets.get(key, (float(self.burst), now))
            units = min(float(self.burst), units + (now - last) * self.rate)
            if units >= n:
                self._buckets[key] = (units - n, now)
                return 0.0
            self._buckets[key] = (units, now)
            return (n - units) / self.rate


class Budget:
    """The most records each key may have answered in total; reserved before answering, refunded on failure.

    Parameters
    ----------
    total : int
        Records per key, >= 1.
    spent : mapping of key to int, optional
        Records already answered (e.g. read back from the query log).
    """

    def __init__(self, total: int, *, spent: Mapping[str, int] | None = None) -> None:
        if type(total) is not int or total < 1:
            raise ConfigError(f"the budget must be an integer >= 1 (records per token); got {total!r}")
        self.total = total
        self._spent: dict[str, int] = dict(spent or {})
        self._lock = threading.Lock()

    def spent(self, key: str) -> int:
        """Records answered for ``key`` so far (and reserved by requests in flight)."""
        return self._spent.get(key, 0)

    def reserve(self, key: str, n: int) -> int | None:
        """Reserve ``n`` records for ``key``: None if reserved, else the records it has left (less than n)."""
        with self._lock:
            used = self._spent.get(key, 0)
            if used + n > self.total:
                return max(0, self.total - used)
            self._spent[key] = used + n
            return None

    def refund(self, key: str, n: int) -> None:
        """Give back ``n`` reserved records (the request was not answered)."""
        with self._lock:
            self._spent[key] = max(0, self._spent.get(key, 0) - n)


# ------------------------------------------------------------------------------------------------ the log
def records_digest(X: np.ndarray) -> str:
    """16 hex digits of the SHA-256 of the records as float64 (C order): equal batches, equal digests.

    >>> records_digest(np.array([[1.0, 2.0]])) == records_digest(np.array([[1, 2]]))
    True
    """
    data = np.ascontiguousarray(X, dtype=np.float64) + 0.0  # + 0.0 maps -0.0 to 0.0
    return hashlib.sha256(data.tobytes() + repr(data.shape).encode()).hexdigest()[:16]


class QueryLog:
    """Append-only JSON lines, one per request (see the module docstring); thread safe; flushed per line.

    Parameters
    ----------
    path : str or Path
        The log file; created (with its folder) if missing, appended to otherwise.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the query log {self.path} ({exc.strerror}); check --query-log") from None
        self._lock = threading.Lock()

    def write(
        self,
        *,
        token: str | None,
        path: str,
        status: int,
        n_records: int | None = None,
        policy: str | None = None,
        digest: str | None = None,
        client: str | None = None,
    ) -> None:
        """Append one line: ``{"time", "token", "client", "path", "status", "n_records", "policy", "digest"}``."""
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "token": token,
            "client": client,
            "path": path,
            "status": status,
            "n_records": n_records,
            "policy": policy,
            "digest": digest,
        }
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as exc:  # a full disk must not take the service down; say so once per failure
                logger.error("cannot write the query log %s (%s)", self.path, exc.strerror)

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @staticmethod
    def read(path: str | Path) -> Iterator[dict[str, Any]]:
        """The log's entries, oldest first; damaged lines (e.g. a torn last line) are skipped with a warning."""
        path = Path(path).expanduser()
        if not path.exists():
            return
        with path.open(encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    logger.warning("skipping line %d of the query log %s: not JSON", number, path)
                    continue
                if isinstance(entry, dict):
                    yield entry

    @staticmethod
    def spent(path: str | Path) -> dict[str, int]:
        """Records answered per token id according to the log at ``path`` (answers with status 200)."""
        out: dict[str, int] = {}
        for entry in QueryLog.read(path):
            n, token = entry.get("n_records"), entry.get("token")
            answered = entry.get("status") == 200 and entry.get("path") == "/v1/predict"
            if answered and isinstance(token, str) and type(n) is int and n > 0:
                out[token] = out.get(token, 0) + n
        return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("::")
    (True, True, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False

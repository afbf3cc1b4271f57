"""A model behind a prediction URL, seen as a black box (protocol 1, ``docs/http-protocol.md``).

:class:`HttpTarget` asks ``GET {url}/v1/model`` what the model takes and answers, then answers
``predict_proba`` by ``POST {url}/v1/predict`` in batches, several at once, with retries for rate limits,
server errors and dropped connections. Every answer is cached by record (:mod:`miaudit.targets.answer_cache`)
as soon as its batch comes back, so a rerun after a crash, a dead service or a spent budget resumes where it
stopped and pays only for the records still unanswered.

Records are sent as float32 values (written as exact decimal numbers); that is also what the cache keys.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic_core

from miaudit._extras import require_extra
from miaudit.errors import BudgetExhaustedError, ConfigError, TargetError
from miaudit.targets.answer_cache import AnswerCache, record_keys
from miaudit.targets.base import BlackBox, check_probabilities

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_DELAY", "OUTPUTS", "PROTOCOL_VERSION", "HttpTarget", "retry_delay"]

logger = logging.getLogger(__name__)

#: the version of the JSON protocol this client speaks
PROTOCOL_VERSION = 1
#: what a service may let out: full probabilities, the top k of them, rounded ones, or only the label
OUTPUTS = ("probabilities", "top_k", "rounded", "labels")
#: the longest wait between two attempts, in seconds (Retry-After included)
MAX_DELAY = 30.0
#: how the client waits between attempts (tests replace it to record the delays)
_sleep = time.sleep


def retry_delay(attempt: int, *, backoff: float, retry_after: str | None = None, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 for the first): deterministic, no jitter.

    The service's ``Retry-After`` (seconds) wins when it is given and readable; otherwise
    ``backoff * 2**attempt``. Either is capped at ``cap``.

    >>> [retry_delay(a, backoff=0.5) for a in range(4)]
    [0.5, 1.0, 2.0, 4.0]
    >>> retry_delay(0, backoff=0.5, retry_after="3"), retry_delay(9, backoff=0.5)
    (3.0, 30.0)
    >>> retry_delay(1, backoff=0.5, retry_after="soon")
    1.0
    """
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, cap)
    return float(min(backoff * 2.0**attempt, cap))


def _resolve_token(token: str | None, token_file: str | Path | None, token_env: str) -> tuple[str | None, str]:
    """The bearer token and where it came from, in words (never the token itself)."""
    if token is not None and token_file is not None:
        raise ConfigError("give either token or token_file, not both")
    if token is not None:
        value, source = token, "the token passed as token="
    elif token_file is not None:
        path = Path(token_file).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the token file {path} ({exc.__class__.__name__}); check --token-file"
            ) from None
        source = f"the token in the file {path}"
    elif os.environ.get(token_env):
        value, source = os.environ[token_env].strip(), f"the token in ${token_env}"
    else:
        return None, f"no token (none given and ${token_env} is not set)"
    if not value:
        raise ConfigError(f"{source} is empty; put the service's token there")
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise ConfigError(f"{source} contains spaces or characters that cannot go in an HTTP header; check it")
    return value, source


class _TooLarge(Exception):
    """The service answered 413 (the batch is too large)."""


class HttpTarget(BlackBox):
    """A model behind a prediction service speaking ``docs/http-protocol.md`` (protocol 1).

    Parameters
    ----------
    url : str
        The service's root, e.g. ``"http://127.0.0.1:8000"`` (``/v1/...`` is appended).
    token, token_file, token_env : str, path, str
        The bearer token: given directly, read from a file, or from the environment variable ``token_env``
        (in that order; ``token`` and ``token_file`` exclude each other). None of them: no token is sent.
    batch_size : int
        Records per request (halved automatically while the service answers 413).
    concurrency : int
        Requests in flight at once.
    timeout : float
        Seconds per request (connect, read, write each).
    max_retries : int
        Retries after a 429, a 5xx, a timeout or a dropped connection; then a TargetError.
    backoff : float
        Wait before retry ``i`` (from 0): ``backoff * 2**i`` seconds, or the service's Retry-After; at most 30 s.
    budget : int or None
        The most records this target may send to the service in total; cached answers are free.
    cache_dir : str, Path or None
        Folder of the answer cache; None keeps answers in memory only.
    transport : httpx.BaseTransport or None
        For tests: an ``httpx.MockTransport`` or similar.

    Attributes
    ----------
    n_features, n_classes, classes, input_shape, output : from ``GET /v1/model``
    n_sent : int
        Records answered by the service over the network (each once, retries not counted).
    n_cached_hits : int
        Records answered from the cache.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        token_env: str = "MIAUDIT_TOKEN",
        batch_size: int = 256,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        budget: int | None = None,
        cache_dir: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("concurrency", concurrency, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0; got {max_retries!r}")
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ConfigError(f"budget must be None or an integer >= 0; got {budget!r}")
        if not (timeout > 0 and backoff >= 0):
            raise ConfigError(f"timeout must be > 0 and backoff >= 0; got timeout={timeout!r}, backoff={backoff!r}")
        self._httpx: ModuleType = require_extra("httpx", "serve")
        self.url = url.strip().rstrip("/")
        try:
            parsed = self._httpx.URL(self.url)
        except (self._httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"{url!r} is not a URL; give the service's root, e.g. http://127.0.0.1:8000") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"{url!r} is not an http(s) URL; give the service's root, e.g. http://127.0.0.1:8000")
        secret, self._token_source = _resolve_token(token, token_file, token_env)
        self._token_env = token_env
        self._secret = secret
        if secret is not None and parsed.scheme == "http" and parsed.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("sending a bearer token over plain http to %s; use https outside this machine", parsed.host)
        self.batch_size, self.concurrency, self.budget = batch_size, concurrency, budget
        self.max_retries, self.backoff, self.timeout = max_retries, float(backoff), float(timeout)
        self.n_sent = 0
        self.n_cached_hits = 0
        self._batch_limit = batch_size
        self._lock, self._calls = threading.Lock(), threading.Lock()
        headers = {"Accept": "application/json"}
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        self._client = self._httpx.Client(headers=headers, timeout=timeout, transport=transport)
        try:
            info = self._read_model()
        except BaseException:
            self._client.close()
            raise
        super().__init__(n_features=info["n_features"], n_classes=info["n_classes"])
        self.classes: list[Any] | None = info["classes"]
        self.input_shape: tuple[int, ...] | None = info["input_shape"]
        self.output: str = info["output"]
        self._cache = AnswerCache(cache_dir, n_classes=self.n_classes)

    # -- the model's description -------------------------------------------------------------------------------
    def _read_model(self) -> dict[str, Any]:
        r = self._request("GET", "/v1/model", None, during="reading the model's description")
        self._raise_for_status(r)
        body = self._json(r)
        bad = f"the prediction service at {self.url} described its model wrongly"
        if not isinstance(body, dict):
            raise TargetError(f"{bad}: GET /v1/model answered {type(body).__name__}, not a JSON object")
        if body.get("protocol") != PROTOCOL_VERSION:
            raise TargetError(
                f"the prediction service at {self.url} speaks protocol {body.get('protocol')!r}; this miaudit "
                f"speaks protocol {PROTOCOL_VERSION} (docs/http-protocol.md); upgrade the older side"
            )
        n_features, n_classes = body.get("n_features"), body.get("n_classes")
        for name, value, low in (("n_features", n_features, 1), ("n_classes", n_classes, 2)):
            if type(value) is not int or value < low:
                raise TargetError(f"{bad}: {name} must be an integer >= {low}; got {value!r}")
        classes, shape, output = body.get("classes"), body.get("input_shape"), body.get("output", "probabilities")
        if classes is not None and (not isinstance(classes, list) or len(classes) != n_classes):
            raise TargetError(f"{bad}: classes must be null or a list of {n_classes} labels; got {classes!r}")
        if shape is not None:
            if not (isinstance(shape, list) and shape and all(type(s) is int and s > 0 for s in shape)):
                raise TargetError(f"{bad}: input_shape must be null or a list of positive integers; got {shape!r}")
            if math.prod(shape) != n_features:
                raise TargetError(f"{bad}: input_shape {shape} holds {math.prod(shape)} values, not {n_features}")
            shape = tuple(shape)
        if output not in OUTPUTS:
            raise TargetError(f"{bad}: output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        return {"n_features": n_features, "n_classes": n_classes, "classes": classes, "input_shape": shape,
                "output": output}  # fmt: skip

    # -- one request, with retries -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, content: bytes | None, *, during: str) -> httpx.Response:
        """Send one request, retrying 429, 5xx and transport errors; the last failure becomes a TargetError."""
        httpx = self._httpx
        headers = {"Content-Type": "application/json"} if content is not None else None
        failure, connection = "", False
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                r = self._client.request(method, self.url + path, content=content, headers=headers)
            except httpx.TransportError as exc:
                failure, connection = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}", True
            else:
                if r.status_code < 500 and (r.status_code != 429 or self._budget_spent(r)):
                    return r  # a spent budget is not retried: it does not refill
                failure, connection = f"HTTP {r.status_code}: {self._message(r)}", False
                retry_after = r.headers.get("Retry-After")
            if attempt == self.max_retries:
                break
            delay = retry_delay(attempt, backoff=self.backoff, retry_after=retry_after)
            logger.warning(
                "%s %s%s failed (%s); retry %d of %d in %.3g s",
                method, self.url, path, failure, attempt + 1, self.max_retries, delay,
            )  # fmt: skip
            _sleep(delay)
        tries = f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        if during != "predicting":
            raise TargetError(
                f"could not get an answer from the prediction service at {self.url} while {during} ({failure}; "
                f"{tries}); check the URL and that the service is running"
            )
        resume = f"answers so far are cached in {self._cache.where}: rerun to resume"
        if connection:
            raise TargetError(f"the prediction service at {self.url} stopped answering ({failure}; {tries}); {resume}")
        if failure.startswith("HTTP 429"):
            resume += " later, or with a lower --concurrency"
        raise TargetError(f"the prediction service at {self.url} failed ({failure}; {tries}); {resume}")

    def _raise_for_status(self, r: httpx.Response) -> None:
        """Turn a client-error answer (4xx other than 429) into a TargetError naming the fix."""
        code = r.status_code
        if code < 400:
            return
        message = self._message(r)
        if code in (401, 403):
            if self._secret is None:
                fix = f"pass the service's token with token_file= (--token-file) or ${self._token_env}"
            else:
                fix = (
                    f"check {self._token_source}, or pass another with token_file= (--token-file) or ${self._token_env}"
                )
            raise TargetError(
                f"the prediction service at {self.url} refused {self._token_source} (HTTP {code}: {message}); {fix}"
            )
        if code == 413:
            raise _TooLarge(message)
        if code == 429:  # only a spent budget gets here (rate limits are retried)
            cache = getattr(self, "_cache", None)
            raise BudgetExhaustedError(
                f"the prediction service at {self.url} answers no more records for {self._token_source} "
                f"(HTTP 429: {message})" + (f"; the answers so far are cached in {cache.where}" if cache else "")
            )
        if code == 422:
            raise TargetError(
                f"the prediction service at {self.url} rejected the records (HTTP 422: {message}); check that they "
                f"are the {self.n_features} features the model takes, in its order"
            )
        hint = "; check that the URL is the service's root (without /v1/...)" if code in (404, 405) else ""
        raise TargetError(f"the prediction service at {self.url} answered HTTP {code}: {message}{hint}")

    def _budget_spent(self, r: httpx.Response) -> bool:
        """Whether a 429 says the token's total budget is spent (code ``budget_exhausted``), not a rate limit."""
        return self._message(r).startswith("budget_exhausted:")

    def _message(self, r: httpx.Response) -> str:
        """The service's error message (protocol shape, else the start of the body), without the token."""
        try:
            body = r.json()
            text = f"{body['error']['code']}: {body['error']['message']}"
        except Exception:
            text = r.text[:200].strip() or r.reason_phrase or "no message"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "<token>") if self._secret else text

    def _json(self, r: httpx.Response) -> Any:
        try:
            return pydantic_core.from_json(r.content)
        except ValueError:
            raise TargetError(
                f"the prediction service at {self.url} answered HTTP {r.status_code} with something that is not "
                f"JSON ({self._redact(r.text[:80])!r}); check the URL points at a miaudit prediction service"
            ) from None

    # -- answers -----------------------------------------------------------------------------------------------
    def _parse(self, r: httpx.Response, n: int) -> np.ndarray:
        """ndarray of shape (n, n_classes): the probabilities of a 200 answer to ``n`` records, validated."""
        body = self._json(r)
        bad = f"the prediction service at {self.url} answered"
        if isinstance(body, dict) and "probabilities" in body:
            try:
                P = np.asarray(body["probabilities"], dtype=np.float64)
            except (ValueError, TypeError):
                raise TargetError(f"{bad} probabilities that are not a table of numbers") from None
            if P.shape != (n, self.n_classes):
                raise TargetError(
                    f"{bad} probabilities of shape {P.shape} for {n} records; expected ({n}, {self.n_classes})"
                )
        elif isinstance(body, dict) and "labels" in body:
            labels = body["labels"]
            if not isinstance(labels, list) or len(labels) != n:
                raise TargetError(f"{bad} labels that are not a list of {n} class indices")
            if not all(type(v) is int and 0 <= v < self.n_classes for v in labels):
                raise TargetError(f"{bad} labels outside 0..{self.n_classes - 1} or not integers")
            P = np.zeros((n, self.n_classes))
            P[np.arange(n), labels] = 1.0
        else:
            raise TargetError(f"{bad} a JSON object without 'probabilities' or 'labels' (docs/http-protocol.md)")
        return check_probabilities(P, n_samples=n, n_classes=self.n_classes)

    def _answer_batch(self, X: np.ndarray) -> np.ndarray:
        """Answers to float32 records X (n, n_features), halving the batch while the service answers 413."""
        limit = self._batch_limit
        if len(X) > limit:
            return np.concatenate([self._answer_batch(X[i : i + limit]) for i in range(0, len(X), limit)])
        body = pydantic_core.to_json({"records": X.astype(np.float64).tolist()})  # exact shortest decimals
        r = self._request("POST", "/v1/predict", body, during="predicting")
        try:
            self._raise_for_status(r)
        except _TooLarge as exc:
            if len(X) == 1:
                raise TargetError(
                    f"the prediction service at {self.url} refuses even one record as too large (HTTP 413: {exc}); "
                    "check the service's request size limit"
                ) from None
            half = (len(X) + 1) // 2
            with self._lock:
                self._batch_limit = min(self._batch_limit, half)
            logger.warning(
                "the service at %s refused %d records as too large; sending %d per request", self.url, len(X), half
            )
            return np.concatenate([self._answer_batch(X[:half]), self._answer_batch(X[half:])])
        return self._parse(r, len(X))

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        with self._calls:  # one call at a time: the budget and the counters stay exact
            return self._answer(np.asarray(X, dtype=np.float32))

    def _answer(self, Xf: np.ndarray) -> np.ndarray:
        if not len(Xf):
            return np.zeros((0, self.n_classes))
        keys = record_keys(self.url, Xf)
        unique = list(dict.fromkeys(keys))
        found = self._cache.get(unique)
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first_row.setdefault(key, i)
        missing = [k for k in unique if k not in found]
        hits = sum(key in found for key in keys)
        self.n_cached_hits += hits
        allowed = len(missing) if self.budget is None else max(0, min(len(missing), self.budget - self.n_sent))
        if allowed:
            self._send([first_row[k] for k in missing[:allowed]], Xf, keys, found)
        if allowed < len(missing):
            answered = sum(key in found for key in keys)
            raise BudgetExhaustedError(
                f"the query budget of {self.budget} records for {self.url} is spent ({self.n_sent} sent): this call "
                f"answered {answered} of its {len(keys)} records ({hits} from the cache) and {len(keys) - answered} "
                f"remain; the answers are cached in {self._cache.where}: rerunning with a larger --budget reuses "
                "them (cached answers do not count against the budget)"
            )
        return np.stack([found[key] for key in keys])

    def _send(self, rows: Sequence[int], Xf: np.ndarray, keys: list[bytes], found: dict[bytes, np.ndarray]) -> None:
        """Query the service for ``rows`` of Xf in batches, caching each batch as soon as it is answered.

        At most ``concurrency`` batches are in flight; after a failure no new batch starts, the ones in flight
        finish (and are cached), then the first failure is raised.
        """
        batches = [list(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        todo = iter(batches)
        first_error: BaseException | None = None
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(batches)), thread_name_prefix="miaudit-http"
        ) as pool:
            running: dict[Future[np.ndarray], list[int]] = {}
            while True:
                while first_error is None and len(running) < self.concurrency:
                    batch = next(todo, None)
                    if batch is None:
                        break
                    running[pool.submit(self._answer_batch, Xf[batch])] = batch
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = running.pop(future)
                    try:
                        answers = future.result()
                    except BaseException as exc:
                        first_error = first_error or exc
                        continue
                    batch_keys = [keys[i] for i in batch]
                    self._cache.put(batch_keys, answers)
                    found.update(zip(batch_keys, answers, strict=True))
                    self.n_sent += len(batch_keys)
        if first_error is not None:
            raise first_error

    # -- housekeeping ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections and the answer cache."""
        self._client.close()
        self._cache.close()

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "none" if self._secret is None else f"<hidden, {self._token_source}>"
        return (
            f"HttpTarget(url={self.url!r}, n_features={self.n_features}, n_classes={self.n_classes}, "
            f"output={self.output!r}, token={token}, n_sent={self.n_sent}, n_cached_hits={self.n_cached_hits})"
        )

"""The reference prediction service: a target behind ``docs/http-protocol.md`` (protocol 1), as a FastAPI app.

:func:`create_app` exposes any target (``predict_proba(X) -> (n_samples, n_classes)``) over HTTP:
``GET /v1/health``, ``GET /v1/model`` and ``POST /v1/predict`` (schema at ``GET /openapi.json``). It validates
every request (finite numbers within float32's range, the model's width, a non-empty batch of at most
``max_batch`` records, a body of at most ``max_body_bytes``), checks bearer tokens in constant time, applies
a per-token rate limit and query budget, answers through an output policy (:mod:`miaudit.targets.policies`),
writes a query log, and answers every error in the protocol's shape ``{"error": {"code": ..., "message": ...}}``;
no client input leads to a 5xx. ``miaudit serve`` runs it with uvicorn (extra ``serve``); the bookkeeping
lives in :mod:`miaudit.targets.service_limits`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miaudit._extras import require_extra
from miaudit.errors import ConfigError
from miaudit.targets.base import Target, check_probabilities
from miaudit.targets.policies import OutputPolicy
from miaudit.targets.service_limits import (
    Authenticator,
    Budget,
    QueryLog,
    RateLimiter,
    parse_rate,
    records_digest,
    token_id,
)

__all__ = [
    "ERROR_CODES",
    "FLOAT32_MAX",
    "POLICY_OUTPUTS",
    "SERVICE_OUTPUTS",
    "ErrorResponse",
    "ModelInfo",
    "PredictRequest",
    "PredictResponse",
    "ServiceLimits",
    "create_app",
]

logger = logging.getLogger(__name__)

#: the error codes of the protocol, by HTTP status (429 also has ``budget_exhausted``)
ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
#: ``output=`` shorthands of :func:`create_app` (``"labels"`` is the ``label_only`` policy)
SERVICE_OUTPUTS = ("probabilities", "labels")
#: what ``GET /v1/model`` says under ``output`` for each output policy
POLICY_OUTPUTS: dict[str, str] = {
    "full": "probabilities",
    "top_k": "top_k",
    "rounding": "rounded",
    "temperature": "probabilities",
    "label_only": "labels",
    "noise": "probabilities",
}
#: the largest finite float32: records are float32 inside the models, larger values would become infinite
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: bytes allowed per number in a request body (the longest float64 repr is 24 characters, plus ", ")
_BYTES_PER_NUMBER = 32
#: paths answered without a token
_PUBLIC = ("/v1/health", "/openapi.json")

_Finite = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class PredictRequest(BaseModel):
    """``POST /v1/predict``: the records to answer, each a flat list of ``n_features`` finite numbers."""

    model_config = ConfigDict(strict=True, extra="forbid")
    records: list[list[_Finite]] = Field(min_length=1, description="records, each n_features finite numbers")


class PredictResponse(BaseModel):
    """The answer: one probability row per record, or (label-only services) one class index per record."""

    probabilities: list[list[float]] | None = None
    labels: list[int] | None = None


class ServiceLimits(BaseModel):
    """The service's limits, per request and per token (None: no limit)."""

    max_batch: int = Field(description="records per request")
    max_body_bytes: int = Field(description="bytes per request body")
    rate_limit: float | None = Field(description="records per second per token (token bucket)")
    burst: int | None = Field(description="records a token may send at once (the bucket's size)")
    budget: int | None = Field(description="records answered per token over the service's life")


class ModelInfo(BaseModel):
    """``GET /v1/model``: what the model takes and what it lets out."""

    n_features: int
    n_classes: int
    classes: list[Any] | None
    input_shape: list[int] | None
    output: Literal["probabilities", "top_k", "rounded", "labels"]
    policy: str = Field(description="the output policy, e.g. top_k:3 (docs/http-protocol.md)")
    limits: ServiceLimits
    protocol: int = 1


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


def _error(status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """A JSONResponse in the protocol's error shape."""
    responses = require_extra("fastapi.responses", "serve")
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    return responses.JSONResponse(body, status_code=status, headers=headers)


_SEND = 'send a JSON object {"records": [[...], ...]}'


def _describe_errors(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as one line naming each field: ``records[0][3]: Input should be ...``."""
    parts = []
    for err in list(errors)[:5]:
        kind, loc, msg = err.get("type"), tuple(err.get("loc", ())), str(err.get("msg", "invalid"))
        path = [p for p in loc if p != "body"]
        if kind in ("less_than_equal", "greater_than_equal"):  # the float32 bounds of _Finite
            msg = f"{err.get('input')!r} is outside float32's range (-3.4028235e+38 to 3.4028235e+38)"
        if kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({msg}); {_SEND}")
        elif not path:
            parts.append(f"{msg}; {_SEND}")
        else:
            where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))
            parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


class _Unanswerable(Exception):
    """The model gives no usable answer for these records, although it answers a record of zeros."""


def _check_arguments(
    target: Target, n_features: int, n_classes: int, max_batch: int, classes: Any, input_shape: Any
) -> None:
    if not hasattr(target, "predict_proba"):
        raise ConfigError(f"cannot serve {type(target).__name__}: it needs a predict_proba(X) method")
    for name, value, low in (("n_features", n_features, 1), ("n_classes", n_classes, 2), ("max_batch", max_batch, 1)):
        if type(value) is not int or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
    if classes is not None and len(classes) != n_classes:
        raise ConfigError(f"classes must list {n_classes} labels; got {len(classes)}")
    if input_shape is not None and math.prod(input_shape) != n_features:
        raise ConfigError(f"input_shape {tuple(input_shape)} holds {math.prod(input_shape)} values, not {n_features}")


def _resolve_policy(policy: OutputPolicy | str | None, output: str, n_classes: int) -> OutputPolicy:
    if output not in SERVICE_OUTPUTS:
        raise ConfigError(
            f"output must be one of {', '.join(SERVICE_OUTPUTS)}; got {output!r} (other answers: policy='top_k:3')"
        )
    if policy is None:
        policy = "label_only" if output == "labels" else "full"
    if isinstance(policy, str):
        policy = OutputPolicy.from_string(policy)
    if not isinstance(policy, OutputPolicy):
        raise ConfigError(f"policy must be an OutputPolicy or a string like 'top_k:3'; got {policy!r}")
    if output == "labels" and policy.kind != "label_only":
        raise ConfigError(f"output='labels' contradicts the policy {policy.to_string()!r}; give one of them")
    if policy.kind == "top_k" and policy.k is not None and policy.k > n_classes:
        raise ConfigError(f"top_k's k={policy.k} exceeds the model's {n_classes} classes; choose k <= {n_classes}")
    return policy


def _token_map(tokens: Sequence[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    if tokens is None:
        return None
    if isinstance(tokens, str):
        raise ConfigError("tokens must be a list of tokens (or a mapping of ids to tokens), not one string")
    pairs = list(tokens.items()) if isinstance(tokens, Mapping) else [(None, t) for t in tokens]
    if not pairs or not all(isinstance(t, str) and t for _, t in pairs):
        raise ConfigError("tokens must be None or a non-empty list of non-empty strings")
    return {(ident if isinstance(ident, str) else token_id(t)): t for ident, t in pairs}


def create_app(
    target: Target,
    *,
    n_features: int,
    n_classes: int,
    classes: Sequence[Any] | None = None,
    input_shape: Sequence[int] | None = None,
    tokens: Sequence[str] | Mapping[str, str] | None = None,
    max_batch: int = 4096,
    max_body_bytes: int | None = None,
    output: str = "probabilities",
    policy: OutputPolicy | str | None = None,
    rate_limit: float | str | None = None,
    burst: int | None = None,
    budget: int | None = None,
    query_log: str | Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """A FastAPI app serving ``target`` over protocol 1 (``docs/http-protocol.md``).

    Parameters
    ----------
    target : Target
        Anything with ``predict_proba(X)``, X of shape (n_samples, n_features) float64, answering an ndarray
        of shape (n_samples, n_classes).
    n_features, n_classes : int
        The model's width in and out.
    classes : sequence or None
        The class labels in the order of the output columns (JSON scalars).
    input_shape : sequence of int or None
        The shape of one record before flattening (e.g. ``(28, 28)``); its product must be ``n_features``.
    tokens : sequence of str, mapping of id to token, or None
        Bearer tokens accepted on every path but ``/v1/health`` and ``/openapi.json``; unnamed tokens get
        :func:`~miaudit.targets.service_limits.token_id` as id. None serves without authentication.
    max_batch : int
        The most records per request; more is answered 413.
    max_body_bytes : int, optional
        The most bytes per request body (default: 32 per number of a full batch, plus 1024); more is 413.
    output : {"probabilities", "labels"}
        Shorthand: ``"labels"`` is the ``label_only`` policy.
    policy : OutputPolicy or str, optional
        What the service lets out (``"full"``, ``"top_k:3"``, ``"rounding:2"``, ``"temperature:4"``,
        ``"label_only"``, ``"noise:0.1"``); the noise is keyed by each record's float64 bytes.
    rate_limit : float or str, optional
        Records per second per token (``100``, ``"100/s"``, ``"6000/min"``); over it is 429 with Retry-After.
    burst : int, optional
        Records a token may send at once (default: one second's worth of ``rate_limit``); a request of more is 413.
    budget : int, optional
        Records answered per token in total; then 429 ``budget_exhausted``. With ``query_log``, what the log
        records as answered counts as spent.
    query_log : str or Path, optional
        Append one JSON line per request here (``service_limits.QueryLog``).
    clock : callable
        Monotonic seconds of the rate limiter (tests pass a fake clock).

    Returns
    -------
    fastapi.FastAPI
        Its ``state.query_log`` is the open :class:`~miaudit.targets.service_limits.QueryLog` (or None).
    """
    fastapi = require_extra("fastapi", "serve")
    exceptions = require_extra("fastapi.exceptions", "serve")
    starlette_exc = require_extra("starlette.exceptions", "serve")
    responses = require_extra("fastapi.responses", "serve")
    concurrency = require_extra("starlette.concurrency", "serve")
    _check_arguments(target, n_features, n_classes, max_batch, classes, input_shape)
    the_policy = _resolve_policy(policy, output, n_classes)
    policy_name = the_policy.to_string()
    auth = Authenticator(_token_map(tokens))
    if max_body_bytes is None:
        max_body_bytes = max_batch * n_features * _BYTES_PER_NUMBER + 1024
    if type(max_body_bytes) is not int or max_body_bytes < 64:
        raise ConfigError(f"max_body_bytes must be an integer >= 64; got {max_body_bytes!r}")
    limiter = None if rate_limit is None else RateLimiter(parse_rate(rate_limit), burst=burst, clock=clock)
    if burst is not None and limiter is None:
        raise ConfigError("burst applies to a rate limit; give rate_limit too")
    log = QueryLog(query_log) if query_log is not None else None
    quota = None
    if budget is not None:
        quota = Budget(budget, spent=QueryLog.spent(query_log) if query_log is not None else None)
    info = ModelInfo(
        n_features=n_features,
        n_classes=n_classes,
        classes=list(classes) if classes is not None else None,
        input_shape=[int(s) for s in input_shape] if input_shape is not None else None,
        output=POLICY_OUTPUTS[the_policy.kind],  # type: ignore[arg-type]
        policy=policy_name,
        limits=ServiceLimits(
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            rate_limit=limiter.rate if limiter else None,
            burst=limiter.burst if limiter else None,
            budget=budget,
        ),
    ).model_dump()
    lock = threading.Lock()
    zeros_answered: list[bool] = []  # filled once: does the model answer a record of zeros?

    app = fastapi.FastAPI(title="miaudit prediction service", version="1", docs_url=None, redoc_url=None)
    app.state.query_log = log

    @app.middleware("http")
    async def guard(request: Any, call_next: Any) -> Any:
        path = request.url.path
        if path in _PUBLIC:
            return await call_next(request)
        request.state.token = ident = auth.identify(request.headers.get("authorization"))
        length = request.headers.get("content-length")
        if ident is None:
            response = _error(
                401, "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        elif length is not None and not length.isdigit():
            response = _error(400, "the Content-Length header is not a number")
        elif length is not None and int(length) > max_body_bytes:
            response = _error(413, f"the body has {length} bytes; this service takes at most {max_body_bytes}")
        else:
            response = await call_next(request)
        if log is not None:
            state = request.state
            log.write(
                token=ident,
                path=path,
                status=response.status_code,
                n_records=getattr(state, "n_records", None),
                policy=policy_name if path == "/v1/predict" else None,
                digest=getattr(state, "digest", None),
                client=request.client.host if request.client else None,
            )
        return response

    @app.exception_handler(exceptions.RequestValidationError)
    async def invalid(request: Any, exc: Any) -> Any:
        return _error(422, _describe_errors(exc.errors()))

    @app.exception_handler(starlette_exc.HTTPException)
    async def http_error(request: Any, exc: Any) -> Any:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Any, exc: Exception) -> Any:
        logger.exception("the prediction service failed on %s", request.url.path)
        return _error(500, "the model failed to answer; see the service's log")

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    errors = {"model": ErrorResponse}

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses={401: {**errors, "description": "no token, or a wrong one"}},
        openapi_extra={"security": [{"bearer": []}]},
    )
    def model() -> dict[str, Any]:
        return info

    def answers_zeros() -> bool:
        """Whether the model answers one record of zeros with a finite row (asked once, under the lock)."""
        if not zeros_answered:
            try:
                P0 = np.asarray(target.predict_proba(np.zeros((1, n_features))), dtype=np.float64)
                zeros_answered.append(P0.shape == (1, n_classes) and bool(np.isfinite(P0).all()))
            except Exception:
                zeros_answered.append(False)
        return zeros_answered[0]

    def answer(X: np.ndarray) -> bytes:
        with lock:
            try:
                P = np.asarray(target.predict_proba(X), dtype=np.float64)
                failure = None if np.isfinite(P).all() else "its output is not finite"
            except Exception as exc:  # the model's own failure: the records' fault if it answers zeros
                P, failure = np.empty(0), f"{type(exc).__name__}"
            if failure is not None:
                if answers_zeros():
                    raise _Unanswerable(failure)
                raise RuntimeError(f"the model fails on every record ({failure})")
        P = check_probabilities(P, n_samples=len(X), n_classes=n_classes)
        if the_policy.kind == "label_only":
            body: dict[str, Any] = {"labels": P.argmax(axis=1).tolist()}
        else:
            body = {"probabilities": the_policy.apply(P, rng_key=X).tolist()}
        return pydantic_core.to_json(body)  # the shortest decimals that read back exactly

    async def read_body(request: Any) -> bytes | None:
        """The body, or None once it grows past ``max_body_bytes`` (a chunked body has no Content-Length)."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request: Any) -> Any:
        raw = await read_body(request)
        if raw is None:
            return _error(413, f"the body has more than {max_body_bytes} bytes; this service takes at most that")
        if not raw.strip():
            return _error(422, f"the body is empty; {_SEND}")
        try:  # pydantic's own JSON parser: several times faster than json.loads, and it validates as it reads
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            return _error(422, _describe_errors(exc.errors()))
        n = request.state.n_records = len(body.records)
        if n > max_batch:
            return _error(413, f"{n} records in one request; this service takes at most {max_batch}: split the batch")
        if limiter is not None and n > limiter.burst:
            return _error(
                413, f"{n} records in one request; the rate limit lets a token send at most {limiter.burst} at once: "
                "split the batch",
            )  # fmt: skip
        for i, record in enumerate(body.records):
            if len(record) != n_features:
                return _error(422, f"records[{i}] has {len(record)} numbers; this model takes {n_features} features")
        X = np.asarray(body.records, dtype=np.float64)
        request.state.digest = records_digest(X)
        ident = request.state.token
        if quota is not None and (left := quota.reserve(ident, n)) is not None:
            return _error(
                429, f"this token's budget of {quota.total} records is spent ({left} left, this request has {n}); "
                "ask the service's operator for more", code="budget_exhausted",
            )  # fmt: skip
        wait = limiter.take(ident, n) if limiter is not None else 0.0
        if wait > 0:
            if quota is not None:
                quota.refund(ident, n)
            seconds = max(1, math.ceil(wait))
            return _error(
                429, f"this token may send {limiter.rate:g} records per second (up to {limiter.burst} at once); "  # type: ignore[union-attr]
                f"retry in {seconds} s", headers={"Retry-After": str(seconds)},
            )  # fmt: skip
        try:
            content = await concurrency.run_in_threadpool(answer, X)
        except _Unanswerable as exc:
            if quota is not None:
                quota.refund(ident, n)
            return _error(
                422, f"records: the model gives no answer for these records ({exc}), although it answers others; "
                "values far outside the data's range can overflow it",
            )  # fmt: skip
        except Exception:
            if quota is not None:
                quota.refund(ident, n)
            logger.exception("the prediction service failed on /v1/predict")
            return _error(500, "the model failed to answer; see the service's log")
        return responses.Response(content, media_type="application/json")

    predict.__annotations__["request"] = fastapi.Request  # FastAPI passes the request by this annotation
    schema = {"content": {"application/json": {"schema": PredictRequest.model_json_schema()}}, "required": True}
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        openapi_extra={"requestBody": schema, "security": [{"bearer": []}]},
        responses={
            400: {**errors, "description": "a request the service cannot read"},
            401: {**errors, "description": "no token, or a wrong one"},
            413: {**errors, "description": "too many records, or too many bytes, in one request"},
            422: {**errors, "description": "a malformed body; the message names the field"},
            429: {**errors, "description": "rate limited (Retry-After: seconds) or the budget is spent"},
            500: {**errors, "description": "the model failed (never a client's input)"},
        },
    )(predict)

    openapi = app.openapi

    def openapi_with_security() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = openapi()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_security
    return app

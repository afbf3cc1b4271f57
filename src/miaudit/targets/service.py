"""The reference prediction service: a target behind ``docs/http-protocol.md`` (protocol 1), as a FastAPI app.

:func:`create_app` exposes any target (``predict_proba(X) -> (n_samples, n_classes)``) over HTTP:
``GET /v1/health``, ``GET /v1/model`` and ``POST /v1/predict``. It validates every request (finite numbers,
the model's width, a non-empty batch of at most ``max_batch`` records), checks bearer tokens in constant time,
and answers every error in the protocol's shape ``{"error": {"code": ..., "message": ...}}``; no client input
leads to a 5xx. Run it with ``uvicorn`` (extra ``serve``); ``miaudit serve`` builds on this app.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miaudit._extras import require_extra
from miaudit.errors import ConfigError
from miaudit.targets.base import Target, check_probabilities

__all__ = ["ERROR_CODES", "SERVICE_OUTPUTS", "ModelInfo", "PredictRequest", "PredictResponse", "create_app"]

logger = logging.getLogger(__name__)

#: the error codes of the protocol, by HTTP status
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
#: the output policies this app implements (top_k and rounded come with ``miaudit serve``)
SERVICE_OUTPUTS = ("probabilities", "labels")
#: bytes allowed per number in a request body (the longest float64 repr is 24 characters, plus ", ")
_BYTES_PER_NUMBER = 32

_Finite = Annotated[float, Field(allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """``POST /v1/predict``: the records to answer, each a flat list of ``n_features`` finite numbers."""

    model_config = ConfigDict(strict=True, extra="forbid")
    records: list[list[_Finite]] = Field(min_length=1, description="records, each n_features finite numbers")


class PredictResponse(BaseModel):
    """The answer: one probability row per record, or (label-only services) one class index per record."""

    probabilities: list[list[float]] | None = None
    labels: list[int] | None = None


class ModelInfo(BaseModel):
    """``GET /v1/model``: what the model takes and what it lets out."""

    n_features: int
    n_classes: int
    classes: list[Any] | None
    input_shape: list[int] | None
    output: Literal["probabilities", "top_k", "rounded", "labels"]
    protocol: int = 1


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Any:
    """A JSONResponse in the protocol's error shape."""
    responses = require_extra("fastapi.responses", "serve")
    body = {"error": {"code": ERROR_CODES.get(status, "error"), "message": message}}
    return responses.JSONResponse(body, status_code=status, headers=headers)


_SEND = 'send a JSON object {"records": [[...], ...]}'


def _describe_errors(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as one line naming each field: ``records[0][3]: Input should be ...``."""
    parts = []
    for err in list(errors)[:5]:
        kind, loc, msg = err.get("type"), tuple(err.get("loc", ())), str(err.get("msg", "invalid"))
        path = [p for p in loc if p != "body"]
        if kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({msg}); {_SEND}")
        elif not path:
            parts.append(f"{msg}; {_SEND}")
        else:
            where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))
            parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def create_app(
    target: Target,
    *,
    n_features: int,
    n_classes: int,
    classes: Sequence[Any] | None = None,
    input_shape: Sequence[int] | None = None,
    tokens: Sequence[str] | None = None,
    max_batch: int = 4096,
    output: str = "probabilities",
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
    tokens : sequence of str or None
        Bearer tokens accepted on ``/v1/model`` and ``/v1/predict``; None serves without authentication.
    max_batch : int
        The most records per request; more is answered 413.
    output : {"probabilities", "labels"}
        Full probability rows, or only the predicted class index.

    Returns
    -------
    fastapi.FastAPI
    """
    fastapi = require_extra("fastapi", "serve")
    exceptions = require_extra("fastapi.exceptions", "serve")
    starlette_exc = require_extra("starlette.exceptions", "serve")
    responses = require_extra("fastapi.responses", "serve")
    concurrency = require_extra("starlette.concurrency", "serve")
    if not hasattr(target, "predict_proba"):
        raise ConfigError(f"cannot serve {type(target).__name__}: it needs a predict_proba(X) method")
    for name, value, low in (("n_features", n_features, 1), ("n_classes", n_classes, 2), ("max_batch", max_batch, 1)):
        if type(value) is not int or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
    if output not in SERVICE_OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(SERVICE_OUTPUTS)}; got {output!r}")
    if classes is not None and len(classes) != n_classes:
        raise ConfigError(f"classes must list {n_classes} labels; got {len(classes)}")
    if input_shape is not None and math.prod(input_shape) != n_features:
        raise ConfigError(f"input_shape {tuple(input_shape)} holds {math.prod(input_shape)} values, not {n_features}")
    if tokens is not None and (not tokens or not all(isinstance(t, str) and t for t in tokens)):
        raise ConfigError("tokens must be None or a non-empty list of non-empty strings")
    accepted = [t.encode() for t in tokens] if tokens is not None else None
    info = ModelInfo(
        n_features=n_features,
        n_classes=n_classes,
        classes=list(classes) if classes is not None else None,
        input_shape=[int(s) for s in input_shape] if input_shape is not None else None,
        output=output,  # type: ignore[arg-type]
    ).model_dump()
    max_bytes = max_batch * n_features * _BYTES_PER_NUMBER + 1024
    lock = threading.Lock()

    app = fastapi.FastAPI(title="miaudit prediction service", version="1", docs_url=None, redoc_url=None)

    def authorised(header: str | None) -> bool:
        if accepted is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        ok = False
        for token in accepted:  # every token compared, each in constant time
            ok |= hmac.compare_digest(given.strip().encode(), token)
        return scheme.lower() == "bearer" and ok

    @app.middleware("http")
    async def guard(request: Any, call_next: Any) -> Any:
        if request.url.path != "/v1/health" and not authorised(request.headers.get("authorization")):
            return _error(
                401, "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(400, "the Content-Length header is not a number")
            if int(length) > max_bytes:
                return _error(413, f"the body has {length} bytes; this service takes at most {max_bytes}")
        return await call_next(request)

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

    @app.get("/v1/model", response_model=ModelInfo)
    def model() -> dict[str, Any]:
        return info

    def answer(X: np.ndarray) -> bytes:
        with lock:
            P = check_probabilities(target.predict_proba(X), n_samples=len(X), n_classes=n_classes)
        body = {"labels": P.argmax(axis=1).tolist()} if output == "labels" else {"probabilities": P.tolist()}
        return pydantic_core.to_json(body)  # the shortest decimals that read back exactly

    async def predict(request: Any) -> Any:
        raw = await request.body()
        if not raw.strip():
            return _error(422, f"the body is empty; {_SEND}")
        try:  # pydantic's own JSON parser: several times faster than json.loads, and it validates as it reads
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            return _error(422, _describe_errors(exc.errors()))
        n = len(body.records)
        if n > max_batch:
            return _error(413, f"{n} records in one request; this service takes at most {max_batch}: split the batch")
        for i, record in enumerate(body.records):
            if len(record) != n_features:
                return _error(422, f"records[{i}] has {len(record)} numbers; this model takes {n_features} features")
        X = np.asarray(body.records, dtype=np.float64)
        return responses.Response(await concurrency.run_in_threadpool(answer, X), media_type="application/json")

    predict.__annotations__["request"] = fastapi.Request  # FastAPI passes the request by this annotation
    schema = {"content": {"application/json": {"schema": PredictRequest.model_json_schema()}}, "required": True}
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        openapi_extra={"requestBody": schema},
    )(predict)

    return app

"""One handler per error kind: a JSON body with a stable ``error`` code and a human message, never a traceback.

A store failure is a 503 whose message is generic: the detail (hosts, ports, the command that failed)
goes to the log, not to whoever asked.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.errors import (
    Forbidden,
    HybridrecError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StoreError,
    StoreTimeout,
    Unauthorized,
    UnsupportedMediaType,
    VersionNotFound,
)

log = logging.getLogger("hybridrec.online")

_STATUS: list[tuple[type[HybridrecError], int]] = [
    (NotFound, 404),
    (VersionNotFound, 503),
    (StoreError, 503),
    (Unauthorized, 401),
    (Forbidden, 403),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (RateLimited, 429),
]
_PUBLIC_503: list[tuple[type[StoreError], str]] = [
    (VersionNotFound, "no model version is loaded yet; retry shortly"),
    (StoreTimeout, "the feature store did not answer in time; retry shortly"),
    (StoreError, "the feature store is unavailable; retry shortly"),
]


def _status_for(exc: HybridrecError) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def error_response(exc: HybridrecError) -> JSONResponse:
    status = _status_for(exc)
    message, headers = str(exc), None
    if isinstance(exc, StoreError):
        log.warning("answered 503 %s: %s", exc.code, exc)
        message = exc.public or next(text for kind, text in _PUBLIC_503 if isinstance(exc, kind))
        headers = {"Retry-After": "1"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(status_code=status, content={"error": exc.code, "message": message}, headers=headers)


def _field_name(loc: tuple) -> str:
    """('query', 'k') -> 'query.k'; ('body', 3, 'event_type') -> '[3].event_type'; ('body',) -> 'body'."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return "body"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field_name(err["loc"]), "message": err["msg"]} for err in exc.errors()]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            status_code=422, content={"error": "validation_error", "message": message, "fields": fields}
        )

    @app.exception_handler(HybridrecError)
    async def _ours(_: Request, exc: HybridrecError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"error": "internal_error", "message": "unexpected server error"})

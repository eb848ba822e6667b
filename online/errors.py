"""One handler per error kind: a JSON body with a stable ``error`` code and a human message, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.errors import HybridrecError, NotFound, StoreError, VersionNotFound

log = logging.getLogger("hybridrec.online")

_STATUS: list[tuple[type[HybridrecError], int]] = [
    (NotFound, 404),
    (VersionNotFound, 503),
    (StoreError, 503),
]


def _status_for(exc: HybridrecError) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


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
        status = _status_for(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(status_code=status, content={"error": exc.code, "message": str(exc)}, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"error": "internal_error", "message": "unexpected server error"})

"""Input limits of the API: body size (before anything is parsed), JSON content type, and JSON parsing.

``BodyLimit`` is a pure ASGI middleware: a ``Content-Length`` over the limit is a 413 at once, without
reading the body; a body without one (chunked) is counted as it arrives and refused with a 413 as soon
as it passes the limit, so a worker never holds more than about ``max_bytes`` of one request.

``json_bytes`` reads a write's body: a 415 unless it is declared JSON (a cross-site form or ``text/plain``
POST, which a browser sends without asking, is refused), and ``parse_json`` parses and validates it in one
pass with pydantic's JSON parser. That parser refuses nesting deeper than 200 levels as invalid JSON (a 422; Python's own
``json`` would raise RecursionError at about 1,000, a 500 before), and an event is an object of
scalars, so anything nested in it is a 422 anyway.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from online.errors import error_response
from shared.errors import PayloadTooLarge, UnsupportedMediaType


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and (length < 0 or length > self.max_bytes):
            await error_response(self._refusal(length))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._refusal(None)  # -> the app's handler for our errors: a JSON 413
            return message

        await self.app(scope, counting_receive, send)

    def _refusal(self, length: int | None) -> PayloadTooLarge:
        got = f"{length:,} bytes" if length is not None and length >= 0 else "more"
        return PayloadTooLarge(f"the request body may be at most {self.max_bytes:,} bytes; got {got}")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1  # malformed: refused like an oversized one
    return None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def json_bytes(request: Request) -> bytes:
    """The body of a write, if it is declared JSON (else a 415)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("send the body as JSON, with the header content-type: application/json")
    return await request.body()


def parse_json(adapter: TypeAdapter[Any], body: bytes) -> Any:
    """``body`` validated by ``adapter``; a refusal names each bad field (``loc=("body", ...)``)."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        raise RequestValidationError(errors) from None

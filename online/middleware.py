"""Per-request telemetry: a request id, the request's metrics and (with ``HYBRIDREC_LOG_FORMAT=json``) one log line.

A pure ASGI middleware, outermost, so it times everything the API does for a request (the refusals
of the other middleware too). The request id is the client's ``X-Request-ID`` when it is a short
token (letters, digits, ``._:-``; at most 128 characters), else a new random one; it is returned in
the response's ``X-Request-ID`` either way and is in the request's log line, so a client's report
can be matched with the log. A route that ranks puts what it served in ``scope["state"]["served"]``
(:func:`note_served`): the tier, the flags and the version, which the metrics and the log line carry.

The log line names the route template (``/recommendations/{user_id}``), never the path: user and
session ids stay out of the log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from online.telemetry import Telemetry

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "unmatched"  # the route label of a request no route matched (bounded label values)

request_log = logging.getLogger("hybridrec.request")


@dataclass(frozen=True)
class Served:
    tier: str
    flags: list[str]
    version: str


def note_served(request: Request, tier: str, flags: list[str], version: str) -> None:
    """Called by a route that ranked: what it served, for the metrics and the log line."""
    request.state.served = Served(tier, flags, version)


def request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class RequestTelemetry:
    def __init__(self, app: ASGIApp, telemetry: Telemetry, log_requests: bool) -> None:
        self.app = app
        self.telemetry = telemetry
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope)
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        status = 500  # if the app raises before it answers, the server's error handler answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            served: Served | None = scope.get("state", {}).get("served")
            tier, flags = (served.tier, served.flags) if served else (None, [])
            self.telemetry.request(route, scope["method"], status, tier, flags, seconds)
            if self.log_requests:
                fields = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 3),
                    "tier": tier,
                    "flags": flags,
                    "version": served.version if served else None,
                }
                request_log.info("request", extra={"fields": fields})

"""CPU per request of the API's security layer (README "API security"), in process, no Redis.

Drives a bare FastAPI route with raw ASGI calls (no HTTP, no client) with and without each piece the
real app adds: the CORS and body-limit middleware, the route's key dependency (open read, with a key),
and a signed session id checked. Then the pieces alone. CPU time (``time.process_time``), best of
interleaved runs, so that other work on a shared machine disturbs it little; each row is also given
against the bare route measured in the same run.

    .venv/bin/python bench/api_security.py [--requests 3000 --rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from starlette.middleware.cors import CORSMiddleware

from online.auth import Gate, Requires
from online.limits import BodyLimit
from online.ratelimit import TokenBuckets
from shared.apikeys import SCOPES, key_entry, new_api_key, new_session_secret
from shared.config import Settings

KEY = new_api_key()
SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    api_keys=(key_entry(KEY, SCOPES), key_entry(new_api_key(), ["read-recs"]), key_entry(new_api_key(), ["admin"])),
    session_secret=new_session_secret(),
    rate_limit_ip_per_s=1e9,
    rate_limit_key_per_s=1e9,
)
GATE = Gate(SETTINGS)
SESSION = GATE.sessions.issue("u0")


def _app(gated: bool, session_check: bool, middleware: bool) -> FastAPI:
    app = FastAPI()
    app.state.gate = GATE

    @app.get("/r/{user_id}", dependencies=[Depends(Requires("read-recs"))] if gated else [])
    async def route(user_id: str, session_id: Annotated[str | None, Query()] = None) -> dict[str, int]:
        if session_check and session_id is not None and GATE.sessions.check_read(session_id, user_id):
            raise AssertionError("the session id did not verify")
        return {"ok": 1}

    if middleware:
        app.add_middleware(BodyLimit, max_bytes=SETTINGS.max_body_bytes)
        app.add_middleware(CORSMiddleware, allow_origins=[], allow_methods=["GET", "POST"])
    return app


def _scope(headers: list[tuple[bytes, bytes]], query: bytes) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/r/u0", "raw_path": b"/r/u0", "query_string": query, "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("bench", 80),
    }  # fmt: skip


async def _cpu_us_per_request(app: FastAPI, scope: dict[str, Any], n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.process_time()
    for _ in range(n):
        await app(dict(scope, state={}), receive, send)
    return (time.process_time() - start) / n * 1e6


def _cpu_us_per_call(fn: Callable[[], object], n: int = 100_000, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


async def _routes(requests: int, rounds: int) -> dict[str, float]:
    keyed = [(b"authorization", f"Bearer {KEY}".encode())]
    cases = {
        "bare route": (_app(False, False, False), _scope([], b"")),
        "+ CORS and body-limit middleware": (_app(False, False, True), _scope([], b"")),
        "+ key dependency, open read": (_app(True, False, True), _scope([], b"")),
        "+ key dependency, with a key": (_app(True, False, True), _scope(keyed, b"")),
        "+ key, session id in the query, unchecked": (_app(True, False, True), _scope(keyed, f"session_id={SESSION}".encode())),
        "+ key, session id checked (1 HMAC)": (_app(True, True, True), _scope(keyed, f"session_id={SESSION}".encode())),
    }  # fmt: skip
    for app, scope in cases.values():
        await _cpu_us_per_request(app, scope, 300)  # warm up
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (app, scope) in cases.items():
            best[name] = min(best[name], await _cpu_us_per_request(app, scope, requests))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    buckets = TokenBuckets(1e9, 1e9)
    print("piece alone                               CPU per call")
    for name, fn in {
        "key check (3 entries) + bucket": lambda: GATE.admit(KEY, "127.0.0.1", "write-events"),
        "open read, no key + bucket": lambda: GATE.admit(None, "127.0.0.1", "read-recs"),
        "session id check (1 HMAC)": lambda: GATE.sessions.check_read(SESSION, "u0"),
        "session id issued": lambda: GATE.sessions.issue("u0"),
        "token bucket": lambda: buckets.take("10.0.0.1"),
    }.items():
        print(f"{name:40s} {_cpu_us_per_call(fn):8.2f} us")
    best = asyncio.run(_routes(args.requests, args.rounds))
    base = best["bare route"]
    print("\nrequest through FastAPI (raw ASGI)        CPU per request   vs bare route")
    for name, us in best.items():
        print(f"{name:40s} {us:8.1f} us      {us - base:+7.1f} us")


if __name__ == "__main__":
    main()

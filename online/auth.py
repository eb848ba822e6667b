"""Who may call what: API keys with scopes, per-client rate limits, and the route dependency for both.

Per request (an async dependency, so it runs on the event loop before the body is read and before a
worker thread is taken):

1. the key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; its sha256 is compared with
   every configured hash with ``hmac.compare_digest``, without stopping at a match;
2. one token from the bucket of that key (a known key) or of the client IP (no key, or an unknown
   one): when empty, 429 with ``Retry-After``;
3. an unknown key is a 401; no key where the route needs one a 401; a key without the route's scope a 403.

With ``HYBRIDREC_AUTH=off`` keys are not checked (every client is limited by IP) and session ids are not
verified; the app logs that loudly at start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fastapi import Request

from online.ratelimit import TokenBuckets, retry_after_header
from online.sessions import SessionIds
from shared.apikeys import KeyEntry, parse_key_entry, split_entries
from shared.config import Settings
from shared.errors import ConfigError, Forbidden, RateLimited, Unauthorized

log = logging.getLogger("hybridrec.online")

BURST_SECONDS = 2.0  # a bucket holds this many seconds' worth of requests
AUTH_OFF_WARNING = (
    "AUTH IS OFF (HYBRIDREC_AUTH=off): anyone who can reach this API can write events, into any session, "
    "and read any session. Use it only on a trusted machine."
)


@dataclass(frozen=True)
class Caller:
    key: KeyEntry | None  # None: no key (or auth off)
    client: str  # what the rate limit counted: the key's id or the client IP


class Gate:
    """The API's access policy, built once per app from Settings (raises ConfigError if unusable)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth == "on"
        self.keys: tuple[KeyEntry, ...] = tuple(parse_key_entry(e) for e in _entries(settings))
        secret = settings.session_secret.get_secret_value().encode() if settings.session_secret else None
        if self.enabled:
            missing = []
            if not self.keys:
                missing.append("HYBRIDREC_API_KEYS or HYBRIDREC_API_KEYS_FILE (`hybridrec keys new` makes a key)")
            if secret is None:
                missing.append("HYBRIDREC_SESSION_SECRET (`hybridrec keys secret` makes one)")
            if missing:
                raise ConfigError(
                    f"the API refuses to start without authentication: set {' and '.join(missing)}; "
                    "or set HYBRIDREC_AUTH=off to run without it (development only)"
                )
        self.open_scopes = frozenset() if settings.reads_require_key else frozenset({"read-recs"})
        self.sessions = SessionIds(secret, verify=self.enabled)
        self.by_ip = _buckets(settings.rate_limit_ip_per_s)
        self.by_key = _buckets(settings.rate_limit_key_per_s)

    def match(self, presented: str) -> KeyEntry | None:
        digest = hashlib.sha256(presented.encode()).hexdigest().encode()
        found = None
        for entry in self.keys:  # no early exit: the time taken does not say which entry matched
            if hmac.compare_digest(digest, entry.sha256.encode()):
                found = entry
        return found

    def admit(self, presented: str | None, ip: str, scope: str) -> Caller:
        """Steps 1-3 of the module docstring for one request to a route that needs ``scope``."""
        key = self.match(presented) if self.enabled and presented is not None else None
        caller = Caller(key, key.key_id if key else ip)
        buckets = self.by_key if key else self.by_ip
        wait = buckets.take(caller.client) if buckets is not None else 0.0
        if wait:
            raise RateLimited(
                f"too many requests from {'this key' if key else 'this address'}; retry in {wait:.2f}s",
                retry_after_header(wait),
            )
        if not self.enabled:
            return caller
        if presented is not None and key is None:
            raise Unauthorized("unknown API key")
        if scope in self.open_scopes:
            return caller
        if key is None:
            raise Unauthorized(f"this route needs an API key with scope {scope!r} (Authorization: Bearer <key>)")
        if scope not in key.scopes:
            raise Forbidden(f"this API key lacks scope {scope!r} (it has {', '.join(sorted(key.scopes))})")
        return caller


class Requires:
    """Route dependency: ``dependencies=[Depends(Requires("admin"))]``, or a parameter
    ``gate: Annotated[Gate, Depends(Requires("write-events"))]`` where the route needs the gate (its
    session ids) too: one dependency, not two (each costs FastAPI several microseconds). Returns the
    gate once the request is admitted. ``scope`` is also what online.openapi reads to declare the
    route's security."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Gate:
        gate: Gate = request.app.state.gate
        gate.admit(_presented(request.headers), request.client.host if request.client else "unknown", self.scope)
        return gate


def required_scope(route: object) -> str | None:
    """The scope a route's Requires dependency asks for, wherever in its dependencies it sits."""
    from fastapi.routing import APIRoute

    if not isinstance(route, APIRoute):
        return None
    todo = list(route.dependant.dependencies)
    while todo:
        dependant = todo.pop()
        if isinstance(dependant.call, Requires):
            return dependant.call.scope
        todo.extend(dependant.dependencies)
    return None


def _presented(headers: Mapping[str, str]) -> str | None:
    """The key the request carries; None if none. Every credential sent must be the key: a malformed
    ``Authorization``, or two different keys, give "" (which matches no key: a 401)."""
    x_api_key, authorization = headers.get("x-api-key"), headers.get("authorization")
    if authorization is None:
        return x_api_key
    kind, _, token = authorization.partition(" ")
    bearer = token.strip() if kind.lower() == "bearer" else ""
    return bearer if x_api_key is None or x_api_key == bearer else ""


def _entries(settings: Settings) -> Sequence[str]:
    entries = list(settings.api_keys)
    if settings.api_keys_file is not None:
        try:
            entries += split_entries(settings.api_keys_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read HYBRIDREC_API_KEYS_FILE {settings.api_keys_file}: {exc}") from None
    for entry in entries:
        try:
            parse_key_entry(entry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return entries


def _buckets(rate_per_s: float) -> TokenBuckets | None:
    return TokenBuckets(rate_per_s, max(1.0, rate_per_s * BURST_SECONDS)) if rate_per_s > 0 else None

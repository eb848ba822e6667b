"""The API's request path on Redis, over redis-py's asyncio client: one event loop, no thread hop.

Per request the API reads the user record, the session list and the session's seen set in ONE round
trip, one read-only script (:meth:`RedisOnline.read_request`, still encoded: ``codecs.decode_request``
decodes it; a script costs the client less than a pipeline of three commands, measured in
bench/README.md),
and appends live events with the one Lua script of ``redis_events`` (same keys, arguments and checks as
the blocking :class:`~feature_store.redis_events.RedisEventLog`). Background work (model reload,
counters) keeps the blocking client of ``redis_store``: it runs in threads, off the request path.

Every call is bounded by the client's socket timeout (``store_timeout_ms``); redis-py's exceptions
become ours (``translate_errors``), so the API decides what to degrade to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from feature_store.base import AppendResult, SessionEvent, StoredRequest
from feature_store.keys import Keys
from feature_store.redis_client import connect_async, translate_errors
from feature_store.redis_events import AppendScript
from shared.config import Settings

# KEYS: the user record ('' for none), the session list and seen set ('' for none). Returns
# {user record or false, list elements, seen members}. Reads only, so a full Redis runs it too.
READ_SCRIPT = """
local user, events, seen = false, {}, {}
if KEYS[1] ~= '' then user = redis.call('GET', KEYS[1]) end
if KEYS[2] ~= '' then
  events = redis.call('LRANGE', KEYS[2], 0, -1)
  seen = redis.call('SMEMBERS', KEYS[3])
end
return {user, events, seen}
"""


def request_keys(keys: Keys, version: str, user_id: str | None, session_id: str | None) -> list[str]:
    """KEYS of the read script for one request."""
    return [
        keys.user(version, user_id) if user_id is not None else "",
        keys.session(session_id) if session_id is not None else "",
        keys.session_seen(session_id) if session_id is not None else "",
    ]


def stored_request(reply: Sequence[Any]) -> StoredRequest:
    """The read script's reply, still encoded."""
    user, events, seen = reply
    return StoredRequest(user=user or None, session=list(events), seen=list(seen))


class RedisOnline:
    """The API's asyncio store: create it inside the event loop that uses it, ``aclose()`` it there."""

    def __init__(self, client: aioredis.Redis, keys: Keys, script: AppendScript) -> None:
        self.client = client
        self.keys = keys
        self.script = script
        self._append = client.register_script(AppendScript.source)
        self._read = client.register_script(READ_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisOnline:
        """Bounded by ``store_timeout_ms``; the session settings configure appends."""
        keys = Keys(settings.key_prefix)
        script = AppendScript(
            keys,
            session_max_events=settings.session_max_events,
            session_ttl_s=settings.session_ttl_seconds,
            session_seen_max_items=settings.session_seen_max_items,
            event_id_ttl_s=settings.event_id_ttl_s,
            backlog_max=settings.events_backlog_max,
            backlog_policy=settings.events_backlog_policy,
        )
        return cls(connect_async(settings.redis_url, settings.store_timeout_ms / 1000), keys, script)

    async def read_request(self, version: str, user_id: str | None, session_id: str | None) -> StoredRequest:
        """User record, session list and seen set in ONE round trip (one script), still encoded."""
        if user_id is None and session_id is None:
            return StoredRequest(None, [], [])
        with translate_errors("reading request features"):
            reply = await self._read(keys=request_keys(self.keys, version, user_id, session_id))
        return stored_request(reply)

    async def append(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None = None) -> AppendResult:
        """As ``RedisEventLog.append``: atomically, each client event id once; EventsBacklogFull or
        StoreFull having stored nothing."""
        if not events:
            return AppendResult()
        keys, args = self.script.call(events, dedupe)
        with translate_errors("appending session events"):
            reply = await self._append(keys=keys, args=args)
        return self.script.result(reply, events)

    async def current_version(self) -> str | None:
        with translate_errors("reading the version pointer"):
            raw = await self.client.get(self.keys.current)
        return raw.decode() if raw else None

    async def aclose(self) -> None:
        await self.client.aclose()

"""The API's request path on Redis, over redis-py's asyncio client: one event loop, no thread hop.

Per request the API reads the user record, the session list and the session's seen set in ONE round
trip, one read-only script (:meth:`RedisOnline.read_request`, still encoded: ``codecs.decode_request``
decodes it; a script costs the client less than a pipeline of three commands, measured in
bench/README.md),
and appends live events with the one Lua script of ``redis_events`` (same keys, arguments and checks as
the blocking :class:`~feature_store.redis_events.RedisEventLog`). Background work (model reload,
counters) keeps the blocking client of ``redis_store``: it runs in threads, off the request path.

**On Redis Cluster** a script may only touch keys of one hash slot, so the key layout
(``feature_store.keys``) puts what one request reads in one slot wherever that can be done:

* a request without a session reads only the user record (one script, the user's node);
* a session issued for a user (``u<random>.<mac>``) keeps its list and seen set under that user's tag,
  so ``/recommendations/{user}?session_id=`` with the user's own session is one script on one node:
  record, list and seen set, as on one server;
* an anonymous session (or an id a client chose with auth off) is tagged by its own id. Its events are
  written before anyone knows who will read them (they carry no user id), and the user record is
  written by the batch under the user id alone, so no key name both writers can compute puts the two
  in one slot for every reader. Such a request (a user id with an anonymous session: e.g. the demo's
  visitor, ``/recommendations/anonymous?session_id=a...``) reads with TWO scripts, the user's record
  and the session, issued concurrently (``asyncio.gather``): two commands, on two nodes, in about one
  round trip of wall time. (Two reads in every case would cost the common one, a user with their own
  session, a second command; keying sessions by user would leave anonymous visitors without a slot.)

Every call is bounded by the client's socket timeout (``store_timeout_ms``); redis-py's exceptions
become ours (``translate_errors``), so the API decides what to degrade to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis import exceptions as rexc
from redis.crc import key_slot

from feature_store.base import AppendResult, SessionEvent, StoredRequest
from feature_store.keys import Keys
from feature_store.redis_client import AsyncClient, connect_async, is_cluster, translate_errors
from feature_store.redis_events import AppendScript
from shared.config import Settings
from shared.errors import ConfigError, ReplicationTimeout, StoreError

# ARGV[1]: what to read, 'u' the user record, 's' the session, 'us' both. KEYS: the user record (with
# 'u'), then the session list and seen set (with 's'). Returns {user record or false, list elements, seen
# members}. Reads only, so a full Redis runs it too.
READ_SCRIPT = """
local user, events, seen = false, {}, {}
local n = 0
if ARGV[1] ~= 's' then
  user = redis.call('GET', KEYS[1])
  n = 1
end
if ARGV[1] ~= 'u' then
  events = redis.call('LRANGE', KEYS[n + 1], 0, -1)
  seen = redis.call('SMEMBERS', KEYS[n + 2])
end
return {user, events, seen}
"""
ReadCall = tuple[list[str], list[str]]  # (KEYS, ARGV) of one read script call
T = TypeVar("T")


def request_reads(keys: Keys, version: str, user_id: str | None, session_id: str | None) -> list[ReadCall]:
    """The read script's calls for one request that has a user id or a session id or both: ONE whenever
    its keys share a slot (always on one server), else two, the user's and the session's (see the
    module docstring)."""
    user = [keys.user(version, user_id)] if user_id is not None else []
    session = (
        [keys.session(session_id, user_id), keys.session_seen(session_id, user_id)] if session_id is not None else []
    )
    if user and session and keys.cluster and key_slot(user[0].encode()) != key_slot(session[0].encode()):
        return [(user, ["u"]), (session, ["s"])]
    return [(user + session, [("u" if user else "") + ("s" if session else "")])]


def stored_request(replies: Sequence[Sequence[Any]]) -> StoredRequest:
    """The read calls' replies, still encoded."""
    user: bytes | None = None
    events: list[bytes] = []
    seen: list[bytes] = []
    for one_user, one_events, one_seen in replies:
        user = user or one_user or None
        events += one_events
        seen += one_seen
    return StoredRequest(user=user, session=events, seen=seen)


class RedisOnline:
    """The API's asyncio store: create it inside the event loop that uses it, ``aclose()`` it there."""

    def __init__(
        self,
        client: AsyncClient,
        keys: Keys,
        script: AppendScript,
        min_replicas: int = 0,
        replicas_timeout_ms: int = 25,
    ) -> None:
        """``min_replicas``: an append returns only once that many replicas have it (WAIT, at most
        ``replicas_timeout_ms``), else raises ReplicationTimeout; one server only."""
        if min_replicas and keys.cluster:
            raise ConfigError(
                "HYBRIDREC_EVENTS_MIN_REPLICAS is not supported on a Redis Cluster (WAIT must follow the append on "
                "the same connection to the same node); set it to 0"
            )
        self.client = client
        self.keys = keys
        self.script = script
        self.min_replicas = min_replicas
        self.replicas_timeout_ms = replicas_timeout_ms
        self._append = client.register_script(AppendScript.source)
        self._sessions = client.register_script(AppendScript.sessions_source)
        self._read = client.register_script(READ_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisOnline:
        """Bounded by ``store_timeout_ms``; the session settings configure appends."""
        client = connect_async(settings.redis_url, settings.store_timeout_ms / 1000)
        keys = Keys(settings.key_prefix, cluster=is_cluster(client))
        script = AppendScript(
            keys,
            session_max_events=settings.session_max_events,
            session_ttl_s=settings.session_ttl_seconds,
            session_seen_max_items=settings.session_seen_max_items,
            event_id_ttl_s=settings.event_id_ttl_s,
            backlog_max=settings.events_backlog_max,
            backlog_policy=settings.events_backlog_policy,
        )
        return cls(client, keys, script, settings.events_min_replicas, settings.events_replicas_timeout_ms)

    async def read_request(self, version: str, user_id: str | None, session_id: str | None) -> StoredRequest:
        """User record, session list and seen set in ONE round trip (one script; on a cluster, two
        concurrent ones for a user id with an anonymous session), still encoded."""
        if user_id is None and session_id is None:
            return StoredRequest(None, [], [])
        calls = request_reads(self.keys, version, user_id, session_id)
        with translate_errors("reading request features"):
            if self.keys.cluster and len(calls) == 1:  # redis-py's cluster client reconnects and retries itself
                replies = [await self._read(keys=calls[0][0], args=calls[0][1])]
            elif self.keys.cluster:
                replies = await asyncio.gather(*(self._read(keys=keys, args=args) for keys, args in calls))
            else:
                replies = [await self._repeatable(lambda: self._read_one(*calls[0]))]
        return stored_request(replies)

    async def _repeatable(self, read: Callable[[], Awaitable[T]]) -> T:
        """``read()`` on one server, once more on a new connection if its connection was lost (a read is
        safe to repeat; see _drop_idle_connections). A cluster's client reconnects and retries itself."""
        try:
            return await read()
        except rexc.ConnectionError:
            if self.keys.cluster:
                raise
            await self._drop_idle_connections()
            return await read()

    async def _drop_idle_connections(self) -> None:
        """After a command failed on a lost connection (one server). The pool's idle connections outlive a
        Redis restart or failover, and the first command on each fails at once ("Connection closed by
        server"; redis-py's retries are off): without this, one request per pooled connection would fail
        although Redis is back. A read that failed so is repeated once, on a new connection; a timeout is
        not (its budget is spent), nor is an append (a lost reply leaves its outcome unknown: the API
        answers 503 and the client retries with the same event ids)."""
        await self.client.connection_pool.disconnect(inuse_connections=False)

    async def _read_one(self, keys: list[str], args: list[str]) -> Any:
        """The read script on one server: EVALSHA as a plain command (redis-py's Script call costs ~12 us
        more of client CPU a request, bench/README.md); loaded by the Script if the server lacks it."""
        try:
            return await self.client.execute_command("EVALSHA", self._read.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await self._read(keys=keys, args=args)

    async def append(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None = None) -> AppendResult:
        """As ``RedisEventLog.append``: atomically, each client event id once; EventsBacklogFull or
        StoreFull having stored nothing."""
        if not events:
            return AppendResult()
        keys, args = self.script.call(events, dedupe)
        with translate_errors("appending session events"):
            try:
                if self.min_replicas:
                    reply = await self._append_replicated(keys, args)
                else:
                    reply = await self._append(keys=keys, args=args)
            except rexc.ConnectionError:  # not repeated: see _drop_idle_connections
                if not self.keys.cluster:
                    await self._drop_idle_connections()
                raise
        result = self.script.result(reply, events)
        if not self.keys.cluster:
            return result
        try:  # a cluster writes the sessions in their own slots: see redis_events
            with translate_errors("writing live sessions"):
                for keys, args in self.script.session_calls(events, reply):
                    await self._sessions(keys=keys, args=args)
        except StoreError as exc:
            return self.script.sessions_missed(result, events, reply, exc)
        return result

    async def _append_replicated(self, keys: list[str], args: list[str]) -> Any:
        """The append script, a write of the replication fence and ``WAIT``, in one pipeline: one
        connection, so WAIT counts the replicas that have this append (and, through the fence, whatever
        was stored before it: a retry whose events are all duplicates writes nothing else). Raises
        ReplicationTimeout when fewer than ``min_replicas`` confirmed in time: the events are on the
        primary (a retry with the same ids is acknowledged as duplicates once the replicas have them)."""

        def pipeline() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(self._append.sha, len(keys), *keys, *args)
            pipe.set(self.keys.replication_fence, b"1")
            pipe.execute_command("WAIT", self.min_replicas, self.replicas_timeout_ms)
            return pipe.execute()

        try:
            reply, _, confirmed = await pipeline()
        except rexc.NoScriptError:  # the script did not run, so nothing was written: load it, run again
            self._append.sha = await self.client.script_load(self._append.script)
            reply, _, confirmed = await pipeline()
        if int(confirmed) < self.min_replicas:
            raise ReplicationTimeout(
                f"appending session events: stored on the Redis primary, but {int(confirmed)} of the "
                f"{self.min_replicas} replica(s) HYBRIDREC_EVENTS_MIN_REPLICAS requires confirmed it within "
                f"{self.replicas_timeout_ms} ms"
            )
        return reply

    async def connect(self) -> None:
        """Open a connection now (on a cluster, read its slot map and connect to each node), so that the
        first request does not pay for it within its ``store_timeout_ms``. Raises StoreError; the app
        starts anyway (a store that is down is reported by ``/ready`` and flagged on each answer)."""
        with translate_errors("connecting to Redis"):
            if self.keys.cluster:
                await self.client.initialize()
            else:
                await self.client.ping()

    async def current_version(self) -> str | None:
        """``/ready``'s read: repeated once on a lost connection, as a request's read is."""
        with translate_errors("reading the version pointer"):
            raw = await self._repeatable(lambda: self.client.get(self.keys.current))
        return raw.decode() if raw else None

    async def aclose(self) -> None:
        await self.client.aclose()

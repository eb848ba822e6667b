"""Redis implementation of :class:`feature_store.base.EventLog`: live sessions and the durable stream.

Appending is ONE Lua script (atomic, one round trip). For each event, in order:

1. de-duplication: an event with a client-supplied ``event_id`` first takes ``p:eid:<event_id>``
   (``SET NX EX event_id_ttl_s``); if that key exists, the event was accepted before (or earlier in
   the same batch) and is reported as a duplicate, storing nothing. So a client that retries a batch
   with the same ids after a timeout stores each event once. Server-made ids are new UUIDs and skip it.
2. its session's capped list (the newest ``session_max_events``, what request-time features read)
   and seen set (the session's items, so exclusion does not end at the list's cap; at most
   ``session_seen_max_items``), both with the session TTL;
3. the stream ``p:events`` that compaction drains into the training data.

**Backlog cap.** The stream only holds events compaction has not written yet, so capping it means
choosing what to lose. ``backlog_policy="refuse"`` (the default): a batch that would take the stream
past ``backlog_max`` is refused whole (EventsBacklogFull, a 503: nothing stored, retry later), so no
accepted event is ever lost. ``"trim"``: ``XADD MAXLEN ~ backlog_max`` keeps accepting (sessions stay
live) and drops the OLDEST un-compacted events, which then never reach training; the script returns
how many it dropped so the API can count and log it.

**On Redis Cluster** a script may only touch one hash slot, and a batch's sessions live in their own
slots (``feature_store.keys``: a user's session in the user's slot), apart from the stream. So the
append is two steps there: (1) the same script, on the stream's slot, de-duplicates and appends to the
stream atomically, exactly as above (the ``p:eid`` keys share the stream's slot) but writes no session;
(2) for the events it stored (not the duplicates), one small script per session slot appends them to
their lists and seen sets. The durable promise holds as on one server: a 202 means every event is in
the stream once. What is weaker: if step 2 fails (a node unreachable or full after step 1), those
events are in the stream but missing from their live sessions, and a retry with the same ids does not
add them (they are duplicates now): the append reports them in ``AppendResult.sessions_missed`` rather
than fail a batch that is stored. Step 1 refusing (backlog full, OOM) still stores nothing anywhere.

**A full Redis** (``maxmemory`` + ``noeviction``): Redis refuses a script's first command that may
grow memory, and every event's first write here is such a command, so under OOM a batch is refused
whole (StoreFull) before it writes anything. Compaction reads (XREADGROUP) and frees memory (XACK,
XDEL: allowed when full, and sent without MULTI, which a full Redis refuses); the consumer group is
created with the stream, by the first append, so compaction never needs XGROUP CREATE when full.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from redis import exceptions as rexc
from redis.crc import key_slot

from feature_store import codecs
from feature_store.base import AppendResult, SessionEvent
from feature_store.keys import COMPACTION_GROUP, Keys
from feature_store.redis_client import Client, translate_errors
from shared.errors import EventsBacklogFull, StoreError

# One event into its session: the capped list (newest max_events) and the seen set (at most seen_max
# items), both with the session TTL.
_PUSH = """
local function push(list, seen, event, item, max_events, ttl, seen_max)
  redis.call('RPUSH', list, event)
  redis.call('LTRIM', list, -max_events, -1)
  redis.call('EXPIRE', list, ttl)
  if redis.call('SCARD', seen) < seen_max then redis.call('SADD', seen, item) end
  redis.call('EXPIRE', seen, ttl)
end
"""

# KEYS: the stream, then per event: its dedup key, session list, session seen set (when unused: '' on
# one server, the stream's key on a cluster, which must see one slot). ARGV: the 9 header values of
# AppendScript._header, the nf stream field names, then per event: '1' to de-duplicate it, its encoded
# session event ('' without a session, and always on a cluster), its item id, its nf field values.
# Returns {added, trimmed, 0-based indexes of the duplicates...}, or {-1, stream length} if refused.
_APPEND = (
    _PUSH
    + """
local max_events, sess_ttl, eid_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local backlog_max, trim, seen_max = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local n, group, nf = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local stream = KEYS[1]
local before = redis.call('XLEN', stream)
if not trim and before + n > backlog_max then return {-1, before} end
local dups, added = {}, 0
for i = 0, n - 1 do
  local k, a = 2 + 3 * i, 10 + nf + (3 + nf) * i
  local fresh = true
  if ARGV[a] == '1' then fresh = redis.call('SET', KEYS[k], '1', 'NX', 'EX', eid_ttl) end
  if fresh then
    if ARGV[a + 1] ~= '' then push(KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], max_events, sess_ttl, seen_max) end
    if before + added == 0 and redis.call('EXISTS', stream) == 0 then
      redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    end
    local entry = {'XADD', stream, '*'}
    if trim then entry = {'XADD', stream, 'MAXLEN', '~', backlog_max, '*'} end
    for f = 1, nf do
      entry[#entry + 1] = ARGV[9 + f]
      entry[#entry + 1] = ARGV[a + 2 + f]
    end
    redis.call(unpack(entry))
    added = added + 1
  else
    dups[#dups + 1] = i
  end
end
return {added, before + added - redis.call('XLEN', stream), unpack(dups)}
"""
)
# Cluster mode, step 2: KEYS per event: session list, seen set (all of one slot). ARGV: max events, TTL,
# seen cap, then per event its encoded session event and item id. Returns the number of events.
_SESSIONS = (
    _PUSH
    + """
local max_events, ttl, seen_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, #KEYS / 2 do
  push(KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 + 2 * i], ARGV[3 + 2 * i], max_events, ttl, seen_max)
end
return #KEYS / 2
"""
)


class AppendScript:
    """The append script's arguments and reply, without a client: the API appends through the asyncio
    client (feature_store.redis_online), batch tools and tests through :class:`RedisEventLog`, with the
    same keys, arguments and checks."""

    source = _APPEND
    sessions_source = _SESSIONS

    def __init__(
        self,
        keys: Keys,
        session_max_events: int = 50,
        session_ttl_s: int = 1_800,
        session_seen_max_items: int = 1_000,
        event_id_ttl_s: int = 3_600,
        backlog_max: int = 1_000_000,
        backlog_policy: Literal["refuse", "trim"] = "refuse",
    ) -> None:
        self.keys = keys
        self.session_max_events = session_max_events
        self.session_ttl_s = session_ttl_s
        self.session_seen_max_items = session_seen_max_items
        self.event_id_ttl_s = event_id_ttl_s
        self.backlog_max = backlog_max
        self.backlog_policy = backlog_policy

    def call(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None) -> tuple[list[str], list[Any]]:
        """(KEYS, ARGV) of the script for ``events`` (non-empty); ``dedupe[i]``: event i carries a
        client-supplied id to de-duplicate on (default: all do). On a cluster it writes no session
        (:meth:`session_calls` does)."""
        flags = [True] * len(events) if dedupe is None else list(dedupe)
        fields = [codecs.encode_stream_event(ev) for ev in events]
        stream, here = self.keys.events_stream, not self.keys.cluster
        unused = "" if here else stream
        keys, args = [stream], [*self._header(len(events), len(fields[0])), *fields[0]]
        for ev, flag, entry in zip(events, flags, fields, strict=True):
            session = here and bool(ev.session_id)
            keys += [
                self.keys.event_id(ev.event_id) if flag else unused,
                self.keys.session(ev.session_id, ev.user_id) if session else unused,  # type: ignore[arg-type]
                self.keys.session_seen(ev.session_id, ev.user_id) if session else unused,  # type: ignore[arg-type]
            ]
            args += ["1" if flag else "0", codecs.encode_session_event(ev) if session else "", ev.item_id]
            args += list(entry.values())
        return keys, args

    def session_calls(self, events: Sequence[SessionEvent], reply: Sequence[Any]) -> list[tuple[list[str], list[Any]]]:
        """Cluster mode, step 2: (KEYS, ARGV) of the session script for each hash slot of the sessions of
        the events the append script stored (``reply``: its answer; duplicates are left out)."""
        dups = {int(i) for i in reply[2:]}
        calls: dict[int, tuple[list[str], list[Any]]] = {}
        header = [self.session_max_events, self.session_ttl_s, self.session_seen_max_items]
        for i, ev in enumerate(events):
            if i in dups or not ev.session_id:
                continue
            session = self.keys.session(ev.session_id, ev.user_id)
            keys, args = calls.setdefault(key_slot(session.encode()), ([], list(header)))
            keys += [session, self.keys.session_seen(ev.session_id, ev.user_id)]
            args += [codecs.encode_session_event(ev), ev.item_id]
        return list(calls.values())

    def sessions_missed(
        self, result: AppendResult, events: Sequence[SessionEvent], reply: Sequence[Any], error: StoreError
    ) -> AppendResult:
        """``result`` noting that step 2 failed (``error``): the stored events with a session are in the
        stream, not in their live sessions."""
        n = sum(len(keys) // 2 for keys, _ in self.session_calls(events, reply))
        return dataclasses.replace(result, sessions_missed=n, sessions_error=str(error))

    def result(self, reply: Sequence[Any], events: Sequence[SessionEvent]) -> AppendResult:
        """The script's reply as an AppendResult; EventsBacklogFull if it refused the batch."""
        added, second, *dups = (int(x) for x in reply)
        if added < 0:
            raise EventsBacklogFull(
                f"the live-events backlog is full ({second:,} events wait for compaction; the cap is "
                f"{self.backlog_max:,}): nothing was stored; retry later with the same event ids"
            )
        return AppendResult(duplicates=[events[i].event_id for i in dups], trimmed=max(second, 0))

    def _header(self, n: int, n_fields: int) -> list[Any]:
        """ARGV[1..9] of the append script."""
        return [
            self.session_max_events,
            self.session_ttl_s,
            self.event_id_ttl_s,
            self.backlog_max,
            "1" if self.backlog_policy == "trim" else "0",
            self.session_seen_max_items,
            n,
            COMPACTION_GROUP,
            n_fields,
        ]


class RedisEventLog:
    """The event log over redis-py's blocking client: compaction's reads and acknowledgements, and
    appends for batch tools and tests (``AppendScript``'s keyword arguments configure them)."""

    def __init__(self, client: Client, keys: Keys, **append: Any) -> None:
        self.client = client
        self.keys = keys
        self.script = AppendScript(keys, **append)
        self._append = client.register_script(AppendScript.source)
        self._sessions = client.register_script(AppendScript.sessions_source)

    # --- live events -------------------------------------------------------------------------
    def append(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None = None) -> AppendResult:
        """Append to sessions and the durable stream, atomically (one script; see the module docstring).

        ``dedupe[i]``: event i carries a client-supplied id to de-duplicate on (default: all do).
        Raises EventsBacklogFull (policy "refuse", the stream at its cap) or StoreFull (Redis at
        maxmemory) having stored nothing.
        """
        if not events:
            return AppendResult()
        keys, args = self.script.call(events, dedupe)
        with translate_errors("appending session events"):
            reply = self._append(keys=keys, args=args)
        result = self.script.result(reply, events)
        if not self.keys.cluster:
            return result
        try:  # step 2 on a cluster (module docstring)
            with translate_errors("writing live sessions"):
                for keys, args in self.script.session_calls(events, reply):
                    self._sessions(keys=keys, args=args)
        except StoreError as exc:
            return self.script.sessions_missed(result, events, reply, exc)
        return result

    def read_session(self, session_id: str, user_id: str | None = None) -> list[SessionEvent]:
        """The session's list, oldest first; ``user_id``: the user its events carry (on a cluster, a
        session issued for a user lives in that user's slot)."""
        with translate_errors("reading a session"):
            raw = self.client.lrange(self.keys.session(session_id, user_id), 0, -1)
        return [codecs.decode_session_event(r, session_id) for r in raw]

    # --- draining the stream (batch compaction) ------------------------------------------------
    def stream_length(self) -> int:
        with translate_errors("reading the events stream"):
            return int(self.client.xlen(self.keys.events_stream))

    def ensure_consumer_group(self, group: str) -> bool:
        """Make sure ``group`` reads the events stream from id 0 (every entry still in the stream).
        False when there is no stream yet (nothing to drain).

        The first append creates the stream together with the compaction group, so this normally only
        reads (XINFO GROUPS), which a full Redis allows; it creates the group (XGROUP CREATE, refused
        when Redis is full) only for a stream made without it, and never creates the stream itself.
        """
        stream = self.keys.events_stream
        with translate_errors(f"creating consumer group {group!r}"):
            try:
                groups = self.client.xinfo_groups(stream)
            except rexc.ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return False
                raise
            if any(g["name"] == group.encode() for g in groups):
                return True
            try:
                self.client.xgroup_create(stream, group, id="0")
            except rexc.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            return True

    def read_events(self, group: str, consumer: str, count: int, pending_first: bool) -> list[tuple[str, SessionEvent]]:
        """Up to ``count`` entries as (stream id, event), oldest first.

        With ``pending_first``, the entries ``consumer`` was given earlier but never acknowledged come
        back first (XREADGROUP id 0), and only when it has none are new entries delivered (id ``>``);
        a pending batch is never topped up with new entries, so it is re-read with the same id range.
        Decoding never fails (``codecs.decode_stream_event``); validating the values is the caller's job.
        """
        stream = self.keys.events_stream
        with translate_errors("reading the events stream"):
            entries = []
            if pending_first:
                entries = _stream_entries(self.client.xreadgroup(group, consumer, {stream: "0"}, count=count))
            if not entries:
                entries = _stream_entries(self.client.xreadgroup(group, consumer, {stream: ">"}, count=count))
        return [(sid.decode(), codecs.decode_stream_event(fields)) for sid, fields in entries]

    def ack_events(self, group: str, ids: Sequence[str]) -> int:
        """Acknowledge ``ids`` for ``group``, then delete them from the stream: XACK and XDEL in one
        round trip, without MULTI (a full Redis refuses every command queued in a MULTI, and these two
        are what free its memory). XACK first, so an entry is never deleted while still pending; if the
        connection drops between the two, an acknowledged entry stays in the stream, which compaction
        never delivers again (it only wastes its bytes). Returns how many were pending."""
        if not ids:
            return 0
        stream = self.keys.events_stream
        with translate_errors("acknowledging compacted events"):
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(stream, group, *ids)
            pipe.xdel(stream, *ids)
            acked, _deleted = pipe.execute()
        return int(acked)

    def pending_count(self, group: str, consumer: str | None = None) -> int:
        """Entries delivered to ``group`` (or to one ``consumer`` of it) and not yet acknowledged."""
        with translate_errors("reading pending events"):
            summary = self.client.xpending(self.keys.events_stream, group)
        if consumer is None:
            return int(summary["pending"])
        wanted = consumer.encode()
        return sum(int(c["pending"]) for c in summary["consumers"] if c["name"] == wanted)


def _stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of a one-stream XREADGROUP reply (RESP2: ``[[key, [(id, fields), ...]]]``)."""
    return list(reply[0][1]) if reply else []

"""Redis implementation of :class:`feature_store.base.EventLog`: live sessions and the durable stream.

Appending is one MULTI: each event goes to its session's capped list (the newest ``session_max_events``
events, what request-time features read), to its session's seen set (every item of the session, so
exclusion does not end at the list's cap) and to the stream ``p:events`` that compaction drains into
the training data through a consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis import exceptions as rexc

from feature_store import codecs
from feature_store.base import SessionEvent
from feature_store.keys import Keys
from feature_store.redis_client import translate_errors


class RedisEventLog:
    def __init__(self, client: redis.Redis, keys: Keys, session_max_events: int = 50, session_ttl_s: int = 1_800):
        self.client = client
        self.keys = keys
        self.session_max_events = session_max_events
        self.session_ttl_s = session_ttl_s

    # --- live events -------------------------------------------------------------------------
    def append(self, events: Sequence[SessionEvent]) -> None:
        """Append to each session's list and seen set and to the durable stream, atomically (MULTI)."""
        k = self.keys
        with translate_errors("appending session events"):
            pipe = self.client.pipeline(transaction=True)
            for ev in events:
                if ev.session_id:
                    key, seen = k.session(ev.session_id), k.session_seen(ev.session_id)
                    pipe.rpush(key, codecs.encode_session_event(ev))
                    pipe.ltrim(key, -self.session_max_events, -1)
                    pipe.expire(key, self.session_ttl_s)
                    pipe.sadd(seen, ev.item_id)
                    pipe.expire(seen, self.session_ttl_s)
                pipe.xadd(k.events_stream, codecs.encode_stream_event(ev))  # type: ignore[arg-type]
            pipe.execute()

    def read_session(self, session_id: str) -> list[SessionEvent]:
        with translate_errors("reading a session"):
            raw = self.client.lrange(self.keys.session(session_id), 0, -1)
        return [codecs.decode_session_event(r, session_id) for r in raw]

    # --- draining the stream (batch compaction) ------------------------------------------------
    def stream_length(self) -> int:
        with translate_errors("reading the events stream"):
            return int(self.client.xlen(self.keys.events_stream))

    def ensure_consumer_group(self, group: str) -> None:
        """Create ``group`` on the events stream at id 0 (so it sees every entry still in the stream),
        creating an empty stream if needed. Idempotent: an existing group is left as it is."""
        with translate_errors(f"creating consumer group {group!r}"):
            try:
                self.client.xgroup_create(self.keys.events_stream, group, id="0", mkstream=True)
            except rexc.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

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
        """Acknowledge ``ids`` for ``group`` and delete them from the stream, in one MULTI: an entry
        leaves the stream only together with its acknowledgement. Returns how many were pending."""
        if not ids:
            return 0
        stream = self.keys.events_stream
        with translate_errors("acknowledging compacted events"):
            pipe = self.client.pipeline(transaction=True)
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

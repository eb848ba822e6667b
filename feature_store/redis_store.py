"""Redis implementation of :class:`feature_store.base.FeatureStore`.

Publishing protocol (a reader never sees a mix of versions; a killed publish leaves the old one serving):

1. register the version id in ``p:versions`` (so a crash is found and cleaned by a later prune);
2. write every key of the version with pipelined, non-transactional batches;
3. verify: count the version's user keys and compare blob lengths with what was sent;
4. write ``p:v:ver:meta`` last (its presence marks the version complete);
5. :meth:`activate` flips ``p:current`` (and ``p:previous``) atomically in one Lua script.

Republishing a complete version is a no-op, so a retried task converges on the same state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import redis
from redis import exceptions as rexc

from feature_store import codecs
from feature_store.base import ItemBundle, ProgressFn, RequestFeatures, SessionEvent, VersionData, VersionInfo
from feature_store.keys import ALL_CATEGORIES, Keys
from shared.config import Settings
from shared.errors import ConfigError, PublishError, StoreError, StoreTimeout, StoreUnavailable, VersionNotFound

# KEYS: current, previous, meta-of-new. ARGV: new version. Returns the version that was current before.
_ACTIVATE = """
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('version has no meta: incomplete') end
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return cur end
if cur then redis.call('SET', KEYS[2], cur) end
redis.call('SET', KEYS[1], ARGV[1])
return cur
"""
# KEYS: current, previous. Swaps them; returns the new current.
_ROLLBACK = """
local cur = redis.call('GET', KEYS[1])
local prev = redis.call('GET', KEYS[2])
if not prev then return redis.error_reply('no previous version to roll back to') end
redis.call('SET', KEYS[1], prev)
if cur then redis.call('SET', KEYS[2], cur) end
return prev
"""


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Map redis-py exceptions to ours, so callers choose a fallback without knowing the client."""
    try:
        yield
    except rexc.TimeoutError as exc:
        raise StoreTimeout(f"{what}: Redis did not answer in time ({exc})") from exc
    except rexc.ConnectionError as exc:
        raise StoreUnavailable(f"{what}: cannot reach Redis ({exc})") from exc
    except rexc.ResponseError as exc:
        raise StoreError(f"{what}: {exc}") from exc
    except rexc.RedisError as exc:
        raise StoreError(f"{what}: {exc}") from exc


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


class RedisStore:
    """Thread-safe (redis-py pools connections); one instance per process."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "hr",
        batch_size: int = 2_000,
        session_max_events: int = 50,
        session_ttl_s: int = 1_800,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.batch_size = batch_size
        self.session_max_events = session_max_events
        self.session_ttl_s = session_ttl_s
        self._activate = client.register_script(_ACTIVATE)
        self._rollback = client.register_script(_ROLLBACK)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None, online: bool = False) -> RedisStore:
        """Client for ``url`` (default: settings.redis_url). ``online`` applies the tight request timeout;
        batch use waits as long as a large pipeline needs."""
        url = url or settings.redis_url
        if not url:
            raise ConfigError("no Redis URL: set HYBRIDREC_REDIS_URL (or run `hybridrec demo`, which starts one)")
        timeout = settings.store_timeout_ms / 1000 if online else None
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout or 5.0, health_check_interval=30
        )
        return cls(
            client,
            prefix=settings.key_prefix,
            batch_size=settings.publish_batch_size,
            session_max_events=settings.session_max_events,
            session_ttl_s=settings.session_ttl_seconds,
        )

    def close(self) -> None:
        self.client.close()

    # --- publishing ------------------------------------------------------------------------
    def write_version(self, data: VersionData, progress: ProgressFn | None = None) -> None:
        k, ver = self.keys, data.version
        with translate_errors(f"publishing {ver}"):
            if self.client.exists(k.meta(ver)):
                return  # complete already: publishing is idempotent
            self.client.zadd(k.versions, {ver: time.time()})
            self._delete_version_keys(ver)  # leftovers of an earlier killed attempt
            blobs = self._item_blobs(data)
            pipe = self.client.pipeline(transaction=False)
            for key, value in blobs.items():
                pipe.set(key, value)
            pipe.execute()
            n_users = len(data.user_ids)
            for rows in _chunks(n_users, self.batch_size):
                pipe = self.client.pipeline(transaction=False)
                for i in rows:
                    pipe.set(
                        k.user(ver, data.user_ids[i]), codecs.encode_user(data.user_factors[i], data.candidates[i])
                    )
                pipe.execute()
                if progress:
                    progress(len(rows))
            self._verify(ver, n_users, blobs)
            self.client.set(k.meta(ver), codecs.encode_json(data.meta))

    def _item_blobs(self, data: VersionData) -> dict[str, bytes]:
        k, ver = self.keys, data.version
        blobs = {
            k.items(ver): codecs.encode_json(
                {
                    "item_id": list(data.item_ids),
                    "category": list(data.categories),
                    "title": list(data.titles),
                    "available": [bool(a) for a in data.available],
                }
            ),
            k.item_factors(ver): codecs.encode_array(data.item_factors, "<f4"),
            k.neighbours(ver): codecs.encode_array(data.neighbours, "<i4"),
            k.neighbour_scores(ver): codecs.encode_array(data.neighbour_scores, "<f2"),
            k.covisit(ver): codecs.encode_array(data.covisit, "<i4"),
            k.covisit_scores(ver): codecs.encode_array(data.covisit_scores, "<f2"),
            k.popularity(ver): codecs.encode_array(data.popularity, "<f4"),
        }
        for category, idx in data.popular.items():
            blobs[k.popular(ver, category)] = codecs.encode_array(idx, "<i4")
        return blobs

    def _verify(self, ver: str, n_users: int, blobs: dict[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key in blobs:
            pipe.strlen(key)
        lengths = pipe.execute()
        wrong = [key for key, n in zip(blobs, lengths, strict=True) if n != len(blobs[key])]
        found = self.count_user_keys(ver)
        if wrong or found != n_users:
            raise PublishError(
                f"version {ver} did not verify: {found}/{n_users} user keys, blobs with wrong length: {wrong or 'none'}; "
                "the current version is unchanged"
            )

    def count_user_keys(self, version: str) -> int:
        with translate_errors("counting user keys"):
            return sum(1 for _ in self.client.scan_iter(match=self.keys.user_pattern(version), count=10_000))

    def activate(self, version: str) -> str | None:
        k = self.keys
        with translate_errors(f"activating {version}"):
            try:
                before = self._activate(keys=[k.current, k.previous, k.meta(version)], args=[version])
            except rexc.ResponseError as exc:
                raise PublishError(f"cannot activate {version}: {exc}") from exc
        return before.decode() if before else None

    def rollback(self) -> str:
        with translate_errors("rolling back"):
            try:
                return self._rollback(keys=[self.keys.current, self.keys.previous]).decode()
            except rexc.ResponseError as exc:
                raise VersionNotFound(str(exc)) from exc

    def prune(self, keep: int) -> list[str]:
        """Delete all versions but the newest ``keep`` complete ones (always keeping current and previous)."""
        k = self.keys
        with translate_errors("pruning versions"):
            infos = self.list_versions()
            complete = [v.version for v in infos if v.meta is not None]
            protected = {v.version for v in infos if v.is_current or v.is_previous} | set(complete[-keep:])
            doomed = [v.version for v in infos if v.version not in protected]
            for ver in doomed:
                self._delete_version_keys(ver)
                self.client.zrem(k.versions, ver)
            return doomed

    def _delete_version_keys(self, ver: str) -> None:
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=self.keys.version_pattern(ver), count=10_000):
            batch.append(key)
            if len(batch) >= 5_000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    # --- reading ---------------------------------------------------------------------------
    def ping(self) -> None:
        with translate_errors("ping"):
            self.client.ping()

    def current_version(self) -> str | None:
        with translate_errors("reading the version pointer"):
            raw = self.client.get(self.keys.current)
        return raw.decode() if raw else None

    def list_versions(self) -> list[VersionInfo]:
        """All registered versions, oldest first."""
        k = self.keys
        with translate_errors("listing versions"):
            entries = self.client.zrange(k.versions, 0, -1, withscores=True)
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.current)
            pipe.get(k.previous)
            for ver, _ in entries:
                pipe.get(k.meta(ver.decode()))
            cur, prev, *metas = pipe.execute()
        out = []
        for (ver_b, score), meta in zip(entries, metas, strict=True):
            out.append(
                VersionInfo(
                    version=ver_b.decode(),
                    meta=codecs.decode_json(meta) if meta else None,  # type: ignore[arg-type]
                    started_at=score,
                    is_current=ver_b == cur,
                    is_previous=ver_b == prev,
                )
            )
        return out

    def read_meta(self, version: str) -> dict[str, Any] | None:
        with translate_errors("reading version meta"):
            raw = self.client.get(self.keys.meta(version))
        return codecs.decode_json(raw) if raw else None  # type: ignore[return-value]

    def read_item_bundle(self, version: str) -> ItemBundle:
        k = self.keys
        with translate_errors(f"loading items of {version}"):
            meta = self.read_meta(version)
            if meta is None:
                raise VersionNotFound(f"version {version} is not complete or was pruned")
            pipe = self.client.pipeline(transaction=False)
            for key in (k.items(version), k.item_factors(version), k.neighbours(version)):
                pipe.get(key)
            pipe.get(k.neighbour_scores(version))
            pipe.get(k.covisit(version))
            pipe.get(k.covisit_scores(version))
            pipe.get(k.popularity(version))
            items_raw, factors_raw, nbr_raw, nbr_s_raw, cov_raw, cov_s_raw, pop_raw = pipe.execute()
            popular_keys = list(self.client.scan_iter(match=k.popular_pattern(version), count=10_000))
            popular_vals = self.client.mget(popular_keys) if popular_keys else []
        n, f, m = int(meta["n_items"]), int(meta["n_factors"]), int(meta["n_neighbours"])
        # A version published before co-visitation existed has no n_covisit and no keys: empty lists.
        m_c = int(meta.get("n_covisit", 0))
        items = codecs.decode_json(items_raw)
        prefix_len = len(k.popular(version, ""))
        return ItemBundle(
            version=version,
            meta=meta,
            item_ids=items["item_id"],  # type: ignore[index]
            categories=np.array(items["category"], dtype=object),  # type: ignore[index]
            titles=items["title"],  # type: ignore[index]
            available=np.array(items["available"], dtype=bool),  # type: ignore[index]
            item_factors=codecs.decode_array(factors_raw, "<f4", (n, f)),
            neighbours=codecs.decode_array(nbr_raw, "<i4", (n, m)),
            neighbour_scores=codecs.decode_array(nbr_s_raw, "<f2", (n, m)).astype(np.float32),
            covisit=codecs.decode_array(cov_raw or b"", "<i4", (n, m_c)),
            covisit_scores=codecs.decode_array(cov_s_raw or b"", "<f2", (n, m_c)).astype(np.float32),
            popularity=codecs.decode_array(pop_raw, "<f4", (n,)),
            popular={
                key.decode()[prefix_len:]: np.frombuffer(val, dtype="<i4")
                for key, val in zip(popular_keys, popular_vals, strict=True)
            },
        )

    def read_request(self, version: str, user_id: str | None, session_id: str | None) -> RequestFeatures:
        """User record and session events in ONE pipelined round trip."""
        with translate_errors("reading request features"):
            pipe = self.client.pipeline(transaction=False)
            if user_id is not None:
                pipe.get(self.keys.user(version, user_id))
            if session_id is not None:
                pipe.lrange(self.keys.session(session_id), 0, -1)
            results = pipe.execute() if (user_id is not None or session_id is not None) else []
        user_raw = results.pop(0) if user_id is not None else None
        session_raw = results.pop(0) if session_id is not None else []
        return RequestFeatures(
            user=codecs.decode_user(user_raw) if user_raw else None,
            session=[_decode_event(raw, session_id) for raw in session_raw],
        )

    def read_user(self, version: str, user_id: str) -> codecs.UserRecord | None:
        return self.read_request(version, user_id, None).user

    # --- live events -------------------------------------------------------------------------
    def append_session_events(self, events: Sequence[SessionEvent]) -> None:
        """Append to each session's capped list and to the durable events stream, atomically (MULTI)."""
        k = self.keys
        with translate_errors("appending session events"):
            pipe = self.client.pipeline(transaction=True)
            for ev in events:
                if ev.session_id:
                    key = k.session(ev.session_id)
                    pipe.rpush(
                        key, codecs.encode_json({"i": ev.item_id, "t": ev.event_type, "ts": ev.ts, "e": ev.event_id})
                    )
                    pipe.ltrim(key, -self.session_max_events, -1)
                    pipe.expire(key, self.session_ttl_s)
                fields = {
                    "event_id": ev.event_id,
                    "user_id": ev.user_id or "",
                    "session_id": ev.session_id or "",
                    "item_id": ev.item_id,
                    "event_type": ev.event_type,
                    "ts": repr(ev.ts),
                    "weight": "" if ev.weight is None else repr(ev.weight),
                }
                pipe.xadd(k.events_stream, fields)
            pipe.execute()

    def read_session(self, session_id: str) -> list[SessionEvent]:
        with translate_errors("reading a session"):
            raw = self.client.lrange(self.keys.session(session_id), 0, -1)
        return [_decode_event(r, session_id) for r in raw]

    def add_counters(self, counts: Mapping[str, int]) -> None:
        """Add ``counts`` to the shared served-requests counters (one pipelined round trip)."""
        with translate_errors("flushing counters"):
            pipe = self.client.pipeline(transaction=False)
            for name, n in counts.items():
                pipe.hincrby(self.keys.served_counters, name, n)
            pipe.execute()

    def read_counters(self) -> dict[str, int]:
        with translate_errors("reading counters"):
            raw = self.client.hgetall(self.keys.served_counters)
        return {k.decode(): int(v) for k, v in raw.items()}

    def stream_length(self) -> int:
        with translate_errors("reading the events stream"):
            return int(self.client.xlen(self.keys.events_stream))

    # --- draining the events stream (batch compaction) -----------------------------------------
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
        Decoding never fails: a missing text field reads as "" (user_id/session_id as None), an
        unreadable ts or weight as NaN, and an entry deleted while pending has every field missing.
        Validating the values is the caller's job.
        """
        stream = self.keys.events_stream
        with translate_errors("reading the events stream"):
            entries = []
            if pending_first:
                entries = _stream_entries(self.client.xreadgroup(group, consumer, {stream: "0"}, count=count))
            if not entries:
                entries = _stream_entries(self.client.xreadgroup(group, consumer, {stream: ">"}, count=count))
        return [(sid.decode(), _decode_stream_event(fields)) for sid, fields in entries]

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


def _decode_event(raw: bytes, session_id: str | None) -> SessionEvent:
    d = codecs.decode_json(raw)
    return SessionEvent(item_id=d["i"], event_type=d["t"], ts=float(d["ts"]), event_id=d["e"], session_id=session_id)  # type: ignore[index]


def _stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of a one-stream XREADGROUP reply (RESP2: ``[[key, [(id, fields), ...]]]``)."""
    return list(reply[0][1]) if reply else []


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _decode_stream_event(fields: dict[bytes, bytes] | None) -> SessionEvent:
    """One ``p:events`` entry (see keys.py) as a SessionEvent, leniently (see RedisStore.read_events)."""
    f = fields or {}

    def text(name: bytes) -> str:
        raw = f.get(name)
        return raw.decode("utf-8", "replace") if raw else ""

    weight = text(b"weight")
    return SessionEvent(
        item_id=text(b"item_id"),
        event_type=text(b"event_type"),
        ts=_float_or_nan(text(b"ts")),
        event_id=text(b"event_id"),
        user_id=text(b"user_id") or None,
        session_id=text(b"session_id") or None,
        weight=_float_or_nan(weight) if weight else None,
    )


__all__ = ["ALL_CATEGORIES", "RedisStore", "translate_errors"]

"""hybridrec's stores on one Redis (or one Redis Cluster): the version store, the event log and the
counters, sharing a client.

``RedisStore.from_settings(settings)`` connects; use it as a context manager (``with ... as store:``)
so the connection pool is closed whatever happens. Each user of the store takes the narrow part it
needs: batch publishing ``store.versions``, compaction ``store.events``, the API all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from feature_store.keys import STATS_TTL_S, Keys
from feature_store.redis_client import Client, connect, is_cluster, translate_errors
from feature_store.redis_events import RedisEventLog
from feature_store.redis_versions import RedisVersionStore
from shared.config import Settings
from shared.errors import StoreError


class RedisCounters:
    """Per-minute served-request counters, summed over API workers and replicas (see online.window)."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def add(self, counts: Mapping[int, Mapping[str, int]]) -> None:
        """Add ``counts`` (minute -> name -> n) to the shared hashes, in one pipelined round trip."""
        with translate_errors("flushing counters"):
            pipe = self.client.pipeline(transaction=False)
            for minute, names in counts.items():
                key = self.keys.stats_minute(minute)
                for name, n in names.items():
                    pipe.hincrby(key, name, n)
                pipe.expire(key, STATS_TTL_S)
            pipe.execute()

    def read(self, minutes: Sequence[int]) -> dict[int, dict[str, int]]:
        """minute -> name -> n for each of ``minutes`` (empty for a minute nothing was counted in)."""
        with translate_errors("reading counters"):
            pipe = self.client.pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(self.keys.stats_minute(minute))
            raws = pipe.execute()
        try:
            return {m: {k.decode(): int(v) for k, v in raw.items()} for m, raw in zip(minutes, raws, strict=True)}
        except ValueError as exc:
            raise StoreError(f"the served counters hold a value that is not an integer ({exc})") from None


class RedisStore:
    """The three stores over one pooled client; thread-safe, one instance per process."""

    def __init__(
        self,
        client: Client,
        prefix: str = "hr",
        batch_size: int = 2_000,
        session_max_events: int = 50,
        session_ttl_s: int = 1_800,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 60.0,
        events: Mapping[str, Any] | None = None,
        staging_ttl_s: float = 3_600.0,
    ) -> None:
        """``events``: keyword arguments of :class:`RedisEventLog` beyond the session ones (dedup TTL,
        backlog cap and policy, seen-set cap)."""
        self.client = client
        self.keys = Keys(prefix, cluster=is_cluster(client))
        self.versions = RedisVersionStore(client, self.keys, batch_size, lock_ttl_s, lock_wait_s, staging_ttl_s)
        self.events = RedisEventLog(
            client, self.keys, session_max_events=session_max_events, session_ttl_s=session_ttl_s, **(events or {})
        )
        self.counters = RedisCounters(client, self.keys)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None, online: bool = False) -> RedisStore:
        """Client for ``url`` (default: settings.redis_url). ``online`` (the API) applies the tight request
        timeout and makes a cluster's client on first use (the API starts while the cluster is down, as
        with one server); batch use waits as long as a large pipeline needs and fails fast."""
        timeout = settings.store_timeout_ms / 1000 if online else None
        return cls(
            connect(url or settings.redis_url, timeout, deferred=online),
            prefix=settings.key_prefix,
            batch_size=settings.publish_batch_size,
            session_max_events=settings.session_max_events,
            session_ttl_s=settings.session_ttl_seconds,
            lock_ttl_s=settings.publish_lock_ttl_s,
            lock_wait_s=settings.publish_lock_wait_s,
            staging_ttl_s=settings.publish_staging_ttl_s,
            events={
                "session_seen_max_items": settings.session_seen_max_items,
                "event_id_ttl_s": settings.event_id_ttl_s,
                "backlog_max": settings.events_backlog_max,
                "backlog_policy": settings.events_backlog_policy,
            },
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["RedisStore", "translate_errors"]

"""The Redis client of hybridrec's stores and the one place redis-py's exceptions become ours.

One server (``redis://``, ``rediss://``, ``unix://``) gets redis-py's ``Redis``; a Redis Cluster
(``redis+cluster://host:port``, ``rediss+cluster://``: any node, the client discovers the rest) gets
``redis.cluster.RedisCluster`` (batch, reload, compaction) or ``redis.asyncio.cluster.RedisCluster`` (the
API's request path), which follow MOVED/ASK redirects and route each command to the node of its
keys' slot. :func:`is_cluster` tells the stores which key layout to use (``feature_store.keys``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder

from shared.config import cluster_url
from shared.errors import ConfigError, StoreError, StoreFull, StoreTimeout, StoreUnavailable


class DeferredCluster:
    """redis-py's blocking :class:`RedisCluster`, made on first use instead of now.

    That client reads the cluster's slot map in its constructor, so a cluster that is down when the API
    starts would stop the API, where one server (whose client connects on first use) lets it start,
    say so on ``/ready`` and serve degraded. The API's blocking stores (model reload, counters, operator
    routes) get this instead: every attribute is the real client's, made at the first call that needs
    it; until the cluster answers, each such call raises StoreUnavailable and the next one tries again.
    ``register_script`` needs no connection (a script's sha is computed locally), so the stores can be
    built while the cluster is down."""

    def __init__(self, make: Callable[[], RedisCluster]) -> None:
        self._make = make
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def resolve(self) -> RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    with translate_errors("connecting to the Redis Cluster"):
                        self._client = self._make()
        return self._client

    def register_script(self, script: str) -> Script:
        return Script(self, script)  # its calls go through __getattr__ (evalsha, script_load)

    def get_encoder(self) -> Encoder:
        """What Script encodes its source with (redis-py's defaults, which connect() does not change)."""
        if self._client is not None:
            return self._client.get_encoder()
        return Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)


# What the blocking stores take: one server, or a cluster (same commands; see feature_store.keys).
Client: TypeAlias = redis.Redis | RedisCluster | DeferredCluster
AsyncClient: TypeAlias = aioredis.Redis | AsyncRedisCluster


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Map redis-py exceptions to ours, so callers choose a fallback without knowing the client."""
    try:
        yield
    except rexc.TimeoutError as exc:
        raise StoreTimeout(f"{what}: Redis did not answer in time ({exc})") from exc
    except (rexc.ConnectionError, rexc.ClusterDownError, rexc.SlotNotCoveredError) as exc:
        raise StoreUnavailable(f"{what}: cannot reach Redis ({exc})") from exc
    except rexc.OutOfMemoryError as exc:
        raise StoreFull(f"{what}: Redis is full (maxmemory reached, noeviction) and refused the write") from exc
    except rexc.RedisClusterException as exc:  # not a RedisError: the cluster client's own complaints
        if "cannot be connected" in str(exc):
            raise StoreUnavailable(f"{what}: cannot reach the Redis Cluster ({exc})") from exc
        raise StoreError(f"{what}: {exc}") from exc
    except rexc.RedisError as exc:
        raise StoreError(f"{what}: {exc}") from exc


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (blocking or asyncio)."""
    return isinstance(client, RedisCluster | AsyncRedisCluster | DeferredCluster)


def _url(url: str | None) -> tuple[str, bool]:
    if not url:
        raise ConfigError("no Redis URL: set HYBRIDREC_REDIS_URL (or run `hybridrec demo`, which starts one)")
    try:
        node = cluster_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return (node, True) if node is not None else (url, False)


def connect(url: str | None, timeout_s: float | None, deferred: bool = False) -> Client:
    """A pooled client for ``url``. ``timeout_s`` bounds every call (the API's tight budget); None lets
    a batch pipeline wait as long as it needs.

    A cluster client asks its first node for the slot map as it is made, so an unreachable cluster is
    StoreUnavailable here already (a single server's client connects on first use), unless ``deferred``:
    then it is a :class:`DeferredCluster`, made at its first call (the API's choice: start anyway)."""
    url, cluster = _url(url)
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s or 5.0,
        "health_check_interval": 30,
    }
    if not cluster:
        return redis.Redis.from_url(url, **options)
    if deferred:
        return DeferredCluster(lambda: RedisCluster.from_url(url, **options))
    with translate_errors("connecting to the Redis Cluster"):
        return RedisCluster.from_url(url, **options)


def connect_async(url: str | None, timeout_s: float) -> AsyncClient:
    """The asyncio twin of :func:`connect` for the API's request path: every call bounded by ``timeout_s``.
    A cluster client reads the slot map on its first command."""
    url, cluster = _url(url)
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 30,
    }
    if cluster:
        return AsyncRedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


def node_clients(client: Client) -> list[tuple[str, redis.Redis]]:
    """(name, client of that node alone) for each primary: what a per-node command (SCAN, INFO) runs on.
    One server is one node, named ""."""
    if isinstance(client, DeferredCluster):
        client = client.resolve()
    if isinstance(client, RedisCluster):
        return [(node.name, client.get_redis_connection(node)) for node in client.get_primaries()]
    return [("", client)]

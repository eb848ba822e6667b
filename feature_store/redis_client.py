"""The Redis client of hybridrec's stores and the one place redis-py's exceptions become ours.

One server (``redis://``, ``rediss://``, ``unix://``) gets redis-py's ``Redis``; a Redis Cluster
(``redis+cluster://host:port``, ``rediss+cluster://``: any node, the client discovers the rest) gets
``redis.cluster.RedisCluster`` (batch, reload, compaction) or ``redis.asyncio.cluster.RedisCluster`` (the
API's request path), which follow MOVED/ASK redirects and route each command to the node of its
keys' slot. :func:`is_cluster` tells the stores which key layout to use (``feature_store.keys``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from shared.config import cluster_url
from shared.errors import ConfigError, StoreError, StoreFull, StoreTimeout, StoreUnavailable

# What the blocking stores take: one server, or a cluster (same commands; see feature_store.keys).
Client: TypeAlias = redis.Redis | RedisCluster
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
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def _url(url: str | None) -> tuple[str, bool]:
    if not url:
        raise ConfigError("no Redis URL: set HYBRIDREC_REDIS_URL (or run `hybridrec demo`, which starts one)")
    try:
        node = cluster_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return (node, True) if node is not None else (url, False)


def connect(url: str | None, timeout_s: float | None) -> Client:
    """A pooled client for ``url``. ``timeout_s`` bounds every call (the API's tight budget); None lets
    a batch pipeline wait as long as it needs.

    A cluster client asks its first node for the slot map as it is made, so an unreachable cluster is
    StoreUnavailable here already (a single server's client connects on first use)."""
    url, cluster = _url(url)
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s or 5.0,
        "health_check_interval": 30,
    }
    if not cluster:
        return redis.Redis.from_url(url, **options)
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
    if isinstance(client, RedisCluster):
        return [(node.name, client.get_redis_connection(node)) for node in client.get_primaries()]
    return [("", client)]

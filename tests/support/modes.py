"""Running a test against one redis-server and against a 3-master Redis Cluster.

``@both_modes`` (or ``pytestmark = both_modes``) runs a test twice, ``[single]`` and ``[cluster]``: the
``redis_mode`` fixture (tests/conftest.py) picks the server behind ``redis_url``, ``settings`` and
``store``. The helpers look at every node, as ``KEYS``/``DBSIZE`` on a cluster client see one node only.
"""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from feature_store.redis_client import node_clients
from feature_store.redis_store import RedisStore

MODES = ("single", "cluster")
both_modes = pytest.mark.parametrize("redis_mode", MODES, indirect=True)


def all_keys(store: RedisStore, pattern: str = "*") -> set[str]:
    """Every key matching ``pattern``, on every node."""
    return {k.decode() for _, node in node_clients(store.client) for k in node.scan_iter(match=pattern, count=10_000)}


def version_keys(store: RedisStore, version: str) -> set[str]:
    """Every key of ``version`` (its version-wide keys and its user records), on every node."""
    return {k for pattern in store.keys.version_patterns(version) for k in all_keys(store, pattern)}


def dbsize(store: RedisStore) -> int:
    """Keys on all nodes together."""
    return sum(int(node.dbsize()) for _, node in node_clients(store.client))


def node_of(store: RedisStore, key: str) -> redis.Redis:
    """A client of the node that holds ``key`` alone (on one server, its client): for node commands such
    as CLIENT PAUSE, which a cluster client would send to some other node."""
    client = store.client
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client

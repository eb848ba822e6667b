"""The Redis client of hybridrec's stores and the one place redis-py's exceptions become ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
import redis.asyncio as aioredis
from redis import exceptions as rexc

from shared.errors import ConfigError, StoreError, StoreFull, StoreTimeout, StoreUnavailable


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Map redis-py exceptions to ours, so callers choose a fallback without knowing the client."""
    try:
        yield
    except rexc.TimeoutError as exc:
        raise StoreTimeout(f"{what}: Redis did not answer in time ({exc})") from exc
    except rexc.ConnectionError as exc:
        raise StoreUnavailable(f"{what}: cannot reach Redis ({exc})") from exc
    except rexc.OutOfMemoryError as exc:
        raise StoreFull(f"{what}: Redis is full (maxmemory reached, noeviction) and refused the write") from exc
    except rexc.RedisError as exc:
        raise StoreError(f"{what}: {exc}") from exc


def connect(url: str | None, timeout_s: float | None) -> redis.Redis:
    """A pooled client for ``url``. ``timeout_s`` bounds every call (the API's tight budget); None lets
    a batch pipeline wait as long as it needs."""
    if not url:
        raise ConfigError("no Redis URL: set HYBRIDREC_REDIS_URL (or run `hybridrec demo`, which starts one)")
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s or 5.0, health_check_interval=30
    )


def connect_async(url: str | None, timeout_s: float) -> aioredis.Redis:
    """The asyncio twin of :func:`connect` for the API's request path: every call bounded by ``timeout_s``."""
    if not url:
        raise ConfigError("no Redis URL: set HYBRIDREC_REDIS_URL (or run `hybridrec demo`, which starts one)")
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
    )

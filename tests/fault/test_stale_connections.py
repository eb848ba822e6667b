"""The API's asyncio store after a Redis restart: the connections its pool kept are dead, and the first
command on each fails at once. A read must not be served degraded for that once Redis is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from feature_store.base import SessionEvent
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_online import RedisOnline
from shared.config import Settings
from shared.errors import StoreUnavailable

pytestmark = pytest.mark.fault


@asynccontextmanager
async def online_store(server: EmbeddedRedis) -> AsyncIterator[RedisOnline]:
    online = RedisOnline.from_settings(Settings(redis_url=server.url, store_timeout_ms=2000))
    try:
        yield online
    finally:
        await online.aclose()


def test_reads_after_a_restart_reconnect_instead_of_failing_on_each_stale_connection(server: EmbeddedRedis) -> None:
    async def scenario() -> list[object]:
        async with online_store(server) as online:
            # four concurrent reads leave four connections in the pool
            await asyncio.gather(*(online.read_request("v1", f"u{n}", f"s{n}") for n in range(4)))
            assert len(online.client.connection_pool._available_connections) == 4
            server.stop()
            server.start()  # same port: every pooled connection is now closed by the server
            outcomes: list[object] = []
            for n in range(4):  # one after another: each would take a stale connection from the pool
                try:
                    outcomes.append(await online.read_request("v1", f"u{n}", None))
                except StoreUnavailable as exc:
                    outcomes.append(exc)
            return outcomes

    outcomes = asyncio.run(scenario())
    assert [getattr(o, "user", o) for o in outcomes] == [None] * 4


def test_the_readiness_read_after_a_restart_reconnects_too(server: EmbeddedRedis) -> None:
    async def scenario() -> list[object]:
        async with online_store(server) as online:
            await asyncio.gather(*(online.current_version() for _ in range(4)))
            server.stop()
            server.start()
            return list(await asyncio.gather(*(online.current_version() for _ in range(4)), return_exceptions=True))

    assert asyncio.run(scenario()) == [None] * 4  # no version published: None, not StoreUnavailable


def test_reads_while_redis_is_down_still_fail_fast(server: EmbeddedRedis) -> None:
    async def scenario() -> None:
        async with online_store(server) as online:
            await online.read_request("v1", "u1", None)
            server.stop()
            with pytest.raises(StoreUnavailable, match="reading request features: cannot reach Redis"):
                await online.read_request("v1", "u1", None)

    asyncio.run(scenario())


def test_an_append_on_a_stale_connection_fails_alone_and_drops_the_other_stale_ones(server: EmbeddedRedis) -> None:
    """An append is not repeated (a lost reply leaves its outcome unknown: the client retries with the
    same ids), but it is the only one to fail: the pool's other idle connections are dropped with it."""

    def events(n: int) -> list[SessionEvent]:
        return [SessionEvent(f"i{n}", "view", 1.7e9, f"e{n}", user_id=f"u{n}", session_id=f"s{n}")]

    async def scenario() -> tuple[list[object], list[object]]:
        async with online_store(server) as online:
            await asyncio.gather(*(online.read_request("v1", f"u{n}", f"s{n}") for n in range(4)))
            server.stop()
            server.start()
            first = await asyncio.gather(online.append(events(0)), return_exceptions=True)
            rest = await asyncio.gather(*(online.append(events(n)) for n in range(1, 5)), return_exceptions=True)
            return first, rest

    first, rest = asyncio.run(scenario())
    assert isinstance(first[0], StoreUnavailable), first
    assert [type(r).__name__ for r in rest] == ["AppendResult"] * 4, rest

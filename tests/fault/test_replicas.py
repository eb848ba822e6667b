"""HYBRIDREC_EVENTS_MIN_REPLICAS against a real redis-server primary and a real replica of it: a 202 means
the replica has the events; a replica that cannot confirm in time (SIGSTOP) turns the answer into a 503
`replication_timeout`, and the client's retry with the same ids is acknowledged once it has them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from feature_store.base import SessionEvent
from feature_store.embedded import EmbeddedRedis
from feature_store.keys import Keys
from feature_store.redis_online import RedisOnline
from shared.config import Settings
from shared.errors import ConfigError, ReplicationTimeout
from tests.support import auth
from tests.support.server import serve

pytestmark = pytest.mark.fault


@pytest.fixture()
def primary() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture()
def replica(primary: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(config={"replicaof": f"127.0.0.1 {primary.port}"}) as server:
        client = redis.Redis.from_url(primary.url)
        deadline = time.monotonic() + 20
        while client.info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica did not come online"
            time.sleep(0.05)
        client.close()
        yield server


@contextmanager
def paused(server: EmbeddedRedis) -> Iterator[None]:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def _stream_ids(server: EmbeddedRedis) -> list[str]:
    client = redis.Redis.from_url(server.url)
    try:
        entries = client.xrange(Keys("hr").events_stream) if client.exists(Keys("hr").events_stream) else []
        return [fields[b"event_id"].decode() for _, fields in entries]
    finally:
        client.close()


def _settings(primary: EmbeddedRedis, tmp_path, **overrides: object) -> Settings:
    base = {"redis_url": primary.url, "data_dir": tmp_path, "store_timeout_ms": 1000, "events_min_replicas": 1}
    return Settings(**{**base, "events_replicas_timeout_ms": 200, **overrides})  # type: ignore[arg-type]


def test_a_202_means_the_replica_has_the_events_and_a_paused_replica_gets_a_503_then_a_retry_lands(
    primary: EmbeddedRedis, replica: EmbeddedRedis, tmp_path
) -> None:
    settings = _settings(primary, tmp_path, **auth.auth_overrides())
    with serve(settings) as base, auth.client(base) as api:
        session = auth.new_session(api, "u1")
        batch = [{"session_id": session, "user_id": "u1", "item_id": f"i{n}", "event_id": f"a{n}"} for n in range(3)]
        assert api.post("/events", json=batch).status_code == 202
        assert _stream_ids(replica) == ["a0", "a1", "a2"]  # read at once: WAIT returned after the replica had them
        flush = redis.Redis.from_url(primary.url)
        flush.script_flush()  # as after a restart: the pipeline's EVALSHA fails unrun, the script is loaded, rerun
        flush.close()
        again = [{"session_id": session, "user_id": "u1", "item_id": "i9", "event_id": "a3"}]
        assert api.post("/events", json=again).status_code == 202
        assert _stream_ids(replica) == ["a0", "a1", "a2", "a3"]

        late = [{"session_id": session, "user_id": "u1", "item_id": f"j{n}", "event_id": f"b{n}"} for n in range(3)]
        with paused(replica):
            r = api.post("/events", json=late)
            assert r.status_code == 503 and r.json()["error"] == "replication_timeout", r.text
            assert "retry with the same event_id" in r.json()["message"]
            assert _stream_ids(primary)[-3:] == ["b0", "b1", "b2"]  # on the primary already
            r = api.post("/events", json=late)  # the retry cannot be acknowledged while the replica lags
            assert r.status_code == 503 and r.json()["error"] == "replication_timeout"
        r = api.post("/events", json=late)
        assert r.status_code == 202 and sorted(r.json()["duplicates"]) == ["b0", "b1", "b2"], r.text
        assert _stream_ids(replica) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]  # once each


def test_a_retry_of_duplicates_alone_on_a_fresh_connection_waits_for_the_replica_too(
    primary: EmbeddedRedis, replica: EmbeddedRedis, tmp_path
) -> None:
    """A retry whose events are all duplicates stores nothing, so only the replicas can say the earlier
    append reached them: it is not confirmed while the replica lags, on a connection of its own. (WAIT
    counts the replicas that have its connection's last write. The Redis 7.0 here starts a connection
    that never wrote at the server's current offset, and the test passes without the fence too; the
    fence the append writes keeps that true whatever a server does for such a connection.)"""
    settings = _settings(primary, tmp_path)
    events = [SessionEvent(f"i{n}", "view", 1.7e9, f"e{n}", user_id="u1", session_id="s1") for n in range(2)]

    async def scenario() -> tuple[object, object]:
        first, second = RedisOnline.from_settings(settings), RedisOnline.from_settings(settings)
        try:
            with paused(replica):
                outcomes = []
                for store in (first, second):  # two pools: the retry runs on a connection that never wrote
                    try:
                        outcomes.append(await store.append(events))
                    except ReplicationTimeout as exc:
                        outcomes.append(exc)
            return outcomes[0], outcomes[1]
        finally:
            await first.aclose()
            await second.aclose()

    first, retry = asyncio.run(scenario())
    assert isinstance(first, ReplicationTimeout) and isinstance(retry, ReplicationTimeout), (first, retry)


def test_the_setting_is_refused_on_a_cluster_and_needs_a_wait_shorter_than_the_store_timeout(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not supported on a Redis Cluster"):
        RedisOnline.from_settings(Settings(redis_url="redis+cluster://127.0.0.1:7000", events_min_replicas=1))
    with pytest.raises(ValueError, match=r"events_replicas_timeout_ms .* must be less than store_timeout_ms"):
        Settings(events_min_replicas=1, events_replicas_timeout_ms=50, store_timeout_ms=50)

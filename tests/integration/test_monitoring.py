"""Per-minute counters: summed over workers through the store, never lost when a flush fails."""

from __future__ import annotations

import pytest

from feature_store.embedded import free_port
from feature_store.redis_store import RedisStore
from online.window import WindowCounters
from shared.config import Settings

pytestmark = pytest.mark.integration
MINUTE = 29_000_000  # a minute in unix minutes (2025)


def clock_at(minute: int, second: float = 0.0):
    return lambda: minute * 60 + second


def test_two_workers_flush_into_one_total_per_minute(store: RedisStore) -> None:
    a = WindowCounters(store.counters, 60, clock_at(MINUTE))
    b = WindowCounters(store.counters, 60, clock_at(MINUTE, 59.9))
    a.add(["tier:hybrid"])
    a.add(["tier:popular", "flag:unknown_user"])
    b.add(["tier:hybrid", "flag:store_timeout"])
    a.clock = clock_at(MINUTE + 1)
    a.add(["tier:session"])  # the next minute: its own hash
    a.flush()
    b.flush()
    assert store.counters.read([MINUTE, MINUTE + 1, MINUTE + 2]) == {
        MINUTE: {"tier:hybrid": 2, "tier:popular": 1, "flag:unknown_user": 1, "flag:store_timeout": 1},
        MINUTE + 1: {"tier:session": 1},
        MINUTE + 2: {},
    }
    b.add(["events:accepted"], 3)  # not flushed yet: still counted by the worker that holds it
    assert b.read([MINUTE])[MINUTE]["events:accepted"] == 3
    assert "events:accepted" not in a.read([MINUTE])[MINUTE]
    ttl = store.client.ttl(store.keys.stats_minute(MINUTE))
    assert 0 < ttl <= 3 * 3600


def test_a_failed_flush_keeps_the_counts(settings: Settings, store: RedisStore) -> None:
    down = RedisStore.from_settings(settings, url=f"redis://127.0.0.1:{free_port()}/0", online=True)
    counters = WindowCounters(down.counters, 60, clock_at(MINUTE))
    counters.add(["tier:precomputed"])
    counters.flush()  # the store is unreachable: nothing is dropped
    counters.store = store.counters
    counters.flush()
    assert store.counters.read([MINUTE]) == {MINUTE: {"tier:precomputed": 1}}

"""Served counters: summed over workers through the store, never lost when a flush fails."""

from __future__ import annotations

import pytest

from feature_store.embedded import free_port
from feature_store.redis_store import RedisStore
from online.monitoring import ServedCounters, prometheus_text
from shared.config import Settings

pytestmark = pytest.mark.integration


def test_two_workers_flush_into_one_total(store: RedisStore) -> None:
    a, b = ServedCounters(store.counters, 60), ServedCounters(store.counters, 60)
    a.record("hybrid", [])
    a.record("popular", ["unknown_user"])
    b.record("hybrid", ["store_timeout"])
    a.flush()
    b.flush()
    assert store.counters.read() == {
        "strategy:hybrid": 2,
        "strategy:popular": 1,
        "flag:unknown_user": 1,
        "flag:store_timeout": 1,
    }
    b.record("session", [])  # not flushed yet: still counted by the worker that holds it
    assert b.totals()["strategy:session"] == 1 and "strategy:session" not in a.totals()


def test_a_failed_flush_keeps_the_counts(settings: Settings, store: RedisStore) -> None:
    down = RedisStore.from_settings(settings, url=f"redis://127.0.0.1:{free_port()}/0", online=True)
    counters = ServedCounters(down.counters, 60)
    counters.record("precomputed", [])
    counters.flush()  # the store is unreachable: nothing is dropped
    counters.store = store.counters
    counters.flush()
    assert store.counters.read() == {"strategy:precomputed": 1}


def test_prometheus_text_format() -> None:
    text = prometheus_text({"strategy:hybrid": 3, "flag:short": 1}, "2026-01-01.abcdef0123")
    assert 'hybridrec_requests_total{strategy="hybrid"} 3\n' in text
    assert 'hybridrec_request_flags_total{flag="short"} 1\n' in text
    assert "# TYPE hybridrec_requests_total counter" in text and text.endswith("\n")

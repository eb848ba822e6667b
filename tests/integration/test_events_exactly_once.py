"""Live events against a real redis-server and a real 3-node Redis Cluster (and the API under uvicorn): a
client's own event_id is the idempotency key, the backlog is bounded, and a refused batch stores nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from batch.compaction import compact_events
from feature_store.base import SessionEvent
from feature_store.keys import COMPACTION_GROUP
from feature_store.redis_events import RedisEventLog
from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.errors import EventsBacklogFull
from tests.support import auth, tiny
from tests.support.modes import both_modes, dbsize
from tests.support.server import serve

pytestmark = [pytest.mark.integration, both_modes]


def _ev(i: int, session: str | None = "s1", event_id: str | None = None) -> SessionEvent:
    return SessionEvent(f"i{i}", "view", 1_772_323_200.0 + i, event_id or f"e{i}", "u1", session)


def _stream_ids(store: RedisStore) -> list[str]:
    return [f[b"event_id"].decode() for _, f in store.client.xrange(store.keys.events_stream)]


@pytest.fixture()
def api(settings: Settings, store: RedisStore) -> Iterator[httpx.Client]:
    store.versions.write_version(tiny.version_data())
    store.versions.activate("2026-01-01.00000000aa")
    with serve(settings) as base, auth.client(base) as client:
        yield client


@pytest.fixture()
def s1(api: httpx.Client) -> str:
    return auth.new_session(api, "u0")


def test_a_retried_batch_stores_each_client_event_once(api: httpx.Client, store: RedisStore, s1: str) -> None:
    batch = [{"session_id": s1, "item_id": f"a{i % 3}", "event_id": f"client-{i}", "user_id": "u0"} for i in range(5)]
    first = api.post("/events", json=batch)
    assert first.status_code == 202 and first.json() == {
        "accepted": 5,
        "event_ids": [f"client-{i}" for i in range(5)],
        "duplicates": [],
    }
    again = api.post("/events", json=batch)  # the client's retry after a timeout, say
    assert again.status_code == 202
    assert again.json() == {
        "accepted": 0,
        "event_ids": first.json()["event_ids"],
        "duplicates": first.json()["event_ids"],
    }
    mixed = api.post("/events", json=[batch[0], {**batch[1], "event_id": "client-new"}, batch[0]])
    assert mixed.json()["accepted"] == 1 and mixed.json()["duplicates"] == ["client-0", "client-0"]
    assert _stream_ids(store) == [*(f"client-{i}" for i in range(5)), "client-new"]
    assert [e.event_id for e in store.events.read_session(s1, "u0")] == _stream_ids(store)


def test_a_reused_event_id_is_reported_not_dropped_silently(api: httpx.Client, store: RedisStore) -> None:
    """Compaction keeps one row per event_id; an id reused for another event used to get 202 and then
    vanish at load. Now the API says at once that it holds that id already."""
    first, second = auth.new_session(api), auth.new_session(api)
    api.post("/events", json={"session_id": first, "item_id": "a0", "event_id": "order-17"})
    r = api.post(
        "/events", json={"session_id": second, "item_id": "b1", "event_id": "order-17", "event_type": "purchase"}
    )
    assert r.status_code == 202 and r.json()["accepted"] == 0 and r.json()["duplicates"] == ["order-17"]
    assert store.events.read_session(second) == [] and _stream_ids(store) == ["order-17"]


def test_events_without_an_id_get_new_ones_in_the_answer(api: httpx.Client, store: RedisStore) -> None:
    visit = auth.new_session(api)
    bodies = [api.post("/events", json={"session_id": visit, "item_id": "a0"}).json() for _ in range(2)]
    ids = [b["event_ids"][0] for b in bodies]
    assert all(b["accepted"] == 1 and b["duplicates"] == [] for b in bodies)
    assert len(set(ids)) == 2 and _stream_ids(store) == ids
    # server-made ids take no de-duplication key
    assert not list(store.client.scan_iter(match=store.keys.event_id("*")))


def test_a_full_backlog_refuses_the_whole_batch_until_compaction_drains_it(settings: Settings) -> None:
    store = RedisStore.from_settings(settings)
    log = RedisEventLog(store.client, store.keys, backlog_max=10)
    log.append([_ev(i) for i in range(8)])
    before = dbsize(store)
    with pytest.raises(EventsBacklogFull, match=r"backlog is full \(8 events wait for compaction; the cap is 10\)"):
        log.append([_ev(i) for i in range(8, 11)])
    assert dbsize(store) == before and log.stream_length() == 8  # nothing of the batch, anywhere
    assert not store.client.exists(store.keys.event_id("e8"))
    assert compact_events(log, settings).events_read == 8
    assert log.append([_ev(i) for i in range(8, 11)]).duplicates == []  # room again
    assert log.stream_length() == 3
    store.close()


def test_the_trim_policy_keeps_accepting_and_counts_what_it_dropped(store: RedisStore) -> None:
    log = RedisEventLog(store.client, store.keys, backlog_max=100, backlog_policy="trim")
    trimmed = sum(log.append([_ev(i, event_id=f"t{i}") for i in range(n, n + 50)]).trimmed for n in range(0, 500, 50))
    length = log.stream_length()
    assert trimmed > 0 and length + trimmed == 500
    assert 100 <= length < 300  # "~": Redis trims whole nodes, never below the cap


def test_the_stream_is_created_with_the_compaction_group(store: RedisStore) -> None:
    """So compaction never needs XGROUP CREATE, which a Redis at maxmemory refuses."""
    store.events.append([_ev(0)])
    assert [g["name"] for g in store.client.xinfo_groups(store.keys.events_stream)] == [COMPACTION_GROUP.encode()]
    assert store.events.ensure_consumer_group(COMPACTION_GROUP)


def test_compaction_without_a_stream_creates_nothing(settings: Settings, store: RedisStore) -> None:
    assert compact_events(store.events, settings).events_read == 0
    assert dbsize(store) == 0


def test_a_session_remembers_at_most_its_cap_of_distinct_items(store: RedisStore) -> None:
    log = RedisEventLog(store.client, store.keys, session_max_events=5, session_seen_max_items=20)
    log.append([_ev(i) for i in range(100)])
    assert store.client.scard(store.keys.session_seen("s1", "u1")) == 20
    assert store.client.llen(store.keys.session("s1", "u1")) == 5


def test_a_session_named_like_a_seen_set_is_its_own_session(store: RedisStore) -> None:
    """``s1:seen`` used to be both the list of session "s1:seen" and the seen set of session "s1"."""
    store.events.append([_ev(0, "s1"), _ev(1, "s1:seen")])
    assert [e.item_id for e in store.events.read_session("s1:seen", "u1")] == ["i1"]
    assert store.versions.read_request("v", None, "s1").session_seen == frozenset({"i0"})

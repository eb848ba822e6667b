"""The caches over real HTTP and a real Redis: an exact hit is the same answer, an event or a new version
is a miss; the semantic cache serves a visitor the ranking of another session that ended alike, minus
what this one saw; both switch off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from feature_store.redis_store import RedisStore
from shared.config import Settings
from tests.support import auth, tiny
from tests.support.auth import new_session
from tests.support.server import serve

pytestmark = pytest.mark.integration
V1, V2 = "2026-01-01.00000000c1", "2026-01-02.00000000c2"


@contextmanager
def _api(settings: Settings, store: RedisStore, **overrides: object) -> Iterator[httpx.Client]:
    store.versions.write_version(tiny.version_data(V1))
    store.versions.activate(V1)
    with serve(settings.model_copy(update={"reload_interval_s": 0.05, **overrides})) as base, auth.client(base) as api:
        yield api


def _items(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_a_repeated_request_is_answered_from_the_cache_until_the_session_changes(
    settings: Settings, store: RedisStore
) -> None:
    with _api(settings, store) as api:
        first = api.get("/recommendations/u0", params={"k": 3}).json()
        again = api.get("/recommendations/u0", params={"k": 3}).json()
        assert "cached" not in first["flags"] and again["flags"] == [*first["flags"], "cached"]
        assert again["items"] == first["items"] and again["strategy"] == "precomputed"
        assert "cached" not in api.get("/recommendations/u0", params={"k": 2}).json()["flags"]  # another k
        session = new_session(api, "u0")
        empty = api.get("/recommendations/u0", params={"k": 3, "session_id": session}).json()
        assert "cached" in empty["flags"] and empty["items"] == first["items"]  # an empty session is no session
        event = {"session_id": session, "user_id": "u0", "item_id": "b0", "event_type": "purchase"}
        assert api.post("/events", json=event).status_code == 202
        after = api.get("/recommendations/u0", params={"k": 3, "session_id": session}).json()
        assert "cached" not in after["flags"] and after["strategy"] == "hybrid" and "b0" not in _items(after)


def test_a_new_version_is_a_miss(settings: Settings, store: RedisStore) -> None:
    with _api(settings, store) as api:
        api.get("/recommendations/u0", params={"k": 3})
        store.versions.write_version(tiny.version_data(V2))
        store.versions.activate(V2)
        for _ in range(200):
            body = api.get("/recommendations/u0", params={"k": 3}).json()
            if body["model_version"] == V2:
                break
        assert body["model_version"] == V2 and "cached" not in body["flags"]


def test_the_semantic_cache_serves_a_visitor_like_an_earlier_one_minus_what_it_saw(
    settings: Settings, store: RedisStore
) -> None:
    with _api(settings, store, semantic_cache=True, semantic_cache_items=1) as api:
        visits = []
        for items in (["b1", "a0"], ["a1", "a0"]):  # both end on a0
            session = new_session(api)
            events = [{"session_id": session, "item_id": i, "event_type": "view"} for i in items]
            assert api.post("/events", json=events).status_code == 202
            visits.append(api.get("/recommendations/anyone", params={"k": 2, "session_id": session}).json())
        first, second = visits
        assert "semantic_cache" not in first["flags"] and "unknown_user" in first["flags"]
        assert second["flags"] == ["unknown_user", "semantic_cache"]
        assert not {"a1", "a0"} & set(_items(second)) and len(_items(second)) == 2


def test_caches_switched_off_answer_every_request_afresh(settings: Settings, store: RedisStore) -> None:
    with _api(settings, store, response_cache=False, semantic_cache=False) as api:
        bodies = [api.get("/recommendations/u0", params={"k": 3}).json() for _ in range(3)]
        assert all("cached" not in b["flags"] for b in bodies) and len({str(b["items"]) for b in bodies}) == 1

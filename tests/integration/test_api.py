"""The HTTP API over real HTTP (uvicorn) against a real redis-server (and the request path against a real
3-node Redis Cluster too)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from feature_store.embedded import EmbeddedRedis, free_port
from feature_store.redis_store import RedisStore
from shared.config import Settings
from tests.support import auth, tiny
from tests.support.auth import new_session
from tests.support.modes import both_modes
from tests.support.server import serve

pytestmark = pytest.mark.integration
V1, V2 = "2026-01-01.00000000a1", "2026-01-02.00000000a2"


@pytest.fixture()
def api(settings: Settings, store: RedisStore) -> Iterator[httpx.Client]:
    store.versions.write_version(tiny.version_data(V1))
    store.versions.activate(V1)
    # a generous store timeout: these tests are about answers, and a busy machine must not degrade them
    patient = {"reload_interval_s": 0.05, "store_timeout_ms": 2_000}
    with serve(settings.model_copy(update=patient)) as base, auth.client(base) as client:
        yield client


@both_modes
def test_known_user_gets_precomputed_personal_results(api: httpx.Client) -> None:
    body = api.get("/recommendations/u0", params={"k": 3}).json()
    assert body["strategy"] == "precomputed"
    assert [i["item_id"] for i in body["items"]] == ["a0", "a1", "a2"]
    assert body["model_version"] == V1 and body["flags"] == [] and body["took_ms"] >= 0


@both_modes
def test_a_posted_event_changes_the_very_next_response(api: httpx.Client) -> None:
    s1 = new_session(api, "u0")
    before = api.get("/recommendations/u0", params={"k": 3, "session_id": s1}).json()
    r = api.post("/events", json=[{"session_id": s1, "item_id": "b0", "event_type": "purchase", "user_id": "u0"}])
    assert r.status_code == 202 and r.json()["accepted"] == 1
    after = api.get("/recommendations/u0", params={"k": 3, "session_id": s1}).json()
    assert after["strategy"] == "hybrid"
    assert after != before
    assert "b0" not in [i["item_id"] for i in after["items"]]
    assert any(i["reason"] == "similar_to:b0" for i in after["items"])


@both_modes
def test_a_server_that_lost_its_scripts_still_serves_the_session(api: httpx.Client, store: RedisStore) -> None:
    # The read script runs as a plain EVALSHA; a server without it (restarted, SCRIPT FLUSH) gets it loaded
    session = new_session(api, "u0")
    assert api.post("/events", json={"session_id": session, "item_id": "b0", "user_id": "u0"}).status_code == 202
    store.client.script_flush()
    body = api.get("/recommendations/u0", params={"k": 3, "session_id": session}).json()
    assert body["strategy"] == "hybrid" and body["flags"] == []
    assert any(i["reason"] == "similar_to:b0" for i in body["items"])


@both_modes
def test_unknown_user_gets_popular_with_a_flag(api: httpx.Client) -> None:
    body = api.get("/recommendations/stranger", params={"k": 2}).json()
    assert body["strategy"] == "popular" and "unknown_user" in body["flags"]
    assert [i["item_id"] for i in body["items"]] == ["b0", "b1"]


@pytest.mark.parametrize("k", [0, 101, "ten"])
def test_k_out_of_bounds_is_a_field_level_422(api: httpx.Client, k: object) -> None:
    r = api.get("/recommendations/u0", params={"k": k})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error"
    assert body["fields"][0]["field"] == "query.k"


def test_bad_events_are_refused_with_the_field_named(api: httpx.Client) -> None:
    s1 = new_session(api)
    r = api.post("/events", json={"session_id": s1, "item_id": "a0", "event_type": "like"})
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["fields"]] == ["event_type"]
    good = {"session_id": s1, "item_id": "a0"}
    r = api.post("/events", json=[good, {"item_id": "a0"}, {**good, "weight": -1}, {**good, "weight": 1e7}])
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["fields"]] == ["[1].session_id", "[2].weight", "[3].weight"]
    assert api.post("/events", json=[]).status_code == 422
    assert api.post("/events", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    # nothing of a refused batch was accepted: the session is still empty
    body = api.get("/recommendations/u0", params={"session_id": s1}).json()
    assert body["strategy"] == "precomputed"


def test_similar_items_and_unknown_item(api: httpx.Client) -> None:
    body = api.get("/items/a0/similar", params={"k": 2}).json()
    assert [i["item_id"] for i in body["items"]] == ["a1", "a2"]
    r = api.get("/items/nope/similar")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_similar_items_by_co_visitation(api: httpx.Client) -> None:
    body = api.get("/items/a0/similar", params={"k": 5, "kind": "covisit"}).json()
    assert body["kind"] == "covisit" and body["model_version"] == V1
    assert [(i["item_id"], i["score"]) for i in body["items"]] == [("b0", 0.75), ("a2", 0.5)]
    assert {i["reason"] for i in body["items"]} == {"often_next_to:a0"}  # the reason rank() gives them
    als = api.get("/items/a0/similar", params={"k": 5}).json()
    assert als["kind"] == "als" and {i["reason"] for i in als["items"]} == {"similar_to:a0"}
    assert api.get("/items/b1/similar", params={"kind": "covisit"}).json()["items"] == []
    r = api.get("/items/nope/similar", params={"kind": "covisit"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.parametrize("kind", ["popular", "ALS", ""])
def test_an_unknown_kind_of_similarity_is_a_field_level_422(api: httpx.Client, kind: str) -> None:
    r = api.get("/items/a0/similar", params={"kind": kind})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error"
    assert [f["field"] for f in body["fields"]] == ["query.kind"]


def test_health_ready_and_docs(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready").json()
    assert ready["status"] == "ready" and ready["model_version"] == V1
    assert api.get("/docs").status_code == 200
    assert "/recommendations/{user_id}" in api.get("/openapi.json").json()["paths"]


@both_modes
def test_a_new_publish_is_picked_up_without_restart(api: httpx.Client, store: RedisStore) -> None:
    store.versions.write_version(tiny.version_data(V2))
    store.versions.activate(V2)
    deadline = time.monotonic() + 5
    while api.get("/recommendations/u0").json()["model_version"] != V2:
        assert time.monotonic() < deadline, "the API did not switch to the new version"
        time.sleep(0.05)


def test_store_outage_degrades_instead_of_failing(tmp_path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    try:
        settings = Settings(
            redis_url=server.url, data_dir=tmp_path, reload_interval_s=60, store_timeout_ms=200, **auth.auth_overrides()
        )
        store = RedisStore.from_settings(settings)
        store.versions.write_version(tiny.version_data(V1))
        store.versions.activate(V1)
        store.close()
        with serve(settings) as base, auth.client(base) as api:
            assert api.get("/ready").status_code == 200
            server.stop()
            r = api.get("/recommendations/u0", params={"k": 2})
            assert r.status_code == 200
            assert r.json()["flags"][0] == "store_unavailable"
            assert [i["item_id"] for i in r.json()["items"]] == ["b0", "b1"]
            ready = api.get("/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
            r = api.post("/events", json={"session_id": new_session(api), "item_id": "a0"})
            assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
            assert r.headers["retry-after"] == "1"
            assert str(server.port) not in r.text and "127.0.0.1" not in r.text  # the detail is in the log only
    finally:
        server.close()


@both_modes
def test_no_model_yet_is_a_503_not_a_500(settings: Settings) -> None:
    with serve(settings) as base, httpx.Client(base_url=base) as api:
        r = api.get("/recommendations/u0")
        assert r.status_code == 503 and r.json()["error"] == "version_not_found"
        assert api.get("/ready").status_code == 503


@both_modes
def test_metrics_count_requests_per_routing_tier(api: httpx.Client) -> None:
    api.get("/recommendations/u0")  # precomputed
    api.get("/recommendations/stranger")  # popular + unknown_user
    m1 = new_session(api, "u0")
    api.post("/events", json={"session_id": m1, "item_id": "b0", "user_id": "u0"})
    api.get("/recommendations/u0", params={"session_id": m1})  # hybrid
    api.get("/recommendations/u0", params={"session_id": m1})
    deadline = time.monotonic() + 5
    while True:
        text = api.get("/metrics").text
        if 'hybridrec_requests_total{strategy="hybrid"} 2' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'hybridrec_requests_total{strategy="hybrid"} 2' in text
    assert 'hybridrec_requests_total{strategy="precomputed"} 1' in text
    assert 'hybridrec_requests_total{strategy="popular"} 1' in text
    assert 'hybridrec_request_flags_total{flag="unknown_user"} 1' in text
    assert f'hybridrec_model_info{{version="{V1}"}} 1' in text


def test_the_api_starts_without_a_store_and_says_so(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    # the connection the app opens at start (RedisOnline.connect) is best effort; for a Redis Cluster
    # see test_cluster.test_the_api_starts_while_the_cluster_is_down_and_serves_once_it_is_up
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", data_dir=tmp_path, store_timeout_ms=200, **auth.auth_overrides()
    )
    with caplog.at_level("WARNING", logger="hybridrec.online"), serve(settings) as base, auth.client(base) as api:
        assert api.get("/health").status_code == 200
        ready = api.get("/ready")
        assert ready.status_code == 503
        assert api.get("/recommendations/u0").status_code == 503  # no model loaded yet: version_not_found
    assert any("not reachable at start" in r.getMessage() for r in caplog.records)

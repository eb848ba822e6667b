"""Self-healing reload and a truthful /ready, over real HTTP (uvicorn) against a real redis-server.

A published version that cannot be loaded (a value missing or corrupt) is retried, reported by /ready
and counted; a later good publish is picked up. /ready also fails when the store has no version at
all (Redis restarted empty) and when the model trails the published version for too long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from feature_store import codecs
from feature_store.redis_store import RedisStore
from online.model import ModelHolder
from shared.config import Settings
from tests.support import tiny
from tests.support.server import serve

pytestmark = pytest.mark.integration
V1, V2, V3 = "2026-01-01.00000000a1", "2026-01-02.00000000a2", "2026-01-03.00000000a3"


def _publish(store: RedisStore, version: str) -> None:
    store.versions.write_version(tiny.version_data(version))
    store.versions.activate(version)


def _until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


@pytest.fixture()
def api(settings: Settings, store: RedisStore) -> Iterator[httpx.Client]:
    _publish(store, V1)
    with serve(settings.model_copy(update={"reload_interval_s": 0.05})) as base, httpx.Client(base_url=base) as client:
        yield client


def _drop_meta_field(store: RedisStore, version: str) -> None:
    meta = store.versions.read_meta(version)
    del meta["n_items"]
    store.client.set(store.keys.meta(version), codecs.encode_json(meta))


CORRUPTIONS: dict[str, Callable[[RedisStore, str], object]] = {
    "catalogue deleted": lambda s, v: s.client.delete(s.keys.items(v)),
    "catalogue not JSON": lambda s, v: s.client.set(s.keys.items(v), b"{not json"),
    "popular list cut": lambda s, v: s.client.setrange(s.keys.popular(v), 0, b"\xff\xff\xff\xff\xff"),
    "meta without n_items": _drop_meta_field,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_version_that_cannot_be_loaded_is_retried_reported_and_a_later_publish_is_served(
    api: httpx.Client, store: RedisStore, corruption: str
) -> None:
    store.versions.write_version(tiny.version_data(V2))
    CORRUPTIONS[corruption](store, V2)
    store.client.set(store.keys.current, V2)  # what `activate` does, minus its completeness check
    _until(lambda: api.get("/ready").status_code == 503, "/ready to report the unloadable version")
    problems = api.get("/ready").json()["problems"]
    assert len(problems) == 1 and problems[0].startswith(f"cannot load the published version {V2}"), problems
    assert f"still serving {V1}" in problems[0]
    r = api.get("/recommendations/u0")
    assert r.status_code == 200 and r.json()["model_version"] == V1  # the loaded model keeps serving
    _until(lambda: "hybridrec_model_reload_failures_total 0" not in api.get("/metrics").text, "a counted failure")
    # the reload thread lives on: the next good publish is loaded
    _publish(store, V3)
    _until(lambda: api.get("/recommendations/u0").json()["model_version"] == V3, f"the API to serve {V3}")
    ready = api.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == ready.json()["published_version"] == V3


def test_ready_fails_when_the_store_has_lost_every_version(api: httpx.Client, store: RedisStore) -> None:
    assert api.get("/ready").status_code == 200
    store.client.flushall()  # what a Redis restarted without its data looks like to the API
    r = api.get("/ready")
    assert r.status_code == 503
    assert r.json()["problems"] == [
        "the store has no published version (none yet, or Redis lost its data): publish one"
    ]
    _publish(store, V1)
    assert api.get("/ready").status_code == 200


def test_ready_fails_when_the_model_trails_the_published_version_too_long(store: RedisStore) -> None:
    _publish(store, V1)
    holder = ModelHolder(store.versions, interval_s=0.05, max_lag_intervals=3)  # no thread: we refresh by hand
    assert holder.refresh() and holder.problems(V1) == []
    _publish(store, V2)
    assert holder.problems(V2) == []  # just published: the next reload will load it
    time.sleep(0.2)  # more than 3 intervals
    (problem,) = holder.problems(V2)
    assert problem.startswith(f"serving {V1} but {V2} is published: ") and "more than 3 reload intervals" in problem
    assert holder.refresh() and holder.problems(V2) == []

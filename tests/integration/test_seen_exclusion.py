"""Nothing a visitor already has comes back, through the real API on a real Redis and a real 3-node Redis
Cluster (issue 8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from feature_store.layout import Ragged
from feature_store.redis_store import RedisStore
from shared.config import Settings
from tests.support import auth, tiny
from tests.support.auth import new_session
from tests.support.modes import both_modes
from tests.support.server import serve

pytestmark = [pytest.mark.integration, both_modes]
V1 = "2026-01-01.00000000a1"


@pytest.fixture()
def api(settings: Settings, store: RedisStore) -> Iterator[httpx.Client]:
    data = tiny.version_data(V1, n_users=2)
    # u0 already has a1 (in their precomputed list too) and b1; u1 has nothing
    seen = Ragged(np.array([0, 2, 2]), np.array([1, 4], dtype=np.int32))
    store.versions.write_version(dataclasses.replace(data, user_arrays={**data.user_arrays, "seen": seen}))
    store.versions.activate(V1)
    update = {"reload_interval_s": 0.05, "session_max_events": 50}
    with serve(settings.model_copy(update=update)) as base, auth.client(base) as client:
        yield client


def _items(client: httpx.Client, user: str, session: str | None = None, k: int = 6) -> list[str]:
    params = {"k": k} | ({"session_id": session} if session else {})
    body = client.get(f"/recommendations/{user}", params=params).json()
    return [i["item_id"] for i in body["items"]]


def test_a_known_users_history_is_never_served(api: httpx.Client) -> None:
    assert not {"a1", "b1"} & set(_items(api, "u0"))
    assert "a1" in _items(api, "u1")  # the same list for a user without that history
    s0 = new_session(api, "u0")
    api.post("/events", json={"session_id": s0, "user_id": "u0", "item_id": "b0", "event_type": "view"})
    assert not {"a1", "b1", "b0"} & set(_items(api, "u0", s0))  # b1 is b0's neighbour and co-visitor


def test_a_session_of_80_events_never_gets_back_its_first_item(api: httpx.Client) -> None:
    long = new_session(api)  # an anonymous visitor's
    first = {"session_id": long, "item_id": "a0", "event_type": "view"}
    rest = [{"session_id": long, "item_id": "b0", "event_type": "view"} for _ in range(79)]
    assert api.post("/events", json=[first, *rest]).status_code == 202
    # a0 fell off the 50-event session list long ago; it co-visits b0, so only the seen set keeps it out
    for _ in range(3):
        assert "a0" not in _items(api, "anonymous", long)

"""RedisStore against a real redis-server and a real 3-node Redis Cluster: versioned publish, atomic
switch, rollback, prune, sessions."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store import codecs
from feature_store.base import SessionEvent
from feature_store.redis_store import RedisStore
from shared.errors import PublishError, StoreError, StoreUnavailable, VersionNotFound
from tests.support import tiny
from tests.support.modes import both_modes, version_keys

pytestmark = [pytest.mark.integration, both_modes]
V1, V2, V3 = "2026-01-01.00000000a1", "2026-01-02.00000000a2", "2026-01-03.00000000a3"


def _publish(store: RedisStore, version: str, n_users: int = 3) -> None:
    store.versions.write_version(tiny.version_data(version, n_users))
    store.versions.activate(version)


def test_publish_round_trip(store: RedisStore) -> None:
    _publish(store, V1, n_users=5)
    assert store.versions.current_version() == V1
    b = store.versions.read_item_bundle(V1)
    assert b.item_ids == tiny.ITEM_IDS
    np.testing.assert_array_equal(b.item_factors, tiny.ITEM_FACTORS)
    np.testing.assert_array_equal(b.neighbours, tiny.NEIGHBOURS)
    assert b.popular["A"].tolist() == [2, 1, 0]
    user = store.versions.read_request(V1, "u4", None).user
    assert user is not None and user.candidates.tolist() == [0, 1, 2, 5]
    assert store.versions.read_request(V1, "nobody", None).user is None
    assert store.versions.count_user_keys(V1) == 5


def test_covisit_lists_round_trip_with_their_padding(store: RedisStore) -> None:
    _publish(store, V1)
    b = store.versions.read_item_bundle(V1)
    assert b.covisit.dtype == np.int32 and b.covisit_scores.dtype == np.float32
    np.testing.assert_array_equal(b.covisit, tiny.COVISIT)
    np.testing.assert_array_equal(b.covisit_scores, tiny.COVISIT_SCORES)  # -inf padding included
    assert store.versions.read_meta(V1)["n_covisit"] == 2
    # documented encodings: int32 LE ids and float16 LE scores, (n_items, n_covisit) row-major
    assert store.client.get(store.keys.item_array(V1, "covisit")) == tiny.COVISIT.astype("<i4").tobytes()
    assert store.client.strlen(store.keys.item_array(V1, "covisit_scores")) == 6 * 2 * 2


def test_a_version_from_before_covisitation_loads_with_empty_lists(store: RedisStore) -> None:
    _publish(store, V1)
    meta = store.versions.read_meta(V1)
    del meta["n_covisit"]
    store.client.delete(store.keys.item_array(V1, "covisit"), store.keys.item_array(V1, "covisit_scores"))
    store.client.set(store.keys.meta(V1), codecs.encode_json(meta))
    b = store.versions.read_item_bundle(V1)
    assert b.covisit.shape == b.covisit_scores.shape == (6, 0)
    np.testing.assert_array_equal(b.neighbours, tiny.NEIGHBOURS)


def test_a_missing_covisit_key_of_a_version_that_has_one_is_an_error(store: RedisStore) -> None:
    _publish(store, V1)
    store.client.delete(store.keys.item_array(V1, "covisit"))
    with pytest.raises(StoreError, match="has no covisit array"):
        store.versions.read_item_bundle(V1)


def test_publish_in_many_small_batches_reports_progress(store: RedisStore) -> None:
    store.versions.batch_size = 2
    seen: list[int] = []
    store.versions.write_version(tiny.version_data(V1, n_users=7), progress=seen.append)
    assert seen == [2, 2, 2, 1]
    assert store.versions.count_user_keys(V1) == 7


def test_a_publish_killed_half_way_leaves_the_old_version_serving(store: RedisStore) -> None:
    _publish(store, V1)
    store.versions.batch_size = 1

    def die(_: int) -> None:
        raise KeyboardInterrupt  # what a kill in the middle of the user loop looks like

    with pytest.raises(KeyboardInterrupt):
        store.versions.write_version(tiny.version_data(V2, n_users=3), progress=die)
    assert store.versions.current_version() == V1
    with pytest.raises(PublishError, match="incomplete"):
        store.versions.activate(V2)
    states = {v.version: v.meta is not None for v in store.versions.list_versions()}
    assert states == {V1: True, V2: False}
    assert store.versions.prune(keep=2) == [V2]  # the half-written version is cleaned up
    assert version_keys(store, V2) == set()
    assert store.versions.read_request(V1, "u0", None).user is not None


def test_republishing_a_complete_version_is_a_no_op(store: RedisStore) -> None:
    _publish(store, V1)
    before = {k: store.client.get(k) for k in version_keys(store, V1)}
    _publish(store, V1)
    assert {k: store.client.get(k) for k in version_keys(store, V1)} == before
    assert store.versions.current_version() == V1


def test_switch_rollback_and_prune_keep_current_and_previous(store: RedisStore) -> None:
    _publish(store, V1)
    _publish(store, V2)
    assert store.client.get(store.keys.previous) == V1.encode()
    assert store.versions.rollback() == V1
    assert store.versions.current_version() == V1
    assert store.versions.rollback() == V2
    _publish(store, V3)
    assert store.versions.prune(keep=2) == [V1]
    assert [v.version for v in store.versions.list_versions()] == [V2, V3]
    with pytest.raises(VersionNotFound):
        store.versions.read_item_bundle(V1)


def test_rollback_without_a_previous_version_is_a_clear_error(store: RedisStore) -> None:
    _publish(store, V1)
    with pytest.raises(VersionNotFound, match="no previous version"):
        store.versions.rollback()


def test_session_events_are_capped_expire_and_reach_the_stream(settings) -> None:
    store = RedisStore.from_settings(settings.model_copy(update={"session_max_events": 3, "session_ttl_seconds": 60}))
    events = [
        SessionEvent(item_id=f"i{n}", event_type="view", ts=100.0 + n, event_id=f"e{n}", session_id="s1", user_id="u1")
        for n in range(5)
    ]
    store.events.append(events)
    session = store.events.read_session("s1")
    assert [e.item_id for e in session] == ["i2", "i3", "i4"]  # oldest first, capped at 3
    assert 0 < store.client.ttl(store.keys.session("s1", "u1")) <= 60
    assert store.events.stream_length() == 5  # the durable log keeps every accepted event
    feats = store.versions.read_request("any-version", None, "s1")
    assert feats.user is None and [e.event_id for e in feats.session] == ["e2", "e3", "e4"]
    store.close()


def test_an_unreachable_store_raises_our_error(settings) -> None:
    from feature_store.embedded import free_port

    store = RedisStore.from_settings(settings, url=f"redis://127.0.0.1:{free_port()}/0", online=True)
    with pytest.raises(StoreUnavailable):
        store.versions.current_version()
    with pytest.raises(StoreUnavailable):
        store.versions.read_request(V1, "u1", "s1")


def test_corrupt_counters_are_a_store_error_not_a_crash(store: RedisStore) -> None:
    store.counters.add({7: {"tier:popular": 2}})
    assert store.counters.read([7, 8]) == {7: {"tier:popular": 2}, 8: {}}
    store.client.hset(store.keys.stats_minute(7), "tier:hybrid", "many")
    with pytest.raises(StoreError, match="not an integer"):
        store.counters.read([7])


def test_sample_users_and_the_gate_decision(store: RedisStore) -> None:
    store.versions.write_version(tiny.version_data(V1, n_users=5))
    three = store.versions.sample_users(V1, 3)
    assert len(three) == 3 and three == sorted(three) and set(three) <= {f"u{i}" for i in range(5)}
    assert store.versions.sample_users(V1, 50) == ["u0", "u1", "u2", "u3", "u4"]
    assert store.versions.last_gate() is None
    store.versions.record_gate({"outcome": "refused", "partition": "2026-01-02"})
    assert store.versions.last_gate() == {"outcome": "refused", "partition": "2026-01-02"}

"""The publish lock against a real redis-server: publishes never interleave, prune never deletes a
version that is being written, a dead holder's lease runs out, and a holder that lost its lease
cannot write."""

from __future__ import annotations

import time

import pytest

from feature_store.redis_lock import RedisLock
from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.errors import PublishError
from tests.support import tiny
from tests.support.modes import all_keys, both_modes

pytestmark = [pytest.mark.integration, both_modes]
V1, V2, V3 = "2026-01-01.00000000a1", "2026-01-02.00000000a2", "2026-01-03.00000000a3"


def _publish(store: RedisStore, version: str, n_users: int = 3) -> list[str]:
    """The store calls of a publish: write, activate, prune (each takes the lock; ``publish_run`` holds
    it across all three with ``publishing()``)."""
    store.versions.write_version(tiny.version_data(version, n_users))
    store.versions.activate(version)
    return store.versions.prune(keep=2)


def _assert_consistent(store: RedisStore) -> None:
    """Every version key belongs to a registered, complete version; current and previous are complete."""
    registered = {v.version: v for v in store.versions.list_versions()}
    on_redis = {key.split(":")[2] for key in all_keys(store) if key.split(":")[1] == "v"}
    assert on_redis <= set(registered), f"keys of unregistered versions: {on_redis - set(registered)}"
    assert all(v.meta is not None for v in registered.values()), registered
    for info in registered.values():
        assert store.versions.count_user_keys(info.version) == info.meta["n_users"]
    for pointer in (store.keys.current, store.keys.previous):
        ver = store.client.get(pointer)
        assert ver is None or ver.decode() in registered


def test_a_publish_started_while_another_writes_waits_then_refuses_and_touches_nothing(settings: Settings) -> None:
    """Publisher B runs while A is half-way through its user keys. Without the lock, B's prune deleted A's
    incomplete version under it: A then failed verification and left keys no registry lists."""
    a = RedisStore.from_settings(settings)
    b = RedisStore.from_settings(settings.model_copy(update={"publish_lock_wait_s": 0.3}))
    _publish(a, V1)
    outcome: list[str] = []

    def b_publishes_midway(_: int) -> None:
        if not outcome:
            try:
                _publish(b, V3)
                outcome.append("published")
            except PublishError as exc:
                outcome.append(str(exc))

    a.versions.batch_size = 1
    a.versions.write_version(tiny.version_data(V2, n_users=5), progress=b_publishes_midway)
    a.versions.activate(V2)
    assert outcome[0].startswith(f"another publish is running (lock {a.keys.publish_lock} held by "), outcome
    assert "waited 0.3s" in outcome[0]
    assert a.versions.current_version() == V2 and a.versions.count_user_keys(V2) == 5
    _assert_consistent(a)
    assert _publish(b, V3) == [V1]  # once A is done, B goes through
    assert (a.versions.current_version(), a.client.get(a.keys.previous).decode()) == (V3, V2)
    _assert_consistent(a)
    assert not a.client.exists(a.keys.publish_lock)
    a.close()
    b.close()


def test_two_publishes_serialise_when_the_second_may_wait(settings: Settings) -> None:
    import threading

    stores = [RedisStore.from_settings(settings) for _ in range(2)]
    errors: list[BaseException] = []

    def run(store: RedisStore, version: str) -> None:
        try:
            store.versions.batch_size = 1
            with store.versions.publishing():  # as publish_run does
                _publish(store, version, n_users=40)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, v)) for s, v in zip(stores, (V2, V3), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    current, previous = stores[0].versions.current_version(), stores[0].client.get(stores[0].keys.previous).decode()
    assert {current, previous} == {V2, V3}
    _assert_consistent(stores[0])
    for s in stores:
        s.close()


def test_a_dead_holders_lease_runs_out(settings: Settings, store: RedisStore) -> None:
    dead = RedisLock(store.client, store.keys.publish_lock, ttl_s=0.3, wait_s=0)
    assert dead._try_set()  # taken and never renewed nor released: a publisher killed with SIGKILL
    waiting = RedisStore.from_settings(settings.model_copy(update={"publish_lock_wait_s": 5}))
    _publish(waiting, V1)
    assert waiting.versions.current_version() == V1
    waiting.close()


def test_a_publisher_that_lost_its_lease_cannot_write(store: RedisStore) -> None:
    """A publisher stalled past its lease (another took the lock) stops at its next write: fencing."""
    _publish(store, V1)
    store.versions.batch_size = 1

    def lease_taken_over(_: int) -> None:
        # progress runs once the first batch is handed to the writer thread: let it land first
        deadline = time.monotonic() + 10
        while store.versions.count_user_keys(V2) < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        store.client.set(store.keys.publish_lock, "someone-else")

    with pytest.raises(PublishError, match="lost the publish lock"):
        store.versions.write_version(tiny.version_data(V2, n_users=4), progress=lease_taken_over)
    assert store.versions.count_user_keys(V2) == 1  # nothing after the takeover
    assert store.client.get(store.keys.publish_lock) == b"someone-else"  # and it did not release theirs
    assert store.versions.current_version() == V1

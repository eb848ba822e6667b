"""A publish written in stages by several writers (issue 13's sharded batch), against a real redis-server:
begin_version -> write_user_range per user range (no lock, fenced by the staging token) -> finish_version.
The stages give the same keys as write_version; a range killed half-way is caught by finish and a
retry converges; prune keeps a staged version while its lease runs and not after; a restaged or pruned
version stops the writers that still hold the old token."""

from __future__ import annotations

import time

import pytest

from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.errors import PublishError
from tests.support import tiny
from tests.support.modes import both_modes, version_keys

pytestmark = pytest.mark.integration
V1, V2 = "2026-01-01.00000000a1", "2026-01-02.00000000a2"
N_USERS = 10
RANGES = [range(0, 3), range(3, 7), range(7, 10)]


def _store(settings: Settings, prefix: str = "hr", **overrides: object) -> RedisStore:
    store = RedisStore.from_settings(settings.model_copy(update={"key_prefix": prefix, **overrides}))
    store.versions.batch_size = 2  # several fenced batches per range
    return store


def _version_keys(store: RedisStore, version: str) -> dict[str, bytes]:
    """Every key of ``version``, by its name after the prefix, and its value."""
    prefix = store.keys.version_pattern(version)[:-1]
    return {
        k.decode()[len(prefix) :]: store.client.get(k)
        for k in store.client.scan_iter(match=store.keys.version_pattern(version), count=10_000)
    }


def test_the_stages_write_exactly_what_write_version_writes(settings: Settings) -> None:
    one_go, staged = _store(settings, "hr"), _store(settings, "hs")
    data = tiny.version_data(V1, N_USERS)
    one_go.versions.write_version(data)
    assert staged.versions.begin_version(data) == []
    assert staged.client.exists(staged.keys.staging(V1))
    for rows in reversed(RANGES):  # any order, as parallel tasks finish
        assert staged.versions.write_user_range(V1, data, rows) == len(rows)
    staged.versions.finish_version(data)
    assert _version_keys(staged, V1) == _version_keys(one_go, V1)  # the staging token is gone too
    assert "staging" not in _version_keys(staged, V1) and len(_version_keys(staged, V1)) > N_USERS
    # complete: every stage is now a no-op, as republishing is
    assert staged.versions.begin_version(data) == [] and staged.versions.write_user_range(V1, data, RANGES[0]) == 0
    staged.versions.finish_version(data)
    assert _version_keys(staged, V1) == _version_keys(one_go, V1)
    one_go.close()
    staged.close()


def test_a_range_killed_half_way_is_caught_and_its_retry_converges(settings: Settings) -> None:
    store, reference = _store(settings, "hr"), _store(settings, "hs")
    reference.versions.write_version(tiny.version_data(V2, N_USERS))
    store.versions.write_version(tiny.version_data(V1, N_USERS))
    store.versions.activate(V1)
    data = tiny.version_data(V2, N_USERS)
    store.versions.begin_version(data)
    store.versions.write_user_range(V2, data, RANGES[0])

    def killed(_: int) -> None:
        raise KeyboardInterrupt  # the worker running this range dies once its first batch (2 users) is sent

    with pytest.raises(KeyboardInterrupt):
        store.versions.write_user_range(V2, data, RANGES[1], progress=killed)
    store.versions.write_user_range(V2, data, RANGES[2])
    with pytest.raises(PublishError, match=rf"version {V2} did not verify: 8/{N_USERS} user keys"):
        store.versions.finish_version(data)
    assert store.versions.read_meta(V2) is None and store.versions.current_version() == V1
    with pytest.raises(PublishError, match="incomplete"):
        store.versions.activate(V2)
    store.versions.write_user_range(V2, data, RANGES[1])  # the retried task
    store.versions.finish_version(data)
    assert store.versions.activate(V2) == V1
    assert _version_keys(store, V2) == _version_keys(reference, V2)
    store.close()
    reference.close()


def test_prune_keeps_a_staged_version_while_its_lease_runs_and_then_its_writers_stop(settings: Settings) -> None:
    store = _store(settings, publish_staging_ttl_s=0.5)
    store.versions.write_version(tiny.version_data(V1, N_USERS))
    store.versions.activate(V1)
    data = tiny.version_data(V2, N_USERS)
    store.versions.begin_version(data)
    store.versions.write_user_range(V2, data, RANGES[0])
    assert store.versions.prune(keep=1) == []  # incomplete, but a staged publish is writing it
    assert store.versions.count_user_keys(V2) == len(RANGES[0])
    time.sleep(0.7)  # every writer gone: the lease runs out
    assert store.versions.prune(keep=1) == [V2]
    assert _version_keys(store, V2) == {}
    with pytest.raises(PublishError, match=f"version {V2} is not being staged"):
        store.versions.write_user_range(V2, data, RANGES[1])
    assert _version_keys(store, V2) == {} and store.versions.current_version() == V1
    store.close()


def test_a_writer_stops_once_its_version_is_staged_again(settings: Settings) -> None:
    """A retried begin_version (say, begin_publish cleared and rerun) cleans up and takes a new token:
    a writer of the earlier attempt still running stops at its next batch instead of writing into it."""
    store, other = _store(settings), _store(settings)
    data = tiny.version_data(V1, N_USERS)
    store.versions.begin_version(data)

    def restaged(_: int) -> None:
        other.versions.begin_version(data)

    with pytest.raises(PublishError, match=f"version {V1} is no longer staged"):
        store.versions.write_user_range(V1, data, RANGES[1], progress=restaged)
    assert store.versions.count_user_keys(V1) == 0  # the first batch was deleted by the restage, none after
    for rows in RANGES:
        other.versions.write_user_range(V1, data, rows)
    other.versions.finish_version(data)
    assert store.versions.count_user_keys(V1) == N_USERS and store.versions.read_meta(V1) is not None
    store.close()
    other.close()


def test_a_writer_that_runs_longer_than_the_lease_keeps_its_version_staged(settings: Settings) -> None:
    store, other = _store(settings, publish_staging_ttl_s=0.6), _store(settings, publish_staging_ttl_s=0.6)
    store.versions.batch_size = 1
    data = tiny.version_data(V2, N_USERS)
    store.versions.begin_version(data)
    pruned: list[list[str]] = []

    def slow(_: int) -> None:
        time.sleep(0.2)  # 10 batches: 2 s, more than three leases
        if len(pruned) < 8:
            pruned.append(other.versions.prune(keep=1))  # someone prunes all along: the staged version stays

    assert store.versions.write_user_range(V2, data, range(N_USERS), progress=slow) == N_USERS
    assert pruned == [[]] * 8
    store.versions.finish_version(data)
    assert store.versions.count_user_keys(V2) == N_USERS and store.versions.read_meta(V2) is not None
    store.close()
    other.close()


def _values_in_any_mode(store: RedisStore, version: str) -> dict[str, bytes | None]:
    """Every key of ``version`` on every node, by its name after ``:v:``, and its value."""
    return {key.split(":v:", 1)[1]: store.client.get(key) for key in version_keys(store, version)}


@both_modes
def test_the_stages_publish_what_write_version_does_on_one_server_and_on_a_cluster(settings: Settings) -> None:
    """On a cluster the shard writers' user batches go one MSET per slot, fenced by the staging token, and
    the token lives in the control slot: the staged version must still equal write_version's, key for key."""
    one_go, staged = _store(settings, "hr"), _store(settings, "hs")
    data = tiny.version_data(V1, N_USERS)
    one_go.versions.write_version(data)
    staged.versions.begin_version(data)
    for rows in RANGES:
        assert staged.versions.write_user_range(V1, data, rows) == len(rows)
    staged.versions.finish_version(data)
    expected = _values_in_any_mode(one_go, V1)
    assert len(expected) > N_USERS
    assert _values_in_any_mode(staged, V1) == expected
    one_go.close()
    staged.close()

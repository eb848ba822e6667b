"""Publishing into a Redis with maxmemory + noeviction (as docker-compose runs it): a publish checks
for room before it writes, prunes dead or doomed versions first when short, and otherwise refuses
saying how much it needs, instead of failing half-way and leaving thousands of keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisStore
from shared.config import get_settings
from shared.errors import PublishError
from tests.support import tiny

pytestmark = pytest.mark.integration
V1, V2, V3, DEAD = "2026-01-01.00000000a1", "2026-01-02.00000000a2", "2026-01-03.00000000a3", "2026-01-04.00000000dd"
USERS = 20_000  # ~4 MiB per version: well above Redis's own ~1 MiB


@pytest.fixture()
def full_store(tmp_path) -> Iterator[RedisStore]:
    with EmbeddedRedis(tmp_path / "redis", config={"maxmemory-policy": "noeviction"}) as server:
        store = RedisStore.from_settings(get_settings(redis_url=server.url, data_dir=tmp_path))
        yield store
        store.close()


def _publish(store: RedisStore, version: str, keep: int = 2) -> list[str]:
    pruned = store.versions.write_version(tiny.version_data(version, USERS), keep=keep)
    store.versions.activate(version)
    return pruned + store.versions.prune(keep)


def _need(store: RedisStore) -> int:
    return store.versions.estimate_bytes(tiny.version_data(V3, USERS))


def _limit(store: RedisStore, free: float) -> None:
    """Set maxmemory to what Redis uses now plus ``free`` bytes."""
    store.client.config_set("maxmemory", int(store.versions.memory()[0] + free))


def test_a_publish_without_room_refuses_before_writing_and_says_what_it_needs(full_store: RedisStore) -> None:
    _publish(full_store, V1)
    _publish(full_store, V2)
    _limit(full_store, 0.5 * _need(full_store))  # "two versions plus a bit": what the compose file advised
    keys = full_store.client.dbsize()
    with pytest.raises(PublishError, match=r"publishing .* needs about [\d.]+ MiB of Redis memory but only") as err:
        _publish(full_store, V3)
    assert "Raise maxmemory to at least" in str(err.value) and "nothing was written" in str(err.value)
    assert full_store.client.dbsize() == keys  # not one key of V3
    assert full_store.versions.current_version() == V2
    assert [v.version for v in full_store.versions.list_versions()] == [V1, V2]
    full_store.client.config_set("maxmemory", 0)
    _limit(full_store, 1.05 * _need(full_store))  # room for one more version: current + previous + new
    assert _publish(full_store, V3) == [V1]
    assert full_store.versions.current_version() == V3


def test_a_short_publish_first_prunes_a_dead_half_written_version(full_store: RedisStore) -> None:
    _publish(full_store, V1)
    _publish(full_store, V2)
    full_store.versions.batch_size = 2_000
    before = full_store.versions.memory()[0]
    written: list[int] = []

    def killed(n: int) -> None:
        written.append(n)
        if sum(written) >= 0.6 * USERS:
            raise KeyboardInterrupt  # a publisher killed 60% of the way through its users

    with pytest.raises(KeyboardInterrupt):
        full_store.versions.write_version(tiny.version_data(DEAD, USERS), progress=killed)
    assert full_store.versions.count_user_keys(DEAD) > 0
    dead = full_store.versions.memory()[0] - before
    _limit(full_store, _need(full_store) - dead / 2)  # enough only once the dead version's keys are gone
    assert DEAD in _publish(full_store, V3)
    assert full_store.versions.count_user_keys(DEAD) == 0
    assert (full_store.versions.current_version(), full_store.client.get("hr:previous").decode()) == (V3, V2)

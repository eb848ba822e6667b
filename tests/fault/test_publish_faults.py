"""Publishes under faults, with ``hybridrec publish`` in subprocesses against a real redis-server and
the API (real uvicorn) reading throughout: killed at several points, two at once, and into a Redis
without room for another version."""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from batch.publish import publish_run
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisStore
from shared.ids import make_version_id
from tests.fault.conftest import World, assert_store_consistent, output, wait_for
from tests.support import auth
from tests.support.server import serve

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def _version(world: World, day) -> str:
    manifest = json.loads((world.data_dir / f"runs/date={day}/manifest.json").read_text())
    return make_version_id(day, manifest["content_hash"])


def _publish(world: World, url: str, day, **settings: str) -> str:
    out = world.cli(url, "publish", "--force", "--date", str(day), **settings)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _setup_publish(world: World, url: str, day) -> str:
    """A publish as set-up, in this process: what is under test is the CLI publish that follows."""
    with RedisStore.from_settings(world.settings(url)) as store:
        return publish_run(world.data_dir / f"runs/date={day}", store.versions, world.settings(url)).version


@contextmanager
def _reader(world: World, url: str) -> Iterator[list[tuple[int, str | None]]]:
    """The API under uvicorn and a thread that keeps asking it for a known user: (status, version) each."""
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with serve(world.settings(url, reload_interval_s=0.05)) as base:

        def poll() -> None:
            with auth.client(base, timeout=5) as api:  # a keyed client: an anonymous poller is rate-limited
                while not stop.is_set():
                    r = api.get("/recommendations/u000001", params={"k": 5})
                    seen.append((r.status_code, r.json().get("model_version")))

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join(10)


def test_a_publish_killed_at_random_points_never_shows_a_mixed_version(
    world: World, server: EmbeddedRedis, client: redis.Redis
) -> None:
    """SIGKILL ``hybridrec publish`` at seeded random points of its writes (from before the first key to
    after the switch): the old version keeps serving, a reader only ever sees whole versions in order,
    and the next publish cleans up and completes."""
    versions = [_version(world, d) for d in world.days]
    serving = _setup_publish(world, server.url, world.days[0])
    rng = random.Random(9)
    with _reader(world, server.url) as seen:
        wait_for(lambda: seen and seen[-1] == (200, serving), "the API to serve the first version", timeout=60)
        for kill, day in enumerate([world.days[1], world.days[2], world.days[0]]):
            target = _version(world, day)
            before = client.dbsize()
            n_keys = 760  # about: ~740 user keys, item arrays, popular lists, meta
            point = rng.randrange(0, n_keys + 40)  # past n_keys: after the meta, around the switch
            proc = world.start_cli(server.url, "publish", "--force", "--date", str(day), publish_batch_size="1")
            wait_for(
                lambda: client.dbsize() >= before + point or proc.poll() is not None,  # noqa: B023
                f"publish {kill} to reach {point} keys",
                timeout=120,  # the CLI's start (imports, loading the run) is slow on a busy machine
                every=0.001,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            current = client.get("hr:current").decode()
            assert current in (serving, target), current
            registry = assert_store_consistent(client)
            assert registry[current]
            mark = len(seen)
            # the next publish of the same run cleans up whatever the killed one left and completes
            assert _publish(world, server.url, day) == target
            assert_store_consistent(client)
            assert client.get("hr:current").decode() == target
            wait_for(lambda: seen[-1] == (200, target), f"the API to serve {target}", timeout=60)  # noqa: B023
            assert set(seen[mark:]) <= {(200, serving), (200, target)}
            serving = target
    assert {status for status, _ in seen} == {200}, "a reader got an error"
    order = [v for _, v in seen]
    switches = [v for i, v in enumerate(order) if i == 0 or v != order[i - 1]]
    assert len(switches) <= 1 + 3, f"the reader flapped between versions: {switches}"
    assert set(switches) <= set(versions)


def test_two_publishes_at_once_serialise_or_the_second_refuses(world: World, server: EmbeddedRedis, client) -> None:
    first, second = world.days[1], world.days[2]
    _setup_publish(world, server.url, world.days[0])
    # both allowed to wait: they run one after the other and both succeed
    a = world.start_cli(server.url, "publish", "--force", "--date", str(first), publish_batch_size="1")
    wait_for(lambda: client.exists("hr:lock:publish"), "the first publish to take the lock", 120, 0.005)
    b = world.start_cli(server.url, "publish", "--force", "--date", str(second))
    assert (a.wait(120), b.wait(120)) == (0, 0), (output(a), output(b))
    registry = assert_store_consistent(client)
    assert all(registry.values())
    assert client.get("hr:current").decode() == _version(world, second)
    assert client.get("hr:previous").decode() == _version(world, first)
    # a publish that may not wait refuses while another holds the lock, says so plainly, and touches nothing
    client.set("hr:lock:publish", "build-7:4242:2026-11-30T08:00:00Z:cafe0123", px=60_000)
    keys = client.dbsize()
    b = world.cli(server.url, "publish", "--force", "--date", str(world.days[0]), publish_lock_wait_s="0")
    assert b.returncode == 6, b.stderr
    # printed verbatim: rich used to turn "hr:lock:" into an emoji and read [...] as markup
    message = " ".join(b.stderr.split())  # rich wraps long lines
    assert "error: another publish is running (lock hr:lock:publish held by build-7:4242:" in message
    assert client.dbsize() == keys and client.get("hr:current").decode() == _version(world, second)
    assert all(assert_store_consistent(client).values())


def test_a_publish_without_room_refuses_cleanly_and_the_documented_sizing_works(
    world: World, server: EmbeddedRedis, client
) -> None:
    """With maxmemory at "two versions plus a bit" (the compose file's old advice) the third publish ran
    out of memory half-way (exit 6, ~1,000 keys left) and so did its retry. Now it refuses before it
    writes; at three versions (the documented sizing) it goes through."""
    client.config_set("maxmemory-policy", "noeviction")
    base = int(client.info("memory")["used_memory"])
    _setup_publish(world, server.url, world.days[0])
    one = int(client.info("memory")["used_memory"]) - base
    _setup_publish(world, server.url, world.days[1])
    client.config_set("maxmemory", int(client.info("memory")["used_memory"] + one // 2))
    keys = client.dbsize()
    out = world.cli(server.url, "publish", "--force", "--date", str(world.days[2]))
    assert out.returncode == 6
    message = " ".join(out.stderr.split())
    assert "needs about" in message and "Raise maxmemory to at least" in message, message
    assert client.dbsize() == keys and "Traceback" not in out.stderr
    assert client.get("hr:current").decode() == _version(world, world.days[1])
    client.config_set("maxmemory", base + int(3.5 * one))  # three versions and some room (README)
    assert _publish(world, server.url, world.days[2]) == _version(world, world.days[2])
    assert all(assert_store_consistent(client).values())

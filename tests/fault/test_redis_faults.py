"""The API (real uvicorn) and compaction while the real redis-server is killed, restarted (with its
data, then empty), paused, or full. Clients post events with their own ids and retry what was not
acknowledged with the same ids: every event ends up stored exactly once."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from batch.publish import publish_run
from feature_store.embedded import EmbeddedRedis
from feature_store.redis_store import RedisStore
from tests.fault.conftest import World, stream_event_ids, wait_for
from tests.support import auth
from tests.support.server import serve

pytestmark = pytest.mark.fault
USER = "u000001"


@dataclass
class Traffic:
    """One client thread: a batch of 5 events with its own ids, then a recommendation for USER in the
    same session, over and over. Records every answer."""

    api: httpx.Client
    sessions: list[str]  # issued by the API for USER (POST /sessions), as a secured API requires
    batches: dict[int, list[dict]] = field(default_factory=dict)
    posted: list[tuple[int, int, dict]] = field(default_factory=list)  # (batch, status, body)
    reads: list[tuple[float, int, dict]] = field(default_factory=list)  # (seconds, status, body)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)

    def run(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            session = self.sessions[n % len(self.sessions)]
            batch = [{"session_id": session, "user_id": USER, "item_id": f"i{(n * 5 + j) % 300:05d}",
                      "event_id": f"c-{n}-{j}"} for j in range(5)]  # fmt: skip
            self.batches[n] = batch
            self.posted.append((n, *_post(self.api, batch)))
            start = time.perf_counter()
            r = self.api.get(f"/recommendations/{USER}", params={"k": 5, "session_id": session})
            self.reads.append((time.perf_counter() - start, r.status_code, r.json()))
            time.sleep(0.005)

    def retry_until_stored(self) -> Counter[str]:
        """Re-post every batch that got no 202, with the same ids, until it does. Returns how often each
        id was reported as a duplicate."""
        dups: Counter[str] = Counter()
        for n, status, body in list(self.posted):
            if status == 202:
                continue
            for _ in range(50):
                status, body = _post(self.api, self.batches[n])
                if status == 202:
                    dups.update(body["duplicates"])
                    break
                time.sleep(0.1)
            assert status == 202, body
        return dups


def _post(api: httpx.Client, batch: list[dict]) -> tuple[int, dict]:
    try:
        r = api.post("/events", json=batch)
        return r.status_code, r.json()
    except httpx.HTTPError as exc:  # no answer at all: as unknown as a timeout
        return 0, {"error": type(exc).__name__}


@contextmanager
def _traffic(world: World, url: str, **settings: object) -> Iterator[tuple[Traffic, httpx.Client]]:
    with (
        serve(world.settings(url, reload_interval_s=0.1, **settings)) as base,
        auth.client(base, timeout=10) as api,
        httpx.Client(base_url=base, timeout=10) as probe,
    ):
        traffic = Traffic(api, [auth.new_session(api, USER) for _ in range(7)])  # signing needs no store
        wait_for(lambda: probe.get("/ready").status_code == 200, "the API to be ready", timeout=60)
        traffic.start()
        try:
            yield traffic, probe
        finally:
            traffic.halt()


def _publish(world: World, url: str, day=None) -> str:
    with RedisStore.from_settings(world.settings(url)) as store:
        return publish_run(
            world.data_dir / f"runs/date={day or world.days[-1]}", store.versions, world.settings(url)
        ).version


def _assert_each_event_once(traffic: Traffic, client: redis.Redis) -> None:
    wanted = {ev["event_id"] for batch in traffic.batches.values() for ev in batch}
    stored = Counter(stream_event_ids(client))
    assert set(stored) == wanted, f"missing {len(wanted - set(stored))}, unexpected {len(set(stored) - wanted)}"
    assert max(stored.values()) == 1, [e for e, c in stored.items() if c > 1][:10]


def _assert_degraded_reads_are_flagged(reads: list[tuple[float, int, dict]]) -> None:
    assert {status for _, status, _ in reads} == {200}, Counter(status for _, status, _ in reads)
    for _, _, body in reads:
        store_flags = {"store_timeout", "store_unavailable"} & set(body["flags"])
        assert len(store_flags) <= 1, body["flags"]


def test_redis_killed_and_restarted_loses_nothing_acknowledged(world: World, server: EmbeddedRedis, client) -> None:
    version = _publish(world, server.url)
    with _traffic(world, server.url) as (traffic, probe):
        wait_for(lambda: len(traffic.posted) >= 20, "some traffic")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        # a read that fetched its features just before the kill may finish after it: skip the in-flight ones
        down = len(traffic.reads) + 4
        wait_for(lambda: len(traffic.reads) >= down + 20, "traffic while Redis is down")
        r = probe.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        outage = traffic.reads[down : down + 20]
        assert all({"store_unavailable", "store_timeout"} & set(b["flags"]) for _, _, b in outage), outage[:3]
        assert all(b["model_version"] == version for _, _, b in outage)  # the loaded model keeps serving
        server.stop()
        started = time.monotonic()
        server.start()  # same port, same append-only file
        wait_for(lambda: probe.get("/ready").status_code == 200, "the API to be ready again")
        recovered = time.monotonic() - started
        back = len(traffic.posted)
        wait_for(lambda: len(traffic.posted) >= back + 20, "traffic after the restart")
        traffic.halt()
        print(f"ready again {recovered:.2f}s after the restart")
        _assert_degraded_reads_are_flagged(traffic.reads)
        assert any(status == 503 for _, status, _ in traffic.posted) and traffic.posted[-1][1] == 202
        assert {body.get("error") for _, status, body in traffic.posted if status == 503} <= {
            "store_unavailable",
            "store_timeout",
        }
        acked = {ev["event_id"] for n, status, _ in traffic.posted if status == 202 for ev in traffic.batches[n]}
        assert acked <= set(stream_event_ids(client)), "an acknowledged event was lost in the restart"
        traffic.retry_until_stored()
    _assert_each_event_once(traffic, client)


def test_redis_restarted_empty_makes_the_api_unready_until_a_publish(
    world: World, server: EmbeddedRedis, client
) -> None:
    _publish(world, server.url)
    with _traffic(world, server.url) as (traffic, probe):
        assert probe.get(f"/recommendations/{USER}").json()["strategy"] == "precomputed"
        server.stop()
        shutil.rmtree(server.data_dir)  # the data is gone: a new volume, a flushed instance
        os.makedirs(server.data_dir)
        server.start()
        # /ready reports the model holder's last refresh: first the outage ("cannot reach Redis"), then,
        # at its next tick against the restarted server, the empty store
        wait_for(
            lambda: any("no published version" in p for p in probe.get("/ready").json()["problems"]),
            "/ready to notice the empty store",
        )
        assert probe.get("/ready").status_code == 503
        # the answer the worker computed for this request before is still the loaded version's answer
        # (its user records are immutable), so the response cache serves it without reading the store;
        # a request it has not seen reads the empty store: served, and says the user is unknown
        assert "cached" in probe.get(f"/recommendations/{USER}").json()["flags"]
        body = probe.get(f"/recommendations/{USER}", params={"k": 7}).json()
        assert body["strategy"] != "precomputed" and "unknown_user" in body["flags"]
        _publish(world, server.url)
        wait_for(lambda: probe.get("/ready").status_code == 200, "a publish to restore service")
        assert probe.get(f"/recommendations/{USER}").json()["strategy"] == "precomputed"
    _assert_degraded_reads_are_flagged(traffic.reads)


def test_redis_paused_bounds_latency_and_a_retry_with_the_same_ids_stores_nothing_twice(
    world: World, server: EmbeddedRedis, client
) -> None:
    """Under SIGSTOP, events answered 503 store_timeout may still be stored (Redis runs them when it
    resumes): the answer says so, and the client's retry with the same ids is acknowledged as duplicates."""
    _publish(world, server.url)
    with _traffic(world, server.url, store_timeout_ms=50) as (traffic, _probe):
        wait_for(lambda: len(traffic.posted) >= 10, "some traffic")
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            paused = len(traffic.reads) + 2  # a request in flight may have had its answer before the stop
            wait_for(lambda: len(traffic.reads) >= paused + 15, "traffic while Redis is paused")
            during = traffic.reads[paused : paused + 15]
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        back = len(traffic.posted)
        wait_for(lambda: len(traffic.posted) >= back + 10 and traffic.posted[-1][1] == 202, "traffic after resuming")
        traffic.halt()
        dups = traffic.retry_until_stored()
    _assert_degraded_reads_are_flagged(traffic.reads)
    assert all("store_timeout" in b["flags"] for _, _, b in during), [b["flags"] for _, _, b in during]
    worst = max(s for s, _, _ in during)
    print(f"while paused: slowest recommendation {worst * 1000:.0f} ms (timeout 50 ms)")
    assert worst < 1.0, "latency was not bounded by the store timeout"
    timeouts = [body for _, status, body in traffic.posted if status == 503]
    assert timeouts and all(b["error"] == "store_timeout" for b in timeouts), timeouts[:3]
    assert "retry with the same event_id values" in timeouts[0]["message"]
    print(f"{len(timeouts)} batches answered 503; on retry {len(dups)} of their events were already stored")
    _assert_each_event_once(traffic, client)


@pytest.mark.slow
def test_a_full_redis_refuses_events_and_compaction_still_drains_it(
    world: World, server: EmbeddedRedis, client, tmp_path
) -> None:
    """maxmemory + noeviction, as docker-compose runs Redis. Compaction used to exit 6 on every run
    (XGROUP CREATE ... MKSTREAM and the MULTI of its ack are refused when full), so the stream never
    drained and events stayed refused for good."""
    _publish(world, server.url)
    client.config_set("maxmemory-policy", "noeviction")
    # room for ~10k events: the un-compacted backlog fills it (one session, so sessions stay small)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 2_000_000)
    with serve(world.settings(server.url, reload_interval_s=0.1)) as base, auth.client(base) as api:
        visit = auth.new_session(api)
        for n in range(200):
            batch = [{"session_id": visit, "item_id": f"i{j % 300:05d}", "event_id": f"f{n}.{j}"} for j in range(200)]
            status, body = _post(api, batch)
            if status != 202:
                break
        assert status == 503 and body["error"] == "store_full", (status, body)
        assert "nothing was stored" in body["message"]
        stored = len(stream_event_ids(client))
        assert stored == 200 * n and f"f{n}.0" not in stream_event_ids(client)  # the refused batch: nothing
        # full: a publish cannot take room it does not have, and says so before writing
        out = world.cli(server.url, "publish", "--force", "--date", str(world.days[0]))
        assert out.returncode == 6 and "needs about" in " ".join(out.stderr.split()), out.stderr
        compact = world.cli(server.url, "compact", data_dir=str(tmp_path / "data"))
        assert compact.returncode == 0, compact.stderr
        assert f"compacted {stored:,} live events" in " ".join(compact.stderr.split())
        assert client.xlen("hr:events") == 0
        status, body = _post(api, batch)  # the refused batch again, same ids: accepted now
        assert status == 202 and body["accepted"] == 200, body

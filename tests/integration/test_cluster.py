"""What only Redis Cluster adds, against a real 3-master cluster (and, where the question is the same, a
real redis-server): one request is one script on one node, user records spread over every node and are
counted on each before the flip, a concurrent reader never sees a mixed version, a SIGKILLed publisher
leaves the old version serving, a node that cannot take a session's write does not lose the event, and
two API processes answer the same requests identically."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from feature_store.base import SessionEvent, VersionData
from feature_store.embedded import free_port
from feature_store.embedded_cluster import EmbeddedCluster
from feature_store.redis_client import node_clients
from feature_store.redis_online import RedisOnline
from feature_store.redis_store import RedisStore
from online.sessions import SessionIds
from shared.config import Settings
from shared.errors import ConfigError, PublishError, StoreUnavailable
from tests.support import auth, tiny
from tests.support.modes import all_keys, both_modes, node_of
from tests.support.server import serve

pytestmark = pytest.mark.integration
V1, V2 = "2026-01-01.00000000c1", "2026-01-02.00000000c2"
BIN = Path(sys.executable).parent / "hybridrec"
REPO = Path(__file__).resolve().parents[2]
SESSIONS = SessionIds(auth.SESSION_SECRET.encode(), verify=True)  # the ids the API would issue


def _version(version: str, n_users: int, axis: int) -> VersionData:
    """``tiny``'s version with every user vector along ``axis`` (0 or 1), so a record tells its version."""
    data = tiny.version_data(version, n_users)
    vectors = np.zeros((n_users, 2), dtype=np.float32)
    vectors[:, axis] = 2.0
    return dataclasses.replace(data, user_arrays={**data.user_arrays, "vector": vectors})


def _port(store: RedisStore, key: str) -> int:
    """The port of the node that holds ``key``."""
    return int(node_of(store, key).connection_pool.connection_kwargs["port"])


def _evalsha_per_node(store: RedisStore) -> dict[str, int]:
    return {
        name: int(node.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        for name, node in node_clients(store.client)
    }


def _reset_stats(store: RedisStore) -> None:
    for _, node in node_clients(store.client):
        node.config_resetstat()


@both_modes
def test_a_request_is_one_script_on_one_node_unless_a_user_reads_an_anonymous_session(
    settings: Settings, store: RedisStore, redis_mode: str
) -> None:
    """Counted by the servers themselves (INFO commandstats on every node), for the blocking reader and
    the API's asyncio one."""
    store.versions.write_version(tiny.version_data(V1, n_users=3))
    own, user_node = SESSIONS.issue("u1"), _port(store, store.keys.user(V1, "u1"))
    # an anonymous session whose keys are on another node than u1's record (on one server: any)
    anonymous = next(
        s
        for s in iter(lambda: SESSIONS.issue(None), None)
        if redis_mode == "single" or _port(store, store.keys.session(s)) != user_node
    )
    store.events.append(
        [
            SessionEvent("b0", "view", 1_772_323_200.0, "e1", "u1", own),
            SessionEvent("b1", "view", 1_772_323_201.0, "e2", None, anonymous),
        ]
    )

    async def api_reads() -> list:
        online = RedisOnline.from_settings(settings)
        try:
            return [
                await online.read_request(V1, "u1", own),
                await online.read_request(V1, "u1", anonymous),
            ]
        finally:
            await online.aclose()

    asyncio.run(api_reads())  # the scripts are loaded on every node: what follows is the steady state
    expected = {"own": 1, "anonymous": 1 if redis_mode == "single" else 2}
    for read in ("blocking", "asyncio"):
        for case, session in (("own", own), ("anonymous", anonymous)):
            _reset_stats(store)
            if read == "blocking":
                got = store.versions.read_request(V1, "u1", session)
                record, events = got.user is not None, [e.item_id for e in got.session]
            else:
                stored = asyncio.run(_one_read(settings, "u1", session))
                record, events = stored.user is not None, [len(e) > 0 for e in stored.session]
            calls = _evalsha_per_node(store)
            assert sum(calls.values()) == expected[case], (read, case, calls)
            assert sum(1 for n in calls.values() if n) == expected[case], (read, case, calls)  # one per node
            assert record and len(events) == 1, (read, case)


async def _one_read(settings: Settings, user: str, session: str):  # type: ignore[no-untyped-def]
    online = RedisOnline.from_settings(settings)
    try:
        # the first call of a fresh client also reads the slot map (CLUSTER SLOTS), not counted as EVALSHA
        return await online.read_request(V1, user, session)
    finally:
        await online.aclose()


@pytest.mark.parametrize("redis_mode", ["cluster"], indirect=True)
def test_user_records_spread_over_every_node_and_verification_counts_each(store: RedisStore) -> None:
    store.versions.write_version(tiny.version_data(V1, n_users=300))
    per_node = store.versions.user_keys_per_node(V1)
    assert len(per_node) == 3 and all(n > 50 for n in per_node.values()) and sum(per_node.values()) == 300
    version_wide = all_keys(store, store.keys.version_pattern(V1)) | {store.keys.current, store.keys.publish_lock}
    assert len(version_wide) > 5 and all(k.startswith("{hr}:") for k in version_wide)
    # meta, blobs, pointers and lock: one slot, one node
    assert {store.client.keyslot(k) for k in version_wide} == {store.client.keyslot("hr")}

    # a record lost after its batch was written (here: deleted) fails the publish before meta and flip
    store.versions.batch_size = 50

    def lose_one(_: int) -> None:
        calls.append(1)
        if len(calls) == 2:  # batch 2 was handed to the writer, so batch 1 (u0..u49) is written
            lost.append(store.client.delete(store.keys.user(V2, "u3")))

    calls: list[int] = []
    lost: list[int] = []
    with pytest.raises(PublishError, match=r"299/300 user keys \(per node: "):
        store.versions.write_version(tiny.version_data(V2, n_users=300), progress=lose_one)
    assert lost == [1] and store.versions.read_meta(V2) is None
    with pytest.raises(PublishError, match="incomplete"):
        store.versions.activate(V2)


@both_modes
def test_a_concurrent_reader_never_sees_a_mixed_version(settings: Settings, store: RedisStore) -> None:
    """A reader resolves the pointer, then reads a user's record of that version, over and over, while
    V2 is published in small batches (and once killed half-way): every answer is whole and of the version
    the pointer named, and once V2 is current every one of its users is there."""
    n = 400
    store.versions.write_version(_version(V1, n, axis=0))
    store.versions.activate(V1)
    axis = {V1: 0, V2: 1}
    seen: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        reader = RedisStore.from_settings(settings, online=True)
        i = 0
        while not stop.is_set():
            version = reader.versions.current_version()
            user = reader.versions.read_request(version, f"u{i % n}", None).user  # type: ignore[arg-type]
            if user is None or float(user.vector[axis[version]]) != 2.0 or float(user.vector[1 - axis[version]]):
                problems.append(f"{version} u{i % n}: {None if user is None else user.vector.tolist()}")
            seen.append(version)  # type: ignore[arg-type]
            i += 7
        reader.close()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        store.versions.batch_size = 10

        def die(done: int) -> None:
            if done and store.versions.count_user_keys(V2) > n // 2:
                raise KeyboardInterrupt  # a kill half-way through the user records

        with pytest.raises(KeyboardInterrupt):
            store.versions.write_version(_version(V2, n, axis=1), progress=die)
        assert store.versions.current_version() == V1
        mark = len(seen)
        store.versions.write_version(_version(V2, n, axis=1))  # cleans up and completes
        store.versions.activate(V2)
        deadline = time.monotonic() + 10
        while seen.count(V2) < 50:
            assert time.monotonic() < deadline, "the reader never read the new version"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert problems == []
    assert set(seen[:mark]) == {V1} and set(seen) == {V1, V2}
    first = seen.index(V2)
    assert set(seen[first:]) == {V2}  # one switch, never back


@pytest.mark.parametrize("redis_mode", ["cluster"], indirect=True)
def test_a_publisher_killed_with_sigkill_leaves_the_old_version_serving(settings: Settings, store: RedisStore) -> None:
    """A real process publishing one user per batch is SIGKILLed half-way: the pointer, the old version's
    records and the registry are as before, the half-written version cannot be activated, and
    republishing it (once the dead holder's lease runs out) completes it."""
    n = 2_000
    store.versions.write_version(_version(V1, n, axis=0))
    store.versions.activate(V1)
    script = (
        "import dataclasses, sys, numpy as np\n"
        "from feature_store.redis_store import RedisStore\n"
        "from shared.config import get_settings\n"
        "from tests.integration.test_cluster import _version\n"
        "settings = get_settings(redis_url=sys.argv[1], publish_batch_size=1, publish_lock_ttl_s=1)\n"
        "with RedisStore.from_settings(settings) as store:\n"
        f"    store.versions.write_version(_version({V2!r}, {n}, axis=1))\n"
        f"    store.versions.activate({V2!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    proc = subprocess.Popen([sys.executable, "-c", script, settings.redis_url or ""], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while store.versions.count_user_keys(V2) < 200:
            assert time.monotonic() < deadline and proc.poll() is None, "the publisher never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = store.versions.count_user_keys(V2)
    assert 200 <= written < n, written
    assert store.versions.current_version() == V1 and store.versions.read_meta(V2) is None
    states = {v.version: v.meta is not None for v in store.versions.list_versions()}
    assert states == {V1: True, V2: False}
    with pytest.raises(PublishError, match="incomplete"):
        store.versions.activate(V2)
    assert float(store.versions.read_request(V1, "u1999", None).user.vector[0]) == 2.0  # type: ignore[union-attr]
    store.versions.write_version(_version(V2, n, axis=1))  # waits out the dead holder's 1 s lease
    store.versions.activate(V2)
    assert store.versions.count_user_keys(V2) == n and store.versions.current_version() == V2
    assert store.versions.prune(keep=1) == []  # current and previous are kept


@pytest.mark.parametrize("redis_mode", ["cluster"], indirect=True)
def test_a_node_refusing_a_sessions_write_keeps_the_event_in_the_stream(store: RedisStore) -> None:
    stream_port = _port(store, store.keys.events_stream)
    session = next(
        s for s in (f"visit-{i}" for i in range(1_000)) if _port(store, store.keys.session(s)) != stream_port
    )
    full = node_of(store, store.keys.session(session))
    full.config_set("maxmemory-policy", "noeviction")
    full.config_set("maxmemory", 1)  # every write that may grow memory is refused there
    try:
        result = store.events.append([SessionEvent("a0", "view", 1_772_323_200.0, "e1", None, session)])
    finally:
        full.config_set("maxmemory", 0)
    # Redis 7 answers OOM (StoreFull: "full"); 6.2 wraps it in a script error ("-OOM command not allowed")
    assert result.sessions_missed == 1 and ("full" in result.sessions_error or "OOM" in result.sessions_error)
    assert store.events.stream_length() == 1 and store.events.read_session(session) == []
    retry = store.events.append([SessionEvent("a0", "view", 1_772_323_200.0, "e1", None, session)])
    assert retry.duplicates == ["e1"] and store.events.stream_length() == 1  # stored once, as promised


def test_cluster_urls_are_checked_and_an_unreachable_cluster_is_unavailable(settings: Settings) -> None:
    with pytest.raises(StoreUnavailable, match="cannot reach the Redis Cluster"):
        RedisStore.from_settings(settings, url=f"redis+cluster://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="only database 0"):
        RedisStore.from_settings(settings, url="redis+cluster://127.0.0.1:7000/3")


# --- two API processes against one cluster -------------------------------------------------------------


@pytest.fixture()
def two_apis(settings: Settings, store: RedisStore, redis_cluster: EmbeddedCluster) -> Iterator[list[str]]:
    """Two ``hybridrec serve`` processes on their own ports against the cluster, serving tiny's version."""
    store.versions.write_version(tiny.version_data(V1, n_users=5))
    store.versions.activate(V1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    env |= {"HYBRIDREC_REDIS_URL": redis_cluster.url, "HYBRIDREC_DATA_DIR": str(settings.data_dir), **auth.auth_env()}
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen([str(BIN), "serve", "--port", str(port)], env=env, start_new_session=True) for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, proc in zip(bases, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, "an API process did not get ready"
                try:
                    if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        yield bases
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("redis_mode", ["cluster"], indirect=True)
def test_two_api_processes_on_the_cluster_answer_the_same_requests_identically(two_apis: list[str]) -> None:
    first, second = (auth.client(base) for base in two_apis)
    with first, second:
        own, anonymous = auth.new_session(first, "u1"), auth.new_session(second)
        # events through both processes, into a user's session and an anonymous one
        assert first.post("/events", json={"session_id": own, "user_id": "u1", "item_id": "b0"}).status_code == 202
        assert second.post("/events", json={"session_id": anonymous, "item_id": "a2"}).status_code == 202
        assert second.post("/events", json={"session_id": own, "user_id": "u1", "item_id": "b2"}).status_code == 202
        requests = [
            ("/recommendations/u0", {"k": 4}),
            ("/recommendations/u1", {"k": 4, "session_id": own}),
            ("/recommendations/u1", {"k": 4, "session_id": anonymous}),
            ("/recommendations/anonymous", {"k": 4, "session_id": anonymous}),
            ("/recommendations/stranger", {"k": 3, "category": "B"}),
            ("/items/a0/similar", {"k": 3, "kind": "covisit"}),
        ]
        answers = []
        for api in (first, second, first):  # the second round from the first process: its cache answers
            got = []
            for path, params in requests:
                r = api.get(path, params=params)
                assert r.status_code == 200, r.text
                body = r.json()
                body.pop("took_ms", None)
                body["flags"] = [f for f in body.get("flags", []) if f != "cached"]
                got.append(body)
            answers.append(got)
    assert answers[0] == answers[1] == answers[2]
    strategies = [a.get("strategy") for a in answers[0][:5]]
    assert strategies == ["precomputed", "hybrid", "hybrid", "session", "popular"], json.dumps(answers[0])
    own_items = {i["item_id"] for i in answers[0][1]["items"]}
    assert not own_items & {"b0", "b2"}  # both processes' events reached the one session


def test_the_api_starts_while_the_cluster_is_down_and_serves_once_it_is_up(tmp_path: Path) -> None:
    """As with one server: the API starts, says why it is not ready, and serves once the cluster answers
    (its blocking cluster client is made on first use: feature_store.redis_client.DeferredCluster)."""
    with EmbeddedCluster(n=1, data_dir=tmp_path / "cluster") as cluster:
        node = cluster.nodes[0]
        node.stop()  # its nodes.conf stays: restarted, it is the same one-master cluster
        settings = Settings(
            redis_url=cluster.url,
            data_dir=tmp_path / "data",
            store_timeout_ms=500,
            reload_interval_s=0.1,
            **auth.auth_overrides(),  # type: ignore[arg-type]
        )
        with serve(settings) as base, auth.client(base) as api:
            assert api.get("/health").status_code == 200
            ready = api.get("/ready")
            assert ready.status_code == 503 and any("Redis Cluster" in p for p in ready.json()["problems"]), ready.text
            r = api.get("/recommendations/u0")
            assert r.status_code == 503 and r.json()["error"] == "version_not_found"  # no model loaded yet
            node.start()
            with RedisStore.from_settings(settings) as store:
                store.versions.write_version(tiny.version_data(V1, n_users=3))
                store.versions.activate(V1)
            deadline = time.monotonic() + 30
            while api.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, api.get("/ready").text
                time.sleep(0.1)
            body = api.get("/recommendations/u0", params={"k": 2}).json()
            assert body["strategy"] == "precomputed" and body["model_version"] == V1, body
            assert not {"store_unavailable", "store_timeout"} & set(body["flags"]), body

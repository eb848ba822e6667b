"""The whole loop as a user runs it: CLI commands in subprocesses, the API under uvicorn, a real Redis.

generate -> ingest -> run-batch -> publish -> HTTP; then a second publish under load, and a publish
killed with SIGKILL half-way.
"""

from __future__ import annotations

import datetime as dt
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
import pandas as pd
import pytest
import redis

from feature_store.embedded import EmbeddedRedis, free_port
from shared.ids import make_version_id
from tests.support import auth
from tests.support.auth import new_session

pytestmark = pytest.mark.e2e
END = dt.date(2026, 3, 10)  # last generated day: held out from training
TRAIN_END = END - dt.timedelta(days=1)
BIN = Path(sys.executable).parent / "hybridrec"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("e2e")
    with EmbeddedRedis() as server:
        env = {
            **os.environ,
            "HYBRIDREC_DATA_DIR": str(data),
            "HYBRIDREC_REDIS_URL": server.url,
            "HYBRIDREC_RELOAD_INTERVAL_S": "0.1",
            "HYBRIDREC_ALS_FACTORS": "32",
            "HYBRIDREC_PUBLISH_LOCK_TTL_S": "2",  # a publisher killed by a test frees the lock soon
            **auth.auth_env(),  # `serve` refuses to start without keys
        }

        def cli(*args: str, **kw) -> subprocess.CompletedProcess:
            return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300, **kw)

        gen = cli("generate", "--users", "1500", "--items", "600", "--days", "8", "--end-date", END.isoformat())
        assert gen.returncode == 0, gen.stderr
        ing = cli("ingest", str(data / "raw/interactions.parquet"), "--items", str(data / "raw/items.parquet"))
        assert ing.returncode == 0, ing.stderr
        run = cli("run-batch", "--date", TRAIN_END.isoformat())
        assert run.returncode == 0, run.stderr
        pub = cli("publish", "--date", TRAIN_END.isoformat())
        assert pub.returncode == 0, pub.stderr
        port = free_port()
        api = subprocess.Popen([str(BIN), "serve", "--port", str(port)], env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: httpx.get(f"{base}/ready", timeout=1).status_code == 200, "API ready")
            yield {"cli": cli, "base": base, "data": data, "version": pub.stdout.strip(), "redis": server.url}
        finally:
            api.send_signal(signal.SIGINT)
            api.wait(15)


def _wait(cond, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


def test_personalised_results_beat_popularity_on_the_held_out_day(world: dict) -> None:
    events = pd.read_parquet(world["data"] / "raw/interactions.parquet")
    events["day"] = events["ts"].dt.date
    seen = events[events["day"] <= TRAIN_END].groupby("user_id")["item_id"].agg(set)
    future = events[events["day"] == END].groupby("user_id")["item_id"].agg(set)
    users = sorted(u for u in future.index if u in seen.index and future[u] - seen[u])[:300]
    assert len(users) >= 100
    with auth.client(world["base"]) as api:  # keyed: 300 requests in a row are over the per-IP limit
        popular = [i["item_id"] for i in api.get("/recommendations/nobody", params={"k": 10}).json()["items"]]
        hits_api = hits_pop = 0
        for user in users:
            body = api.get(f"/recommendations/{user}", params={"k": 10}).json()
            assert body["strategy"] == "precomputed"
            target = future[user] - seen[user]
            hits_api += bool(target & {i["item_id"] for i in body["items"]})
            hits_pop += bool(target & (set(popular) - seen[user]))
    print(
        f"HitRate@10 on {len(users)} users: personalised {hits_api / len(users):.3f}, popular {hits_pop / len(users):.3f}"
    )
    assert hits_api > 1.5 * hits_pop


def test_a_session_event_changes_the_next_response(world: dict) -> None:
    with auth.client(world["base"]) as api:
        params = {"k": 10, "session_id": new_session(api, "u000001")}
        before = api.get("/recommendations/u000001", params=params).json()
        item = api.get("/recommendations/nobody", params={"k": 50, "category": "c19"}).json()["items"][-1]["item_id"]
        ev = {"session_id": params["session_id"], "user_id": "u000001", "item_id": item, "event_type": "add_to_cart"}
        assert api.post("/events", json=ev).status_code == 202
        after = api.get("/recommendations/u000001", params=params).json()
    assert (before["strategy"], after["strategy"]) == ("precomputed", "hybrid")
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    assert any(i["reason"] == f"similar_to:{item}" for i in after["items"])


def test_co_visitation_neighbours_travel_from_the_batch_run_to_the_api(world: dict) -> None:
    run = world["data"] / f"runs/date={TRAIN_END}"
    params = json.loads((run / "manifest.json").read_text())["params"]
    assert (params["n_covisit"], params["covisit_window"], params["session_gap_minutes"]) == (30, 3, 30.0)
    with np.load(run / "covisit.npz", allow_pickle=False) as cov:
        neighbours = cov["items"]
    items = pd.read_parquet(run / "items.parquet")
    ids, available = items["item_id"].to_numpy(), items["available"].to_numpy()
    j = int(np.argmax((neighbours >= 0).sum(axis=1)))  # the item with the longest list
    expected = [ids[x] for x in neighbours[j] if x >= 0 and available[x]][:10]
    body = httpx.get(f"{world['base']}/items/{ids[j]}/similar", params={"k": 10, "kind": "covisit"}).json()
    assert body["model_version"] == world["version"] and body["kind"] == "covisit"
    assert len(expected) == 10 and [i["item_id"] for i in body["items"]] == expected


def test_a_second_publish_switches_versions_with_no_failed_request(world: dict) -> None:
    cli, base = world["cli"], world["base"]
    statuses: list[int] = []
    # one list per thread: a thread's requests are sequential, so its own sequence must switch once;
    # across threads, a request that took the old model may finish after one that took the new
    seen: list[list[str]] = [[], []]
    stop = threading.Event()
    with auth.client(base) as api:
        session = new_session(api, "u000002")

    def hammer(versions: list[str]) -> None:
        with auth.client(base, timeout=5) as api:
            while not stop.is_set():
                r = api.get("/recommendations/u000002", params={"k": 10, "session_id": session})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])

    threads = [threading.Thread(target=hammer, args=(versions,)) for versions in seen]
    for t in threads:
        t.start()
    try:
        assert cli("run-batch", "--date", END.isoformat()).returncode == 0
        pub = cli("publish", "--date", END.isoformat())
        assert pub.returncode == 0, pub.stderr
        new = pub.stdout.strip()
        assert new != world["version"]
        _wait(lambda: all(v and v[-1] == new for v in seen), "API to serve the new version")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}
    for versions in seen:
        switch = versions.index(new)
        assert set(versions[:switch]) <= {world["version"]} and set(versions[switch:]) == {new}
    world["version"] = new


def test_a_publish_killed_half_way_leaves_the_old_version_serving(world: dict) -> None:
    """Freeze Redis writes (CLIENT PAUSE WRITE) once the new version is partly written, SIGKILL the
    publisher while it is blocked there, and check nothing of it became visible."""
    client = redis.Redis.from_url(world["redis"])
    serving = world["version"]
    day = (END - dt.timedelta(days=2)).isoformat()
    assert world["cli"]("run-batch", "--date", day).returncode == 0
    manifest = json.loads((world["data"] / f"runs/date={day}/manifest.json").read_text())
    new = make_version_id(dt.date.fromisoformat(day), manifest["content_hash"])
    env = {**os.environ, "HYBRIDREC_DATA_DIR": str(world["data"]), "HYBRIDREC_REDIS_URL": world["redis"]}
    env["HYBRIDREC_PUBLISH_BATCH_SIZE"] = "1"  # one round trip per user: a long window to stop it in
    before = client.dbsize()
    # an older day than the serving one: --force, or publish would keep the newer version serving
    proc = subprocess.Popen(
        [str(BIN), "publish", "--date", day, "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while client.dbsize() < before + 100:
        assert time.monotonic() < deadline and proc.poll() is None, "publish never got going"
    client.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    written = sum(1 for _ in client.scan_iter(match=f"hr:v:{new}:u:*", count=10_000))
    assert 0 < written < manifest["n_users"], "the publish was not caught half-way"
    assert not client.exists(f"hr:v:{new}:meta")
    assert client.get("hr:current").decode() == serving
    with auth.client(world["base"]) as api:
        for _ in range(20):
            r = api.get("/recommendations/u000003")
            assert r.status_code == 200 and r.json()["model_version"] == serving
    status = world["cli"]("status")
    assert status.returncode == 0 and "incomplete" in status.stdout
    # the next publish of the same run cleans up and completes
    assert world["cli"]("publish", "--date", day, "--force").returncode == 0
    assert client.get("hr:current").decode() == new
    assert sum(1 for _ in client.scan_iter(match=f"hr:v:{new}:u:*", count=10_000)) == manifest["n_users"]
    client.close()

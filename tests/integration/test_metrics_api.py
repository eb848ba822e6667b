"""/metrics, request ids, JSON request logs and the operator page's data, over real HTTP against a real Redis.

The multiprocess test runs `hybridrec serve --workers 2` as a user would: two uvicorn worker processes
whose metrics prometheus_client merges through the directory `serve` prepares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feature_store.embedded import free_port
from feature_store.redis_store import RedisStore
from shared.config import Settings
from tests.support import auth, tiny
from tests.support.server import serve

pytestmark = pytest.mark.integration
V1 = "2026-01-01.00000000a1"
HYBRIDREC = Path(sys.executable).parent / "hybridrec"


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


@pytest.fixture()
def published(store: RedisStore) -> RedisStore:
    store.versions.write_version(tiny.version_data(V1))
    store.versions.activate(V1)
    return store


@pytest.fixture()
def api(settings: Settings, published: RedisStore) -> Iterator[httpx.Client]:
    with serve(settings.model_copy(update={"reload_interval_s": 0.05})) as base, auth.client(base) as client:
        yield client


def test_metrics_parse_with_latency_histograms_per_tier(api: httpx.Client) -> None:
    session = auth.new_session(api, "u0")
    assert api.get("/recommendations/u0", params={"k": 3}).json()["strategy"] == "precomputed"
    assert api.get("/recommendations/stranger", params={"k": 3}).json()["strategy"] == "popular"
    api.post("/events", json={"session_id": session, "user_id": "u0", "item_id": "b0", "event_type": "click"})
    assert api.get("/recommendations/u0", params={"k": 3, "session_id": session}).json()["strategy"] == "hybrid"
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = families(r.text)
    counts = {
        s.labels["tier"]: s.value
        for s in got["hybridrec_http_request_duration_seconds"]
        if s.name.endswith("_count") and s.labels["route"] == "/recommendations/{user_id}"
    }
    assert counts == {"precomputed": 1, "popular": 1, "hybrid": 1}
    buckets = [
        s
        for s in got["hybridrec_http_request_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["tier"] == "hybrid"
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1
    assert {s.labels["strategy"]: s.value for s in got["hybridrec_requests"]} == counts
    assert {s.labels["flag"]: s.value for s in got["hybridrec_request_flags"]} == {"unknown_user": 1}
    assert {s.labels["outcome"]: s.value for s in got["hybridrec_events"]} == {"accepted": 1}
    assert [s.labels["version"] for s in got["hybridrec_model_info"] if s.value == 1] == [V1]
    assert got["hybridrec_events_backlog"][0].value == 1
    assert got["hybridrec_model_age_seconds"][0].value > 0
    assert api.get("/metrics", headers=auth.headers(auth.READER)).status_code == 403


def test_request_id_is_honoured_or_made(api: httpx.Client) -> None:
    assert api.get("/health", headers={"x-request-id": "shop-42.a:b"}).headers["x-request-id"] == "shop-42.a:b"
    made = api.get("/health", headers={"x-request-id": "no spaces; {braces} or a newline\\x"}).headers["x-request-id"]
    assert len(made) == 32 and made != api.get("/health").headers["x-request-id"]
    assert api.get("/nowhere").headers["x-request-id"]  # a 404 carries one too


def test_ops_data_sums_the_minutes_and_shows_versions_and_map(api: httpx.Client, published: RedisStore) -> None:
    published.versions.record_gate({"outcome": "passed", "partition": "2026-01-01", "message": "ok", "decided_at": 1})
    for _ in range(3):
        api.get("/recommendations/u0")
    time.sleep(0.3)  # a few flush intervals (reload_interval_s)
    data = api.get("/ops/data").json()
    assert data["serving"]["version"] == V1
    assert data["versions"]["current"]["version"] == V1 and data["versions"]["previous"] is None
    assert data["versions"]["current"]["n_items"] == 6
    assert data["gate"]["decision"]["outcome"] == "passed"
    assert sum(data["window"]["tiers"]["precomputed"]) == 3
    assert data["window"]["latency"]["precomputed"]["count"] == 3
    assert data["backlog"]["events_waiting"] == 0
    emap = api.get("/ops/embedding", params={"points": 4}).json()
    assert emap["version"] == V1 and len(emap["points"]) == 4 and emap["categories"] == ["A", "B"]
    assert [p[3] for p in emap["points"]] == ["b0", "b1", "b2", "a2"]  # the most popular first
    a0 = next(p for p in api.get("/ops/embedding").json()["points"] if p[3] == "a0")
    b0 = next(p for p in api.get("/ops/embedding").json()["points"] if p[3] == "b0")
    assert (a0[0] > 0) != (b0[0] > 0)  # the two categories fall on opposite sides of the first axis
    for path in ("/ops/data", "/ops/embedding", "/demo/users"):
        assert api.get(path, headers=auth.headers(auth.WRITER)).status_code == 403
    assert api.get("/demo/users").json() == {"model_version": V1, "user_ids": ["u0", "u1", "u2"]}


def test_pages_are_served_with_a_strict_policy(api: httpx.Client) -> None:
    for path in ("/demo", "/ops"):
        r = httpx.get(f"{api.base_url}{path}")  # no key needed for the page itself
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert httpx.get(f"{api.base_url}/static/vendor/chart.umd.min.js").text.startswith("/*!\n * Chart.js v4.6.1")
    shelves = api.get("/items", params={"per_category": 2}).json()
    assert shelves["categories"] == [
        {"category": "A", "items": [{"item_id": "a2", "title": "Title a2"}, {"item_id": "a1", "title": "Title a1"}]},
        {"category": "B", "items": [{"item_id": "b0", "title": "Title b0"}, {"item_id": "b1", "title": "Title b1"}]},
    ]


def _wait_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if all(httpx.get(f"{base}/ready", timeout=2).status_code == 200 for _ in range(6)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready:\n{log.read_text()}")


@pytest.mark.slow
def test_serve_with_two_workers_sums_their_metrics_and_logs_json(
    tmp_path: Path, redis_url: str, published: RedisStore
) -> None:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a dead server's file: serve must clear it
    port, log = free_port(), tmp_path / "api.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDREC_", "PROMETHEUS_"))}
    env |= auth.auth_env() | {
        "HYBRIDREC_REDIS_URL": redis_url,
        "HYBRIDREC_DATA_DIR": str(tmp_path / "data"),
        "HYBRIDREC_METRICS_DIR": str(metrics_dir),
        "HYBRIDREC_LOG_FORMAT": "json",
        "HYBRIDREC_RELOAD_INTERVAL_S": "0.2",
        # the same request 40 times: with the response cache on, all but each worker's first are "cached"
        "HYBRIDREC_RESPONSE_CACHE": "false",
    }
    cmd = [str(HYBRIDREC), "serve", "--port", str(port), "--workers", "2"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log)
        n = 40
        for i in range(n):  # a new connection each: the kernel spreads them over both workers
            r = httpx.get(f"{base}/recommendations/u0?k=3", headers={"x-request-id": f"req-{i}"})
            assert r.status_code == 200 and r.headers["x-request-id"] == f"req-{i}"
        text = httpx.get(f"{base}/metrics", headers=auth.headers()).text
        got = families(text)
        assert [s.value for s in got["hybridrec_requests"]] == [n]
        count = [
            s.value
            for s in got["hybridrec_http_request_duration_seconds"]
            if s.name.endswith("_count") and s.labels["tier"] == "precomputed"
        ]
        assert count == [n]
        pids = {p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2 and "999999.db" not in pids, pids
        # a second server given the same directory would delete these live files: it refuses to start
        other = [str(HYBRIDREC), "serve", "--port", str(free_port())]
        refused = subprocess.run(other, env=env, capture_output=True, text=True, timeout=60)
        said = " ".join((refused.stdout + refused.stderr).split())  # the console wraps long lines
        assert refused.returncode == 2, said
        assert f"HYBRIDREC_METRICS_DIR {metrics_dir} is in use by a running `hybridrec serve` (pid {proc.pid})" in said
        assert {p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")} >= pids
        assert families(httpx.get(f"{base}/metrics", headers=auth.headers()).text)["hybridrec_requests"][0].value == n
    finally:
        proc.send_signal(2)
        proc.wait(20)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = {line["request_id"]: line for line in lines if line["logger"] == "hybridrec.request"}
    assert set(requests) >= {f"req-{i}" for i in range(n)}
    one = requests["req-7"]
    assert one["route"] == "/recommendations/{user_id}" and one["tier"] == "precomputed"
    assert one["version"] == V1 and one["status"] == 200 and one["flags"] == [] and one["latency_ms"] > 0
    assert "u0" not in json.dumps(one)  # the path's user id stays out of the log

"""The system under test for bench/online_latency.py: data, a fresh Redis, the API process, live sessions.

Everything here is started by the benchmark and stopped by it (context managers), on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

import online_reranker
from common import REPO_DIR, DataSpec, build_dataset, console, step

HOST = "127.0.0.1"
POST_BATCH = 100  # events per POST /events when seeding (the API accepts up to 1000)


def prepare_run(
    spec: DataSpec, data_dir: Path, reuse: bool, timings: dict[str, float], reranker_sessions: int, seed: int
) -> tuple[dict, Path, dict]:
    """Data set + batch run for ``spec`` in ``data_dir`` whose version carries a learned re-ranker.

    A run without ``params.reranker`` is built in two passes: ``run_batch`` without a tuning file, a
    re-ranker trained on it (bench/online_reranker.py), ``run_batch`` again, which publishes it. ALS
    trains with Settings both times, so the second run's model is the first's (checked, recorded).
    With ``reuse``, a complete run (every artifact of today's pipeline) that has a re-ranker is reused.
    Returns (data set info, run dir, re-ranker summary).
    """
    from batch.artifacts import HASHED_FILES, run_dir_for
    from batch.pipeline import run_batch
    from shared.config import get_settings

    info = build_dataset(spec, data_dir, reuse)
    timings.update({f"data_{k}": v for k, v in info["timings_s"].items()})
    settings = get_settings(data_dir=data_dir)
    run_dir = run_dir_for(settings.runs_dir, spec.end)
    complete = all((run_dir / f).exists() for f in (*HASHED_FILES, "manifest.json"))
    existing = online_reranker.manifest_reranker(run_dir) if complete else None
    if reuse and existing is not None:
        console.print(f"[green]✓[/] reusing batch run {run_dir} (with its re-ranker)")
        online_reranker.describe(existing)
        return info, run_dir, {"reused": True, **online_reranker.summary(existing)}

    def log(name: str, s: float) -> None:
        console.print(f"    {name:<14} {s:6.2f}s")

    settings.tuning_path.unlink(missing_ok=True)  # a stale re-ranker or blend must not reach pass 1
    if reuse and complete:
        console.print(f"[green]✓[/] reusing batch run {run_dir} (it has no re-ranker yet)")
    else:
        with step("run_batch", timings, f"run_batch {spec.end} (pass 1: no re-ranker)"):
            run_batch(settings, spec.end, log=log)
    model_before = online_reranker.file_sha256(run_dir / "model.npz")
    what = f"train the bench re-ranker on {reranker_sessions:,} sessions of the last day (in-sample)"
    with step("train_reranker", timings, what):
        trained = online_reranker.train_bench_reranker(run_dir, data_dir, spec.end_date, reranker_sessions, seed)
    online_reranker.describe(trained)
    with step("run_batch_reranker", timings, f"run_batch {spec.end} (pass 2: publishes the re-ranker)"):
        run_batch(settings, spec.end, log=log)
    same = online_reranker.file_sha256(run_dir / "model.npz") == model_before
    if online_reranker.manifest_reranker(run_dir) != trained:
        raise RuntimeError(f"{run_dir}/manifest.json does not carry the re-ranker just written")
    console.print(f"  model.npz of pass 2 {'is identical to' if same else '[red]differs from[/]'} pass 1's")
    return info, run_dir, {"reused": False, "model_identical_to_pass_1": same, **online_reranker.summary(trained)}


def publish(run_dir: Path, data_dir: Path, redis_url: str, timings: dict[str, float]) -> dict:
    from batch.publish import publish_run
    from feature_store.redis_store import RedisStore
    from shared.config import get_settings

    settings = get_settings(data_dir=data_dir, redis_url=redis_url)
    with RedisStore.from_settings(settings) as store, step("publish", timings, "publish into the fresh Redis"):
        result = publish_run(run_dir, store.versions, settings)
    console.print(f"  {result.summary()}")
    return {"version": result.version, "n_users": result.n_users, "n_items": result.n_items, "seconds": result.seconds}


@dataclass(frozen=True)
class Api:
    base: str  # http://127.0.0.1:<port>
    pid: int  # uvicorn's supervisor; it leads a session, so this is also the workers' process group


@contextlib.contextmanager
def api_server(
    redis_url: str,
    data_dir: Path,
    port: int,
    workers: int,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Api]:
    """uvicorn with ``workers`` processes in its own session; yields where it is, stops it on exit.

    Access logging is off: at hundreds of requests per second it would measure the terminal.
    ``extra_env``: more environment for the API (``HYBRIDREC_*`` settings), over the bench's own.
    """
    env = {**os.environ, "HYBRIDREC_REDIS_URL": redis_url, "HYBRIDREC_DATA_DIR": str(data_dir)}
    # The bench seeds sessions with the data's own session ids and drives one client IP at hundreds of
    # requests/s: auth off (client-chosen session ids) and no rate limit. What auth costs per request is
    # measured in process (README "API security").
    env |= {"HYBRIDREC_AUTH": "off", "HYBRIDREC_RATE_LIMIT_IP_PER_S": "0", **(extra_env or {})}
    cmd = [sys.executable, "-m", "uvicorn", "online.app:app_from_env", "--factory", "--workers", str(workers)]
    cmd += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base = f"http://{HOST}:{port}"
            wait_ready(base, proc, log_path)
            yield Api(base, proc.pid)
        finally:
            stop_server(proc)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 120.0) -> None:
    """Until 20 consecutive /ready on fresh connections return 200: with several workers accepting on
    one socket, a single 200 says only that one of them has loaded the model."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the API exited with code {proc.returncode} before it was ready:\n{tail}")
        ok = False
        with contextlib.suppress(httpx.HTTPError):
            ok = httpx.get(f"{base}/ready", timeout=2).status_code == 200
        streak = streak + 1 if ok else 0
        if streak >= 20:
            return
        time.sleep(0.02 if ok else 0.2)
    raise RuntimeError(f"the API at {base} was not ready after {timeout_s:.0f}s; see {log_path}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to uvicorn's supervisor (it stops its workers), SIGKILL to the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # orphaned workers of a supervisor that died
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class SeededSession:
    user_id: str  # the data's own user (known) or an id the data never had (unknown)
    session_id: str
    known: bool


def pick_sessions(data_dir: Path, end: str, n: int, per_session: int, seed: int) -> list[dict]:
    """``n`` real sessions of the last days with at least ``per_session`` events, first events of each.

    Returns event dicts for POST /events, session after session, events in time order; the first half
    of the sessions keep their user, the second half get user ids that are not in the data.
    """
    from batch.dataset import load_interactions
    from shared.ids import parse_date

    day = parse_date(end)
    for window in (1, 3, 7, 30):  # the last day is enough at the default sizes; widen if not
        df = load_interactions(data_dir / "interactions", day, window)
        df = df[df["session_id"].notna()]
        sizes = df.groupby("session_id", sort=True).size()
        eligible = sizes.index[sizes >= per_session].to_numpy()
        if len(eligible) >= n:
            break
    else:
        raise RuntimeError(f"only {len(eligible)} sessions with >= {per_session} events; lower --sessions")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=n, replace=False)
    head = df[df["session_id"].isin(chosen)].groupby("session_id", sort=False).head(per_session)
    order = pd.Series(np.arange(n), index=chosen)
    head = head.assign(_o=order.loc[head["session_id"]].to_numpy()).sort_values(["_o", "ts"], kind="stable")
    events = []
    for sid, user, item, etype, o in zip(
        head["session_id"], head["user_id"], head["item_id"], head["event_type"], head["_o"], strict=True
    ):
        known = o < n // 2
        events.append(
            {
                "session_id": sid,
                "item_id": item,
                "event_type": etype,
                "user_id": user if known else f"bench-anon-{o:05d}",
            }
        )
    return events


def seed_sessions(base: str, events: list[dict], timings: dict[str, float]) -> dict:
    """POST the events in batches of POST_BATCH through the real API; fail loudly on anything but 202."""
    latencies = []
    what = f"seed {len(events):,} live events through POST /events"
    with step("seed_sessions", timings, what), httpx.Client(timeout=10) as client:
        for start in range(0, len(events), POST_BATCH):
            batch = events[start : start + POST_BATCH]
            t = time.perf_counter()
            resp = client.post(f"{base}/events", json=batch)
            latencies.append(time.perf_counter() - t)
            if resp.status_code != 202 or resp.json().get("accepted") != len(batch):
                raise RuntimeError(f"POST /events answered {resp.status_code}: {resp.text[:300]}")
    lat = np.array(latencies) * 1000
    return {
        "events": len(events),
        "posts": len(latencies),
        "events_per_post": POST_BATCH,
        "events_per_s": round(len(events) / lat.sum() * 1000, 1),
        "post_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "post_max_ms": round(float(lat.max()), 2),
    }


def sessions_of(events: list[dict]) -> list[SeededSession]:
    seen: dict[str, SeededSession] = {}
    for e in events:
        if e["session_id"] not in seen:
            known = not e["user_id"].startswith("bench-anon-")
            seen[e["session_id"]] = SeededSession(e["user_id"], e["session_id"], known)
    return list(seen.values())


def run_user_ids(run_dir: Path) -> list[str]:
    """User ids of the published run (row order of users.parquet)."""
    return pd.read_parquet(run_dir / "users.parquet")["user_id"].astype(str).tolist()


def redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server").get("redis_version"))
    finally:
        client.close()

"""The system under test for bench/online_latency.py: data, a fresh Redis, the API process, live sessions.

Everything here is started by the benchmark and stopped by it (context managers), on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


@dataclass(frozen=True)
class Auth:
    """How the bench runs the product's API security (README "API security").

    ``on`` (the product's default): writes need an API key (one made for this run), every session id is
    issued by ``POST /sessions`` and its HMAC is checked on every read; reads go without a key (they are
    open by default). ``off``: no keys, any session id. Either way the rate limits are off: one client
    IP drives hundreds of requests per second, which the per-IP limit exists to refuse.
    """

    mode: str  # "on" | "off"
    key: str | None = None

    @classmethod
    def make(cls, mode: str) -> Auth:
        from shared.apikeys import new_api_key

        return cls(mode, new_api_key() if mode == "on" else None)

    def env(self) -> dict[str, str]:
        from shared.apikeys import key_entry, new_session_secret

        env = {"HYBRIDREC_AUTH": self.mode, "HYBRIDREC_RATE_LIMIT_IP_PER_S": "0", "HYBRIDREC_RATE_LIMIT_KEY_PER_S": "0"}
        if self.key is not None:
            env["HYBRIDREC_API_KEYS"] = key_entry(self.key, ["write-events", "read-recs", "admin"])
            env["HYBRIDREC_SESSION_SECRET"] = new_session_secret()
        return env

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"} if self.key else {}

    def describe(self) -> str:
        if self.mode == "on":
            return (
                "auth on: writes with an API key, session ids issued by POST /sessions and verified (HMAC) on "
                "every read, reads without a key (open by default); rate limits off"
            )
        return "auth off (HYBRIDREC_AUTH=off): no keys, session ids not verified; rate limits off"


@contextlib.contextmanager
def api_server(
    redis_url: str,
    data_dir: Path,
    port: int,
    workers: int,
    log_path: Path,
    env_extra: dict[str, str] | None = None,
    app: str = "online.app:app_from_env",
    app_dir: Path | None = None,
    ready_path: str = "/ready",
) -> Iterator[Api]:
    """uvicorn with ``workers`` processes in its own session; yields where it is, stops it on exit.

    Access logging is off: at hundreds of requests per second it would measure the terminal.
    ``env_extra``: more environment for the API (``HYBRIDREC_*`` settings), over the bench's own.
    ``app``/``app_dir``: the factory to serve (the product by default; bench/floor_app.py for the floor),
    ready once ``ready_path`` answers 200.
    """
    env = {**os.environ, "HYBRIDREC_REDIS_URL": redis_url, "HYBRIDREC_DATA_DIR": str(data_dir), **(env_extra or {})}
    if app == "online.app:app_from_env" and "PROMETHEUS_MULTIPROC_DIR" not in env:
        # as `hybridrec serve` runs it (cli/serve.py): metrics in per-worker files, merged at scrape time
        metrics = log_path.parent / f"metrics-{port}"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--workers", str(workers)]
    cmd += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base = f"http://{HOST}:{port}"
            wait_ready(base, proc, log_path, ready_path)
            yield Api(base, proc.pid)
        finally:
            stop_server(proc)


def wait_ready(
    base: str, proc: subprocess.Popen[bytes], log_path: Path, path: str = "/ready", timeout_s: float = 120.0
) -> None:
    """Until 20 consecutive GETs of ``path`` on fresh connections return 200: with several workers
    accepting on one socket, a single 200 says only that one of them has loaded the model."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the API exited with code {proc.returncode} before it was ready:\n{tail}")
        ok = False
        with contextlib.suppress(httpx.HTTPError):
            ok = httpx.get(f"{base}{path}", timeout=2).status_code == 200
        streak = streak + 1 if ok else 0
        if streak >= 20:
            return
        time.sleep(0.02 if ok else 0.2)
    raise RuntimeError(f"the API at {base} was not ready after {timeout_s:.0f}s; see {log_path}")


def worker_pids(supervisor: int) -> list[int]:
    """The worker processes of a uvicorn supervisor (its children), for a profiler to attach to."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    with contextlib.suppress(OSError):
        pids = [int(p) for p in children.read_text().split()]
        return [p for p in pids if b"resource_tracker" not in _cmdline(p)]  # multiprocessing's, not a worker
    return []


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


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


@dataclass
class BenchSession:
    """One live session of the bench: its first events of the data, replayed through POST /events.

    ``user_id``: the data's own user (known) or, for an anonymous visitor, None: its events carry no
    user, its session is issued for nobody, and its requests name ``path_user`` (an id the data never had).
    """

    data_session: str
    user_id: str | None
    path_user: str
    events: list[dict]
    session_id: str = ""  # what the API knows it by: issued by POST /sessions (auth on) or the data's id

    @property
    def known(self) -> bool:
        return self.user_id is not None


def pick_sessions(data_dir: Path, end: str, n: int, per_session: int, seed: int) -> list[BenchSession]:
    """``n`` real sessions of the last days with at least ``per_session`` events, first events of each,
    in time order. The first half keep their (known) user; the second half are anonymous visitors."""
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
    sessions: dict[int, BenchSession] = {}
    for sid, user, item, etype, o in zip(
        head["session_id"], head["user_id"], head["item_id"], head["event_type"], head["_o"], strict=True
    ):
        known = o < n // 2
        s = sessions.setdefault(
            o, BenchSession(str(sid), str(user) if known else None, str(user) if known else f"bench-anon-{o:05d}", [])
        )
        s.events.append({"item_id": str(item), "event_type": str(etype)})
    return [sessions[o] for o in sorted(sessions)]


def seed_sessions(base: str, sessions: list[BenchSession], auth: Auth, timings: dict[str, float]) -> dict:
    """Give each session its id (``POST /sessions`` with auth on, the data's own id with it off), then
    POST its events in batches of POST_BATCH through the real API; fail loudly on anything but 201/202."""
    latencies = []
    n_events = sum(len(s.events) for s in sessions)
    what = f"seed {len(sessions):,} sessions, {n_events:,} live events through POST /events ({auth.mode=})"
    with step("seed_sessions", timings, what), httpx.Client(timeout=10, headers=auth.headers()) as client:
        for s in sessions:
            if auth.mode == "on":
                resp = client.post(f"{base}/sessions", json={"user_id": s.user_id} if s.user_id else {})
                if resp.status_code != 201:
                    raise RuntimeError(f"POST /sessions answered {resp.status_code}: {resp.text[:300]}")
                s.session_id = resp.json()["session_id"]
            else:
                s.session_id = s.data_session
        events = [
            {**e, "session_id": s.session_id, **({"user_id": s.user_id} if s.user_id else {})}
            for s in sessions
            for e in s.events
        ]
        for start in range(0, len(events), POST_BATCH):
            batch = events[start : start + POST_BATCH]
            t = time.perf_counter()
            resp = client.post(f"{base}/events", json=batch)
            latencies.append(time.perf_counter() - t)
            if resp.status_code != 202 or resp.json().get("accepted") != len(batch):
                raise RuntimeError(f"POST /events answered {resp.status_code}: {resp.text[:300]}")
    lat = np.array(latencies) * 1000
    return {
        "sessions": len(sessions),
        "events": len(events),
        "posts": len(latencies),
        "events_per_post": POST_BATCH,
        "events_per_s": round(len(events) / lat.sum() * 1000, 1),
        "post_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "post_max_ms": round(float(lat.max()), 2),
    }


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

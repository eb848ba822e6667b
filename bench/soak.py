"""Soak: the API at a fixed open-loop rate for many minutes; worker memory and p99 minute by minute.

    .venv/bin/python bench/soak.py [--reuse] [--minutes 10] [--rate R | --fraction 0.5]

Issue 9's acceptance: "a 10-minute soak at half the measured max rate: worker RSS growth under 10% and
flat p99". Steps: the same data set, batch run, Redis and product server as bench/online_latency.py
(``online_env``: 100k users x 20k items, 2 uvicorn workers, auth on, product defaults, caches included),
live sessions seeded through the API, then:

* the maximum: ``wrk -t1 -c32`` for ``--wrk-seconds`` on the request mix (unless ``--rate`` is given),
  and the soak rate = ``--fraction`` of it;
* ``--minutes`` one-minute open-loop slices back to back (bench/loadgen.py; latency from the scheduled
  send time), a mix of known users with a live session (re-ranked), known users without one
  (precomputed) and anonymous sessions; meanwhile a second client keeps writing events
  (``POST /events``, ``--events-per-s``) into the seeded sessions, so session lists, seen sets and the
  stream keep changing, and the exact response cache keeps being invalidated;
* every 5 s: VmRSS of each worker process (and of Redis, and Redis ``used_memory``).

Reported: per minute p50/p99/errors/achieved rate and mean worker RSS; RSS growth = last minute's mean
over the first minute's mean (the first minute warms caches and allocators: it is the baseline), and
p99 of the last three minutes over the first three. Results: a table and bench/results/soak.json.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import numpy as np

import online_env
import online_report
import wrk_probe
from common import (
    CACHE_DIR,
    RESULTS_DIR,
    DataSpec,
    console,
    fmt_ms,
    group_cpu_s,
    interrupt_on_signals,
    machine_busy_s,
    machine_info,
    run_child,
    run_header,
    write_json,
)
from online_env import Auth, BenchSession

SAMPLE_EVERY_S = 5.0
MIX = (("known_session", 0.5), ("user", 0.3), ("anon_session", 0.2))


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def build_paths(user_ids: list[str], sessions: list[BenchSession], k: int, n: int, seed: int) -> list[str]:
    known = [s for s in sessions if s.known]
    anon = [s for s in sessions if not s.known]
    rng = random.Random(seed)

    def rec(user: str, session: str | None) -> str:
        query = {"k": k} | ({"session_id": session} if session else {})
        return f"/recommendations/{urllib.parse.quote(user, safe='')}?{urllib.parse.urlencode(query)}"

    kinds, weights = zip(*MIX, strict=True)
    out = []
    for kind in rng.choices(kinds, weights, k=n):
        if kind == "user":
            out.append(rec(rng.choice(user_ids), None))
        else:
            s = rng.choice(known if kind == "known_session" else anon)
            out.append(rec(s.path_user, s.session_id))
    return out


class Sampler(threading.Thread):
    """VmRSS of the workers and Redis every ``SAMPLE_EVERY_S`` seconds, with the wall time."""

    def __init__(self, workers: list[int], redis_pid: int, redis_url: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.workers, self.redis_pid = workers, redis_pid
        self.client = redis.Redis.from_url(redis_url)
        self.samples: list[dict] = []
        self.stop_event = threading.Event()

    def sample(self) -> None:
        rss = {str(p): rss_mib(p) for p in self.workers}
        used = int(self.client.info("memory")["used_memory"])
        self.samples.append(
            {
                "t": time.time(),
                "workers_mib": rss,
                "redis_rss_mib": rss_mib(self.redis_pid),
                "redis_used_mib": used / 2**20,
            }
        )

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_EVERY_S)


class EventWriter(threading.Thread):
    """Keeps POSTing one-event batches into the seeded sessions at ``rate`` per second."""

    def __init__(self, base: str, sessions: list[BenchSession], items: list[str], auth: Auth, rate: float, seed: int):
        super().__init__(daemon=True)
        self.base, self.sessions, self.items, self.auth, self.rate = base, sessions, items, auth, rate
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.status: dict[str, int] = {}
        self.sent = 0

    def run(self) -> None:
        if self.rate <= 0:
            return
        start = time.monotonic()
        with httpx.Client(timeout=10, headers=self.auth.headers()) as client:
            while not self.stop_event.is_set():
                s = self.rng.choice(self.sessions)
                event = {"item_id": self.rng.choice(self.items), "event_type": "view", "session_id": s.session_id}
                if s.user_id:
                    event["user_id"] = s.user_id
                try:
                    code = str(client.post(f"{self.base}/events", json=[event]).status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                self.status[code] = self.status.get(code, 0) + 1
                self.sent += 1
                due = start + self.sent / self.rate
                self.stop_event.wait(max(0.0, due - time.monotonic()))


def open_loop(port: int, paths: list[str], rate: float, seconds: float, tmp: Path, connections: int) -> dict:
    spec = {"port": port, "paths": paths, "rate": rate, "duration_s": seconds, "warmup_s": 0.0}
    spec["connections"] = connections
    spec_path, out_path = tmp / "spec.json", tmp / "out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).with_name("loadgen.py")), str(spec_path), str(out_path)]
    child = run_child(cmd, timeout_s=seconds + 60)
    if child.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"the load generator exited with {child.returncode}")
    return json.loads(out_path.read_text())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000, help="target interaction count of the data set")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--rate", type=float, default=None, help="req/s; default: --fraction of wrk's maximum")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--wrk-seconds", type=int, default=10)
    p.add_argument("--wrk-connections", type=int, default=32)
    p.add_argument("--events-per-s", type=float, default=20.0, help="POST /events rate during the soak")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--sessions", type=int, default=2_000)
    p.add_argument("--session-events", type=int, default=5)
    p.add_argument("--reranker-sessions", type=int, default=1_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--reuse", action="store_true", help="reuse the cached data set and batch run")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "soak.json")
    args = p.parse_args(argv)
    if not 1 <= args.minutes <= 60 or not 0 < args.fraction <= 1:
        p.error("need 1 <= --minutes <= 60 and 0 < --fraction <= 1")
    if args.rate is None and not wrk_probe.available():
        p.error("wrk is not on PATH: give --rate")
    return args


def summarise(minutes: list[dict], samples: list[dict], t_marks: list[float]) -> dict:
    """Per minute: latency and the mean worker RSS of the samples taken during it."""
    rows = []
    for i, (raw, t0, t1) in enumerate(zip(minutes, t_marks, t_marks[1:], strict=False)):
        s = online_report.summarise_rate([raw], raw["rate"])
        inside = [x for x in samples if t0 <= x["t"] < t1]
        worker_sum = [sum(v for v in x["workers_mib"].values() if v) for x in inside]
        rows.append(
            {
                "minute": i + 1,
                "achieved_rps": s["achieved_rps"],
                "p50_ms": s["latency_ms"]["p50"],
                "p99_ms": s["latency_ms"]["p99"],
                "errors": s["non_200"] + sum(s["transport_errors"].values()),
                "server_cpu_ms_per_request": s["server_cpu_ms_per_request"],
                "other_processes_cores": s["foreign_cpu_cores_per_round"][0],
                "strategies": s["strategies"],
                "workers_rss_mib": round(float(np.mean(worker_sum)), 1) if worker_sum else None,
                "redis_used_mib": round(float(np.mean([x["redis_used_mib"] for x in inside])), 1) if inside else None,
            }
        )
    first, last = rows[0], rows[-1]
    n3 = min(3, len(rows) // 2) or 1
    head = float(np.median([r["p99_ms"] for r in rows[:n3]]))
    tail = float(np.median([r["p99_ms"] for r in rows[-n3:]]))
    growth = (last["workers_rss_mib"] / first["workers_rss_mib"] - 1) if first["workers_rss_mib"] else None
    x = np.arange(1, len(rows) + 1, dtype=float)
    slope = float(np.polyfit(x, [r["p99_ms"] for r in rows], 1)[0]) if len(rows) > 1 else 0.0
    return {
        "p99_slope_ms_per_minute": round(slope, 3),  # least squares over the minutes
        "minutes": rows,
        "rss_growth": round(growth, 4) if growth is not None else None,
        "p99_first_minutes_ms": round(head, 2),
        "p99_last_minutes_ms": round(tail, 2),
        "p99_last_over_first": round(tail / head, 3) if head else None,
        "minutes_compared_for_p99": n3,
        "errors": sum(r["errors"] for r in rows),
    }


def run(args: argparse.Namespace) -> dict:
    from feature_store.embedded import EmbeddedRedis, free_port

    machine = machine_info()
    spec = DataSpec.for_events(args.users, args.items, args.events, args.days, args.seed)
    data_dir = CACHE_DIR / f"online-{spec.key()}"
    timings: dict[str, float] = {}
    info, run_dir, reranker = online_env.prepare_run(
        spec, data_dir, args.reuse, timings, args.reranker_sessions, args.seed
    )
    user_ids = online_env.run_user_ids(run_dir)
    import pandas as pd

    items = pd.read_parquet(run_dir / "items.parquet")["item_id"].astype(str).tolist()
    sessions = online_env.pick_sessions(data_dir, spec.end_date, args.sessions, args.session_events, args.seed)
    auth = Auth.make("on")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        published = online_env.publish(run_dir, data_dir, redis.url, timings)
        port, log_path = free_port(), data_dir / "api-soak.log"
        api = stack.enter_context(online_env.api_server(redis.url, data_dir, port, args.workers, log_path, auth.env()))
        base = f"http://{online_env.HOST}:{port}"
        seeding = online_env.seed_sessions(base, sessions, auth, timings)
        workers = online_env.worker_pids(api.pid)
        console.print(f"[green]✓[/] product at {base}, workers {workers}")
        n_paths = 50_000
        paths = build_paths(user_ids, sessions, args.k, n_paths, args.seed)
        wrk = None
        rate = args.rate
        if rate is None:
            wrk = wrk_probe.probe(port, paths[: wrk_probe.MAX_PATHS], args.wrk_seconds, args.wrk_connections)
            rate = round(wrk["rps"] * args.fraction, -1)
            console.print(f"  wrk maximum {wrk['rps']:.0f} req/s -> soak at {rate:.0f} req/s")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-soak-")))
        sampler = Sampler(workers, redis.proc.pid, redis.url)  # type: ignore[union-attr]
        writer = EventWriter(base, sessions, items, auth, args.events_per_s, args.seed)
        minutes: list[dict] = []
        marks = [time.time()]
        busy0, wall0 = machine_busy_s(), time.perf_counter()
        sampler.start()
        writer.start()
        try:
            offset = 0
            for m in range(args.minutes):
                n = int(rate * 60) + 1
                chunk = [paths[(offset + i) % n_paths] for i in range(n)]
                offset = (offset + n) % n_paths
                serving = {api.pid, redis.proc.pid}  # type: ignore[union-attr]
                cpu0, busy_m0, t_m0 = group_cpu_s(serving), machine_busy_s(), time.perf_counter()
                child_cpu0 = group_cpu_s({os.getpgid(0)})
                raw = open_loop(port, chunk, rate, 60.0, tmp, args.connections)
                server_cpu = group_cpu_s(serving) - cpu0
                ours = server_cpu + group_cpu_s({os.getpgid(0)}) - child_cpu0 + raw.get("client_cpu_s", 0.0)
                raw["rate"] = rate
                raw["server_cpu_s_per_request"] = server_cpu / max(1, raw["n"])
                raw["foreign_cpu_cores"] = max(0.0, machine_busy_s() - busy_m0 - ours) / (time.perf_counter() - t_m0)
                minutes.append(raw)
                marks.append(time.time())
                last = sampler.samples[-1] if sampler.samples else {}
                total = sum(v for v in last.get("workers_mib", {}).values() if v)
                console.print(
                    f"  minute {m + 1:2d}/{args.minutes} p99 {fmt_ms(online_report.slice_p99(raw)):>6} ms, "
                    f"workers {total:6.1f} MiB, events posted {writer.sent:,}"
                )
        finally:
            writer.stop_event.set()
            sampler.stop_event.set()
            writer.join(15)
            sampler.join(15)
        busy_cores = (machine_busy_s() - busy0) / (time.perf_counter() - wall0)
    summary = summarise(minutes, sampler.samples, marks)
    return {
        **run_header("soak", args, machine),
        "auth": auth.describe(),
        "mix": dict(MIX),
        "dataset": {**info, "cache_dir": str(data_dir)},
        "published": published,
        "reranker": reranker,
        "seeding": seeding,
        "setup_timings_s": timings,
        "wrk_max": wrk,
        "rate": rate,
        "events_posted": writer.sent,
        "events_status": writer.status,
        "machine_busy_cores_during_soak": round(busy_cores, 2),
        "samples": sampler.samples,
        **summary,
    }


def print_table(payload: dict) -> None:
    from rich.table import Table

    t = Table(title=f"soak at {payload['rate']:.0f} req/s ({payload['params']['minutes']} min)")
    cols = ("minute", "achieved req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req", "other cores", "workers RSS MiB")
    for col in (*cols, "Redis used MiB"):
        t.add_column(col, justify="right")
    for r in payload["minutes"]:
        t.add_row(
            str(r["minute"]), f"{r['achieved_rps']:.0f}", fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), str(r["errors"]),
            f"{r['server_cpu_ms_per_request']:.2f}", f"{r['other_processes_cores']:.2f}", f"{r['workers_rss_mib']}",
            f"{r['redis_used_mib']}",
        )  # fmt: skip
    console.print(t)
    console.print(
        f"worker RSS growth {payload['rss_growth']:+.1%} (last minute over first); p99 {payload['p99_first_minutes_ms']} "
        f"-> {payload['p99_last_minutes_ms']} ms (median of the first/last {payload['minutes_compared_for_p99']} "
        f"minutes, x{payload['p99_last_over_first']}; least-squares slope {payload.get('p99_slope_ms_per_minute')} "
        f"ms/min); errors {payload['errors']}; events posted "
        f"{payload['events_posted']:,} {payload['events_status']}; machine busy {payload['machine_busy_cores_during_soak']} cores"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    try:
        payload = run(args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: every server and Redis stopped")
        return 130
    write_json(args.out, payload)
    print_table(payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency of the online API at a fixed request rate, per request mix, against a floor measured in the same run.

    .venv/bin/python bench/online_latency.py [--users 100000 --items 20000 --rate 200 --duration 20
                                              --workers 2 --reuse]

Steps: build (or reuse) a data set and batch run under bench/.cache/, start a fresh redis-server
(no persistence) and publish the run into it, start ``uvicorn online.app:app_from_env --factory
--workers N`` as a separate process, seed live sessions through POST /events, then measure every mix
with the open-loop generator (bench/loadgen.py, its own process) at ``--rate``, and, when ``wrk`` is on
PATH, with a closed-loop throughput probe. The floor is ``GET /ready`` (one Redis GET and an in-memory
check): the cheapest route through the same server, client and machine, so "p99 / floor p99" says
what the recommendation work adds.

The machine is shared: other processes come and go. So the ``--duration`` seconds of each mix are cut
into ``--rounds`` slices run round-robin (floor, mix 1, mix 2, ..., floor, mix 1, ...), so that every
mix, the floor included, samples the same background; and the CPU used by everything that is not ours
is recorded per slice ("foreign CPU"), next to the CPU our API + Redis spend per request.
Results: tables on stdout and bench/results/online_latency.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

import online_env
import online_report
import online_reranker
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
    step,
    write_json,
)
from online_env import SeededSession
from online_report import BLEND_OF, BLEND_SERVER_MIXES, FLOOR, MIXES, TARGET_P99_MS

MAX_PATHS = 50_000
SAMPLED = (FLOOR, "known_user", "known_user_session", "unknown_user_session")  # seed index of each sample
BLEND_ENV = {"HYBRIDREC_RERANKER_ENABLED": "false"}  # the blend server: same version, re-ranker switched off
T = TypeVar("T")


def build_mixes(args: argparse.Namespace, user_ids: list[str], sessions: list[SeededSession]) -> dict[str, list[str]]:
    """Each mix: URL paths sampled with replacement with a fixed seed, enough for every slice + warm-up.

    A blend twin (``BLEND_OF``) gets the very list of its mix, so each slice sends the same paths to both.
    """
    n = min(int(args.rate * (args.duration + args.rounds * args.warmup)) + args.rounds, MAX_PATHS)
    known = [s for s in sessions if s.known]
    unknown = [s for s in sessions if not s.known]

    def rec(user: str, session: str | None = None) -> str:
        query = {"k": args.k} | ({"session_id": session} if session else {})
        return f"/recommendations/{urllib.parse.quote(user, safe='')}?{urllib.parse.urlencode(query)}"

    def sample(name: str, population: Sequence[T], make: Callable[[T], str]) -> list[str]:
        rng = np.random.default_rng([args.seed, SAMPLED.index(name)])
        return [make(population[i]) for i in rng.integers(0, len(population), n)]

    sampled = {
        FLOOR: ["/ready"] * n,
        "known_user": sample("known_user", user_ids, rec),
        "known_user_session": sample("known_user_session", known, lambda s: rec(s.user_id, s.session_id)),
        "unknown_user_session": sample("unknown_user_session", unknown, lambda s: rec(s.user_id, s.session_id)),
    }
    return {**sampled, **{twin: sampled[mix] for mix, twin in BLEND_OF.items()}}


class CpuMeter:
    """Per-slice CPU: the serving API + Redis, all our process groups (both APIs + Redis), everything else."""

    def __init__(self, pgids: set[int]) -> None:
        self.pgids = pgids

    @contextlib.contextmanager
    def measure(self, into: dict, serving: set[int]) -> Iterator[None]:
        serving0, ours0 = group_cpu_s(serving), group_cpu_s(self.pgids)
        busy0, t0 = machine_busy_s(), time.perf_counter()
        yield
        wall, busy = time.perf_counter() - t0, machine_busy_s() - busy0
        into["server_cpu_s"] = round(group_cpu_s(serving) - serving0, 3)
        into["ours_cpu_s"] = round(group_cpu_s(self.pgids) - ours0, 3)
        into["machine_busy_s"] = round(busy, 3)
        into["wall_s"] = round(wall, 3)


@dataclass(frozen=True)
class Target:
    port: int
    pgids: set[int]  # the API's process group and Redis's: whose CPU is "server CPU" for its mixes


def open_loop_slice(args: argparse.Namespace, to: Target, paths: list[str], tmp: Path, meter: CpuMeter) -> dict:
    spec = {
        "port": to.port,
        "paths": paths,
        "rate": args.rate,
        "duration_s": args.duration / args.rounds,
        "warmup_s": args.warmup,
        "connections": args.connections,
    }
    spec_path, out_path = tmp / "spec.json", tmp / "out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).with_name("loadgen.py")), str(spec_path), str(out_path)]
    cpu: dict = {}
    with meter.measure(cpu, to.pgids):
        child = run_child(cmd, timeout_s=spec["duration_s"] + args.warmup + 60)
    if child.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"the load generator exited with {child.returncode}")
    raw = json.loads(out_path.read_text())
    # The slice's CPU counters cover warm-up + measurement; scale the server's share to the measured part.
    n_total = raw["n"] + int(args.rate * args.warmup)
    raw["server_cpu_s_per_request"] = cpu["server_cpu_s"] / max(1, n_total)
    raw["foreign_cpu_cores"] = max(0.0, cpu["machine_busy_s"] - cpu["ours_cpu_s"] - child.cpu_s) / cpu["wall_s"]
    return raw


def wrk_slice(args: argparse.Namespace, to: Target, paths: list[str], seconds: int, meter: CpuMeter) -> dict:
    cpu: dict = {}
    with meter.measure(cpu, to.pgids):
        r = wrk_probe.probe(to.port, paths, seconds, args.wrk_connections)
    r["server_cpu_s_per_request"] = cpu["server_cpu_s"] / max(1, r["requests"])
    return r


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000, help="target interaction count of the data set")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rate", type=float, default=200.0, help="requests/s of the open-loop generator")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per mix, over all rounds")
    p.add_argument("--rounds", type=int, default=4, help="slices per mix, run round-robin across mixes")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each slice, same rate")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connection limit of the generator")
    p.add_argument("--sessions", type=int, default=2_000, help="live sessions seeded (half known users)")
    p.add_argument("--session-events", type=int, default=5, help="events per seeded session")
    p.add_argument("--k", type=int, default=10, help="items per recommendation request")
    p.add_argument("--reranker-sessions", type=int, default=1_000, help="sessions the bench re-ranker trains on")
    p.add_argument("--wrk-duration", type=int, default=8, help="closed-loop wrk seconds per mix, over all rounds")
    p.add_argument("--wrk-connections", type=int, default=8)
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk probe even if wrk is installed")
    p.add_argument("--mixes", default=",".join(MIXES), help=f"comma-separated subset of {','.join(MIXES)}")
    p.add_argument("--reuse", action="store_true", help="reuse the cached data set and batch run if complete")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "online_latency.json")
    args = p.parse_args(argv)
    if not (0 < args.rate <= 5_000 and 0 < args.duration <= 600 and 1 <= args.rounds <= 20 and args.sessions >= 2):
        p.error("need 0 < --rate <= 5000, 0 < --duration <= 600, 1 <= --rounds <= 20, --sessions >= 2")
    if args.duration / args.rounds < 1:
        p.error("--duration / --rounds must be at least 1 second")
    unknown = set(args.mixes.split(",")) - set(MIXES)
    if unknown:
        p.error(f"unknown mixes {sorted(unknown)}")
    return args


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
    events = online_env.pick_sessions(data_dir, spec.end_date, args.sessions, args.session_events, args.seed)
    selected = [m for m in MIXES if m in args.mixes.split(",")]
    slices: dict[str, list[dict]] = {m: [] for m in selected}
    wrk: dict[str, list[dict]] = {m: [] for m in selected}
    servers: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:  # stops both APIs and Redis on exit, error or interrupt
        redis = stack.enter_context(EmbeddedRedis())
        console.print(f"[green]✓[/] redis-server {redis.url} ({redis.binary}, no persistence)")
        machine["redis_version"] = online_env.redis_version(redis.url)
        published = online_env.publish(run_dir, data_dir, redis.url, timings)
        targets: dict[str, Target] = {}
        wanted = {"main": None, **({"blend": BLEND_ENV} if BLEND_SERVER_MIXES & set(selected) else {})}
        for role, extra_env in wanted.items():
            port, log_path = free_port(), data_dir / f"api-{role}.log"
            api = stack.enter_context(
                online_env.api_server(redis.url, data_dir, port, args.workers, log_path, extra_env)
            )
            targets[role] = Target(port, {api.pid, redis.proc.pid})  # type: ignore[union-attr]
            servers[role] = {"port": port, "workers": args.workers, "env": extra_env or {}, "log": str(log_path)}
            console.print(f"[green]✓[/] API '{role}' ready at {api.base} ({args.workers} workers, env {extra_env})")
        base = f"http://{online_env.HOST}:{targets['main'].port}"
        seeding = online_env.seed_sessions(base, events, timings)  # one Redis: both servers see the sessions
        mixes = build_mixes(args, user_ids, online_env.sessions_of(events))
        meter = CpuMeter(set().union(*(t.pgids for t in targets.values())))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-bench-")))
        per_slice = int(args.rate * args.duration / args.rounds)
        warm = int(args.rate * args.warmup)

        def target(name: str) -> Target:
            return targets["blend" if name in BLEND_SERVER_MIXES else "main"]

        for r in range(args.rounds):
            for name in selected:
                # each slice gets its own paths: measured ones first, then the warm-up's
                paths = mixes[name][r * (per_slice + warm) :][: per_slice + warm] or mixes[name]
                raw = open_loop_slice(args, target(name), paths, tmp, meter)
                slices[name].append(raw)
                lat = online_report.percentiles(raw)
                console.print(
                    f"  round {r + 1}/{args.rounds} {name:<26} p50 {fmt_ms(lat['p50']):>6} ms  "
                    f"p99 {fmt_ms(lat['p99']):>6} ms  foreign CPU {raw['foreign_cpu_cores']:.2f} cores"
                )
        use_wrk = not args.no_wrk and wrk_probe.available()
        wrk_rounds = min(args.rounds, args.wrk_duration)
        for r in range(wrk_rounds if use_wrk else 0):
            for name in selected:
                seconds = max(1, args.wrk_duration // wrk_rounds)
                wrk[name].append(wrk_slice(args, target(name), mixes[name], seconds, meter))
                console.print(f"  wrk round {r + 1}/{wrk_rounds} {name:<26} {wrk[name][-1]['rps']:8.0f} req/s")
        if not use_wrk:
            console.print("[yellow]wrk not run[/] (not on PATH or --no-wrk): no closed-loop throughput column")
    # After the servers are gone, so it runs alone: the ranking work without HTTP, the same sessions.
    with step("rank_in_process", timings, "rank() in process: blend vs re-ranker, same sessions"):
        rank_cost = online_reranker.rank_cost(run_dir, data_dir, events, args.k)
    results = {m: online_report.summarise_mix(slices[m], wrk[m], args.rate) for m in selected}
    for m, r in results.items():
        r["server"] = "blend" if m in BLEND_SERVER_MIXES else "main"
    online_report.add_ratios(results)
    return {
        "benchmark": "online_latency",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([".venv/bin/python", "bench/online_latency.py", *sys.argv[1:]]),
        "machine": machine,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dataset": {**info, "cache_dir": str(data_dir)},
        "published": published,
        "reranker": reranker,
        "servers": servers,
        # the API's settings come from the environment: any HYBRIDREC_* the bench ran under applies to both
        "hybridrec_env": {k: v for k, v in os.environ.items() if k.startswith("HYBRIDREC_")},
        "setup_timings_s": timings,
        "seeding": seeding,
        "targets": {"p99_ms_below": TARGET_P99_MS, "at_rps": args.rate, "asserted": False},
        "floor": FLOOR,
        "blend_twins": BLEND_OF,
        "mixes": results,
        "rank_in_process": rank_cost,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    try:
        payload = run(args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: both APIs and Redis stopped")
        return 130
    online_report.print_tables(payload["mixes"], args)
    online_reranker.print_rank_cost(payload["rank_in_process"])
    write_json(args.out, payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a request's CPU goes in the live API workers: py-spy on uvicorn's workers under open-loop load.

    .venv/bin/python bench/profile_api.py [--reuse] [--rate 300] [--seconds 15] [--mixes known_user_session,...]

The same data, Redis, product server (auth on, caches off), seeded sessions and paths as
bench/online_latency.py. For each mix: the open-loop generator sends ``--rate`` req/s for ``--seconds``
while ``py-spy record --subprocesses`` samples every worker of the product (``--rate-hz`` samples per
second, Python frames, idle threads left out). The collapsed stacks go to bench/.cache/profile-*/;
the summary (JSON in bench/results/profile_api.json, and tables) gives each sample to:

* ``self``: the package of its innermost frame (what was on the CPU: numpy, our modules, starlette, ...);
* ``inclusive``: every function on its stack (how much of the time ran under ``rank``, ``build_pool``, ...).

The "flame summary" in bench/README.md is these two tables.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import online_env
import online_latency
from common import CACHE_DIR, REPO_DIR, RESULTS_DIR, DataSpec, console, interrupt_on_signals, run_child, write_json
from online_env import Auth
from online_report import FLOOR, MIXES

# file of the innermost frame (py-spy prints paths from the package root) -> bucket; first prefix wins
BUCKETS: tuple[tuple[str, str], ...] = (
    ("online/features.py", "online.features"),
    ("online/ranking.py", "online.ranking"),
    ("online/reranker.py", "online.reranker"),
    ("online/blend.py", "online.blend"),
    ("online/service.py", "online.service"),
    ("online/routes.py", "online.routes"),
    ("online/cache", "online.cache"),
    ("online/", "online (other)"),
    ("feature_store/codecs.py", "feature_store.codecs"),
    ("feature_store/", "feature_store (other)"),
    ("numpy/", "numpy (Python side)"),
    ("redis/", "redis-py"),
    ("pydantic", "pydantic"),
    ("fastapi/", "fastapi"),
    ("starlette/", "starlette"),
    ("anyio/", "anyio (thread pool)"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "uvicorn"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "asyncio"),
    ("json/", "json (stdlib)"),
    ("threading.py", "threading"),
    ("queue.py", "threading"),
    ("concurrent/", "threading"),
    ("hashlib", "hashlib/hmac"),
    ("hmac.py", "hashlib/hmac"),
)
_FRAME = re.compile(r"^(?P<name>.+) \((?P<path>[^()]*?)(?::\d+)?\)$")


def bucket(path: str) -> str:
    for prefix, name in BUCKETS:
        if path.startswith(prefix) or f"/{prefix}" in path:
            return name
    return "other"


# library functions worth seeing inclusively (the rest of the web stack is wrappers around wrappers)
LIBRARY_FUNCTIONS = (
    "serialize_response",
    "solve_dependencies",
    "run_endpoint_function",
    "request_params_to_args",
    "run_in_threadpool",
    "run_sync",
    "jsonable_encoder",
    "Pipeline.execute",
    "Pipeline._execute_pipeline",
    "JSONResponse.render",
    "Response.__init__",
    "RequestResponseCycle.run_asgi",
    "HttpToolsProtocol.data_received",
)


def _shown(name: str, path: str) -> bool:
    return path.startswith(("online/", "feature_store/")) or name in LIBRARY_FUNCTIONS


def summarise(collapsed: Path, top: int = 30) -> dict:
    """Self time per bucket, and inclusive time per function (ours, and LIBRARY_FUNCTIONS), as shares
    of the samples."""
    self_: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [m for f in stack.split(";") if (m := _FRAME.match(f))]
        if not frames:
            continue
        total += n
        self_[bucket(frames[-1]["path"])] += n
        for f in {f"{m['name']} ({m['path']})" for m in frames if _shown(m["name"], m["path"])}:
            inclusive[f] += n
    share = {k: round(v / total, 4) for k, v in self_.most_common()} if total else {}
    incl = {k: round(v / total, 4) for k, v in inclusive.most_common(top)} if total else {}
    return {"samples": total, "self_by_package": share, "inclusive_top": incl}


def profile_mix(port: int, pgid: int, paths: list[str], args: argparse.Namespace, out_dir: Path, name: str) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    collapsed = out_dir / f"{name}.txt"
    # --gil: only the thread holding the GIL, i.e. Python's CPU time (threads parked in a pool are not)
    cmd = [spy, "record", "--pid", str(pgid), "--subprocesses", "--gil", "--rate", str(args.rate_hz)]
    cmd += ["--format", "raw", "--duration", str(int(args.seconds)), "--output", str(collapsed), "--nonblocking"]
    with open(out_dir / f"{name}.py-spy.log", "wb") as log:
        spy_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches (and the generator warms up) before the load starts
        sent = _loadgen({"port": port, "paths": paths, "rate": args.rate, "duration_s": args.seconds, "warmup_s": 1.0})
        try:
            spy_proc.wait(60)
        except subprocess.TimeoutExpired:
            spy_proc.terminate()
            spy_proc.wait(10)
    if not collapsed.exists():
        raise RuntimeError(f"py-spy wrote nothing; see {out_dir / f'{name}.py-spy.log'}")
    return {"requests": sent, "collapsed_stacks": str(collapsed), **summarise(collapsed)}


def _loadgen(spec: dict) -> int:
    """Run the open-loop generator on ``spec``; returns the requests it sent."""
    with tempfile.TemporaryDirectory(prefix="hybridrec-profile-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        child = run_child(
            [sys.executable, str(Path(__file__).with_name("loadgen.py")), str(spec_path), str(out_path)], 120
        )
        if child.returncode != 0:
            raise RuntimeError(f"the load generator exited with {child.returncode}")
        return json.loads(out_path.read_text())["n"]


def run(args: argparse.Namespace) -> dict:
    from feature_store.embedded import EmbeddedRedis, free_port

    spec = DataSpec.for_events(args.users, args.items, args.events, 14, args.seed)
    data_dir = CACHE_DIR / f"online-{spec.key()}"
    timings: dict[str, float] = {}
    _, run_dir, _ = online_env.prepare_run(spec, data_dir, args.reuse, timings, 1_000, args.seed)
    user_ids = online_env.run_user_ids(run_dir)
    sessions = online_env.pick_sessions(data_dir, spec.end_date, 2_000, 5, args.seed)
    auth = Auth.make("on")
    out_dir = CACHE_DIR / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True)
    results = {}
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        online_env.publish(run_dir, data_dir, redis.url, timings)
        port = free_port()
        env = {**auth.env(), **online_latency.cache_env("off")}
        api = stack.enter_context(
            online_env.api_server(redis.url, data_dir, port, args.workers, out_dir / "api.log", env)
        )
        online_env.seed_sessions(api.base, sessions, auth, timings)
        servers = {"main": (port, api.pid)}
        if FLOOR in args.mixes:
            floor_port = free_port()
            floor = stack.enter_context(
                online_env.api_server(
                    redis.url, data_dir, floor_port, args.workers, out_dir / "floor.log", {},
                    app="floor_app:app_from_env", app_dir=REPO_DIR / "bench", ready_path="/floor/-",
                )
            )  # fmt: skip
            servers["floor"] = (floor_port, floor.pid)
        ns = argparse.Namespace(k=10, seed=args.seed, mixes=args.mixes)
        paths = online_latency.build_paths(ns, user_ids, sessions)
        for name in args.mixes:
            at, pgid = servers[MIXES[name].server]
            n = int(args.rate * (args.seconds + 1)) + 1
            warm = {"port": at, "paths": paths[name][-n:], "rate": args.rate, "duration_s": 3.0, "warmup_s": 0.0}
            _loadgen(warm)  # unprofiled: the first requests of a route import and build what they need
            results[name] = profile_mix(at, pgid, paths[name][:n], args, out_dir, name)
            results[name]["samples_per_request"] = round(results[name]["samples"] / results[name]["requests"], 3)
            console.print(f"[green]✓[/] {name}: {results[name]['samples']:,} samples")
    return {
        "benchmark": "profile_api",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([".venv/bin/python", "bench/profile_api.py", *sys.argv[1:]]),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "auth": auth.describe(),
        "mixes": results,
    }


def print_summary(payload: dict) -> None:
    from rich.table import Table

    for name, r in payload["mixes"].items():
        t = Table(
            title=f"{name}: {r['samples']:,} samples of {r['requests']:,} requests at {payload['params']['rate']:g}/s"
        )
        t.add_column("self: innermost frame's package")
        t.add_column("share", justify="right")
        t.add_column("inclusive: function on the stack")
        t.add_column("share", justify="right")
        selfs, incl = list(r["self_by_package"].items()), list(r["inclusive_top"].items())
        for i in range(max(len(selfs), len(incl))):
            a = selfs[i] if i < len(selfs) else ("", None)
            b = incl[i] if i < len(incl) else ("", None)
            t.add_row(a[0], f"{a[1]:.1%}" if a[1] is not None else "", b[0], f"{b[1]:.1%}" if b[1] is not None else "")
        console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rate", type=float, default=300.0, help="open-loop req/s while profiling")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate-hz", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--mixes", default="floor,known_user,known_user_session,anon_session")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "profile_api.json")
    args = p.parse_args(argv)
    args.mixes = [m for m in args.mixes.split(",") if m in MIXES and MIXES[m].server in ("main", "floor")]
    interrupt_on_signals()
    try:
        payload = run(args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    print_summary(payload)
    write_json(args.out, payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the metrics and the request logs add to a request: the same API with them off, metrics on, metrics + JSON logs.

    .venv/bin/python bench/observability.py [--users 20000 --items 5000 --events 300000 --rate 150
                                             --duration 20 --rounds 4 --reuse]

Three API servers (one uvicorn worker each, auth off: ``online_env.Auth``, as this bench measures what
observability adds, not what auth costs) on one fresh redis-server and the same published version differ
only in their observability settings:

* ``off``: ``HYBRIDREC_METRICS_ENABLED=false``, ``HYBRIDREC_LOG_FORMAT=text`` (no per-request work at all);
* ``metrics``: metrics on, in prometheus_client's multiprocess mode as ``hybridrec serve`` runs them
  (``PROMETHEUS_MULTIPROC_DIR`` set: every observation is an mmap write);
* ``metrics+logs``: the same plus ``HYBRIDREC_LOG_FORMAT=json``: one JSON line per request, written to
  a file (the server's stderr).

Each is driven by the open-loop generator (bench/loadgen.py) at ``--rate`` with known users'
``GET /recommendations`` (the precomputed tier), the ``--duration`` seconds of each cut into
``--rounds`` slices run round-robin, so all three sample the same background load. The table gives
p50/p99 and their difference to ``off``; on this shared machine only differences measured in the same
run mean anything. A second table times the per-request work itself in process (``Telemetry.request``
and the log line's formatting), which noise on the machine hardly touches. Writes
bench/results/observability.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

import online_env
from common import CACHE_DIR, RESULTS_DIR, DataSpec, build_dataset, console, fmt_ms, run_child, run_header, write_json
from online_report import percentiles

CONFIGS = {
    "off": {"HYBRIDREC_METRICS_ENABLED": "false", "HYBRIDREC_LOG_FORMAT": "text"},
    "metrics": {"HYBRIDREC_METRICS_ENABLED": "true", "HYBRIDREC_LOG_FORMAT": "text"},
    "metrics+logs": {"HYBRIDREC_METRICS_ENABLED": "true", "HYBRIDREC_LOG_FORMAT": "json"},
}
MULTIPROCESS = {"metrics", "metrics+logs"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per configuration, all rounds")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--reuse", action="store_true", help="reuse the cached data set and batch run")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "observability.json")
    args = p.parse_args(argv)
    if not (0 < args.rate <= 1_000 and 0 < args.duration <= 300 and 1 <= args.rounds <= 20):
        p.error("need 0 < --rate <= 1000, 0 < --duration <= 300, 1 <= --rounds <= 20")
    return args


def prepare(args: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    from batch.artifacts import run_dir_for
    from batch.pipeline import is_complete, run_batch
    from shared.config import get_settings

    spec = DataSpec.for_events(args.users, args.items, args.events, seed=args.seed)
    data_dir = CACHE_DIR / f"observability-{spec.key()}"
    build_dataset(spec, data_dir, args.reuse)
    settings = get_settings(data_dir=data_dir)
    settings.tuning_path.unlink(missing_ok=True)
    if not (args.reuse and is_complete(settings, spec.end)):
        console.print(f"run_batch {spec.end} ...")
        run_batch(settings, spec.end)
    run_dir = run_dir_for(settings.runs_dir, spec.end)
    return data_dir, run_dir, online_env.run_user_ids(run_dir)


def slice_of(port: int, paths: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    spec = {
        "port": port,
        "paths": paths,
        "rate": args.rate,
        "duration_s": args.duration / args.rounds,
        "warmup_s": args.warmup,
        "connections": 32,
    }
    spec_path, out_path = tmp / "spec.json", tmp / "out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).with_name("loadgen.py")), str(spec_path), str(out_path)]
    child = run_child(cmd, timeout_s=spec["duration_s"] + args.warmup + 60)
    if child.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"the load generator exited with {child.returncode}")
    return json.loads(out_path.read_text())


def pooled(slices: list[dict]) -> dict:
    """p50/p99 (ms, from the scheduled time) over every slice's answered requests, and the error count."""
    lat, errors, n = [], 0, 0
    for raw in slices:
        due, done = np.array(raw["due"], dtype=float), np.array(raw["done"], dtype=float)
        ok = ~np.isnan(done) & (np.array(raw["status"], dtype=float) == 200)
        lat.append((done - due)[ok] * 1000)
        errors += int((~ok).sum())
        n += raw["n"]
    a = np.concatenate(lat) if lat else np.empty(0)
    return {"n": n, "errors": errors, "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def time_telemetry() -> dict:
    """Microseconds per ``Telemetry.request`` of a recommendation (one flag), with its per-minute window,
    in whatever mode this process's prometheus_client is in."""
    from online.telemetry import Telemetry, multiprocess_mode
    from online.window import WindowCounters

    class NoStore:
        def add(self, counts: object) -> None: ...

        def read(self, minutes: object) -> dict:
            return {}

    t = Telemetry()
    t.attach(WindowCounters(NoStore(), 3600))  # type: ignore[arg-type]
    args = ("/recommendations/{user_id}", "GET", 200, "precomputed", ["unknown_user"], 0.0042)
    runs = [timeit.timeit(lambda: t.request(*args), number=20_000) / 20_000 * 1e6 for _ in range(5)]
    return {
        "multiprocess": multiprocess_mode(),
        "best_us": round(min(runs), 2),
        "median_us": round(float(np.median(runs)), 2),
    }


def in_process() -> dict:
    """Microseconds per request of the work itself: Telemetry.request with in-memory values (this process)
    and in multiprocess mode (a child with PROMETHEUS_MULTIPROC_DIR set: mmap writes, as `hybridrec serve`
    runs), and the JSON request line, formatted and written to /dev/null."""
    from shared.logs import JsonFormatter

    out = {"telemetry_request": time_telemetry()}
    with tempfile.TemporaryDirectory(prefix="hybridrec-obs-mp-") as mp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mp}
        child = subprocess.run(
            [sys.executable, __file__, "--time-telemetry"], env=env, capture_output=True, text=True, check=True
        )
        out["telemetry_request_multiprocess"] = json.loads(child.stdout.strip().splitlines()[-1])

    sink = logging.getLogger("bench.observability")
    sink.propagate = False
    sink.setLevel(logging.INFO)
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the bench
    handler.setFormatter(JsonFormatter())
    sink.addHandler(handler)
    fields = {"request_id": "0" * 32, "method": "GET", "route": "/recommendations/{user_id}", "status": 200}
    fields |= {"latency_ms": 4.2}
    fields |= {"tier": "precomputed", "flags": [], "version": "2026-10-31.0123456789"}

    def log_line() -> None:
        sink.info("request", extra={"fields": fields})

    runs = [timeit.timeit(log_line, number=20_000) / 20_000 * 1e6 for _ in range(5)]
    out["json_log_line"] = {"best_us": round(min(runs), 2), "median_us": round(float(np.median(runs)), 2)}
    return out


def run(args: argparse.Namespace) -> dict:
    from feature_store.embedded import EmbeddedRedis, free_port

    data_dir, run_dir, users = prepare(args)
    rng = np.random.default_rng(args.seed)
    per_slice = int(args.rate * (args.duration / args.rounds + args.warmup)) + 10
    slices: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        published = online_env.publish(run_dir, data_dir, redis.url, {})
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-obs-")))
        ports = {}
        auth = online_env.Auth.make("off")
        for name, extra in CONFIGS.items():
            env = {**auth.env(), **extra}
            if name in MULTIPROCESS:
                (tmp / name).mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / name)
            port = free_port()
            stack.enter_context(online_env.api_server(redis.url, data_dir, port, 1, tmp / f"api-{name}.log", env))
            ports[name] = port
            console.print(f"[green]✓[/] API '{name}' on :{port} ({env})")
        for r in range(args.rounds):
            picks = [f"/recommendations/{users[i]}?k=10" for i in rng.integers(0, len(users), per_slice)]
            for name, port in ports.items():  # the same paths for each configuration in a round
                raw = slice_of(port, picks, args, tmp)
                slices[name].append(raw)
                lat = percentiles(raw)
                console.print(
                    f"  round {r + 1}/{args.rounds} {name:<13} p50 {fmt_ms(lat['p50'])} ms p99 {fmt_ms(lat['p99'])} ms"
                )
        log_lines = (
            sum(1 for _ in (tmp / "api-metrics+logs.log").open()) if (tmp / "api-metrics+logs.log").exists() else 0
        )
    results = {name: pooled(s) for name, s in slices.items()}
    base = results["off"]
    rounds = {name: [percentiles(raw) for raw in s] for name, s in slices.items()}
    for name, r in results.items():
        r["p50_delta_ms"] = round(r["p50_ms"] - base["p50_ms"], 3)
        r["p99_delta_ms"] = round(r["p99_ms"] - base["p99_ms"], 3)
        # the same paths ran in each round for every config: per-round differences cancel slow drifts
        for q in ("p50", "p99"):
            deltas = [a[q] - b[q] for a, b in zip(rounds[name], rounds["off"], strict=True)]
            r[f"{q}_delta_median_of_rounds_ms"] = round(float(np.median(deltas)), 3)
        r["rounds"] = rounds[name]
    return {
        **run_header("observability", args),
        "published": published,
        "auth": online_env.Auth.make("off").describe(),
        "configs": CONFIGS,
        "http": results,
        "json_log_lines_written": log_lines,
        "in_process_us": in_process(),
    }


def main(argv: list[str] | None = None) -> int:
    if (argv if argv is not None else sys.argv[1:]) == ["--time-telemetry"]:  # the child of in_process()
        print(json.dumps(time_telemetry()))
        return 0
    args = parse_args(argv)
    payload = run(args)
    console.print("\nGET /recommendations (known user), open loop, same paths per round:")
    console.print("Δ: pooled over all rounds; Δ/round: the median of the per-round differences (same paths)")
    head = f"{'config':<14}{'requests':>9}{'errors':>7}{'p50 ms':>9}{'Δp50':>8}{'Δp50/round':>11}"
    console.print(head + f"{'p99 ms':>9}{'Δp99':>8}{'Δp99/round':>11}")
    for name, r in payload["http"].items():
        console.print(
            f"{name:<14}{r['n']:>9}{r['errors']:>7}{r['p50_ms']:>9.3f}{r['p50_delta_ms']:>+8.3f}"
            f"{r['p50_delta_median_of_rounds_ms']:>+11.3f}{r['p99_ms']:>9.3f}{r['p99_delta_ms']:>+8.3f}"
            f"{r['p99_delta_median_of_rounds_ms']:>+11.3f}"
        )
    console.print("\nper request, in process (best / median of 5 x 20,000 calls):")
    for name, r in payload["in_process_us"].items():
        console.print(f"  {name:<32} {r['best_us']:6.2f} µs / {r['median_us']:6.2f} µs")
    write_json(args.out, payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

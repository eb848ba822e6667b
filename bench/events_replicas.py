"""What HYBRIDREC_EVENTS_MIN_REPLICAS=1 costs POST /events: the same API without and with the wait for a replica.

    .venv/bin/python bench/events_replicas.py [--requests 1000 --rounds 4 --batch 5]

One redis-server primary (append-only file, ``appendfsync always``, as the product runs it) and one
replica of it on loopback; two API servers (one uvicorn worker each, auth off) on that primary, alike
but for ``HYBRIDREC_EVENTS_MIN_REPLICAS`` (0, and 1 with ``HYBRIDREC_EVENTS_REPLICAS_TIMEOUT_MS`` 25).
Each round posts ``--requests`` batches of ``--batch`` events with their own ids to each server in turn,
one after another on a keep-alive connection (closed loop: the latency of one append, not a capacity).
Reported per server: p50/p99 latency, the API's and Redis's CPU per request (primary and replica for
both: the replica copies every write either way; only the wait for its confirmation differs), and
every status seen; the ratio to ``off`` is the figure to read on this shared machine. Writes bench/results/events_replicas.json.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import online_env
from common import RESULTS_DIR, console, fmt_ratio, group_cpu_s, run_header, write_json

CONFIGS = {
    "off": {"HYBRIDREC_EVENTS_MIN_REPLICAS": "0"},
    "min_replicas_1": {"HYBRIDREC_EVENTS_MIN_REPLICAS": "1", "HYBRIDREC_EVENTS_REPLICAS_TIMEOUT_MS": "25"},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1_000, help="POSTs per server and round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--batch", type=int, default=5, help="events per POST")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "events_replicas.json")
    args = p.parse_args(argv)
    if not (1 <= args.requests <= 100_000 and 1 <= args.rounds <= 20 and 1 <= args.batch <= 500):
        p.error("need 1 <= --requests <= 100000, 1 <= --rounds <= 20, 1 <= --batch <= 500")
    return args


def _replica_online(primary_url: str, timeout_s: float = 20.0) -> None:
    import redis

    client = redis.Redis.from_url(primary_url)
    try:
        deadline = time.monotonic() + timeout_s
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not come online")
            time.sleep(0.05)
    finally:
        client.close()


def _post_round(api: online_env.Api, name: str, round_no: int, args: argparse.Namespace) -> dict:
    latencies, statuses = [], {}
    with httpx.Client(base_url=api.base, timeout=10) as client:
        for n in range(args.requests):
            events = [
                {"session_id": f"s-{name}-{round_no}-{n % 50}", "item_id": f"i{(n * 7 + j) % 500}",
                 "event_id": f"{name}-{round_no}-{n}-{j}"}
                for j in range(args.batch)
            ]  # fmt: skip
            start = time.perf_counter()
            status = client.post("/events", json=events).status_code
            latencies.append(time.perf_counter() - start)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"latency_s": latencies, "statuses": statuses}


def run(args: argparse.Namespace) -> dict:
    from feature_store.embedded import EmbeddedRedis, free_port

    raw: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    cpu = {name: {"api_s": 0.0, "redis_s": 0.0} for name in CONFIGS}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-events-replicas-")))
        primary = stack.enter_context(EmbeddedRedis(tmp / "primary", persistent=True))
        replica = stack.enter_context(
            EmbeddedRedis(tmp / "replica", persistent=True, config={"replicaof": f"127.0.0.1 {primary.port}"})
        )
        _replica_online(primary.url)
        auth = online_env.Auth.make("off")
        apis = {}
        for name, extra in CONFIGS.items():
            env = {**auth.env(), **extra}
            apis[name] = stack.enter_context(
                online_env.api_server(
                    primary.url, tmp / "data", free_port(), 1, tmp / f"api-{name}.log", env, ready_path="/health"
                )
            )
            console.print(f"[green]✓[/] API '{name}' at {apis[name].base} ({extra})")
        redis_groups = {primary.proc.pid, replica.proc.pid}  # type: ignore[union-attr]
        for r in range(args.rounds):
            for name, api in apis.items():
                api_before, redis_before = group_cpu_s({api.pid}), group_cpu_s(redis_groups)
                raw[name].append(_post_round(api, name, r, args))
                cpu[name]["api_s"] += group_cpu_s({api.pid}) - api_before
                cpu[name]["redis_s"] += group_cpu_s(redis_groups) - redis_before
                lat = np.array(raw[name][-1]["latency_s"]) * 1000
                console.print(
                    f"  round {r + 1}/{args.rounds} {name:<15} p50 {np.percentile(lat, 50):.2f} ms "
                    f"p99 {np.percentile(lat, 99):.2f} ms {raw[name][-1]['statuses']}"
                )
    results = {}
    for name, rounds in raw.items():
        lat = np.concatenate([np.array(x["latency_s"]) for x in rounds]) * 1000
        n = len(lat)
        statuses: dict[str, int] = {}
        for x in rounds:
            for status, count in x["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        results[name] = {
            "requests": n,
            "statuses": statuses,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "api_cpu_ms_per_request": round(cpu[name]["api_s"] * 1000 / n, 3),
            "redis_cpu_ms_per_request": round(cpu[name]["redis_s"] * 1000 / n, 3),
            "rounds_p50_ms": [round(float(np.percentile(np.array(x["latency_s"]) * 1000, 50)), 3) for x in rounds],
        }
    base = results["off"]
    for r in results.values():
        for key in ("p50_ms", "p99_ms", "api_cpu_ms_per_request", "redis_cpu_ms_per_request"):
            r[f"{key}_vs_off"] = round(r[key] / base[key], 3) if base[key] else None
    return {**run_header("events_replicas", args), "auth": auth.describe(), "configs": CONFIGS, "results": results}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payload = run(args)
    console.print(
        f"\nPOST /events, {args.batch} events each, closed loop on one connection; ratio to 'off' in brackets"
    )
    console.print(
        f"{'config':<16}{'requests':>9}  {'p50 ms':>14}  {'p99 ms':>14}  {'API CPU ms':>14}  {'Redis CPU ms':>14}"
    )
    for name, r in payload["results"].items():
        cells = [
            f"{r[k]:.3f} ({fmt_ratio(r[k + '_vs_off'])})"
            for k in ("p50_ms", "p99_ms", "api_cpu_ms_per_request", "redis_cpu_ms_per_request")
        ]
        console.print(f"{name:<16}{r['requests']:>9}  " + "  ".join(f"{c:>14}" for c in cells) + f"  {r['statuses']}")
    write_json(args.out, payload)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

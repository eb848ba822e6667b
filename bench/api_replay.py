"""Issue 8's session replay through the real API: redis-server, `hybridrec serve`, HTTP, as a client would.

    .venv/bin/python bench/api_replay.py --data-dir DIR [--tuning FILE | --no-tuning] [--max-sessions 1000]
                                         [--seed 42] [--label NAME] [--out bench/results/api_replay_<NAME>_<tuning>.json]

DIR is an ingested data dir, only read (as ``hybridrec evaluate --data-dir``, through ``lab.ownlog``):

1. **The test stage of ``evaluate``.** The same periods (``lab.periods``, default fractions), the same
   batch run (trained through the end of validation, with DIR's ``tuning/best.json`` unless
   ``--no-tuning``/``--tuning``), in a scratch data dir under ``bench/.cache/``. The sessions are a
   seeded subset of the ones ``evaluate`` replays: its sample of ``--eval-max-sessions`` (its default,
   3,000) sampled again down to ``--max-sessions`` with the same function and seed
   (``lab.replay.sample_sessions``), so ``--max-sessions 3000`` is exactly evaluate's. Targets and skips
   are ``lab.replay.iter_targets``'s.
2. **Serving.** A fresh ``redis-server`` (no persistence, free loopback port); the run published with
   ``batch.publish.publish_run``; the API started as an operator starts it, ``hybridrec serve``, with
   auth on: an API key made for the run (scopes write-events, read-recs), an admin key for ``/metrics``
   and a session secret. A version with a learned re-ranker gets a second server with
   ``HYBRIDREC_RERANKER_ENABLED=false`` for the blend variants; the re-ranking one runs with
   ``--reranker-budget-ms`` so that machine stalls do not decide which scorer a quality number measures.
3. **Replay** (bench/replay_http.py): per step, ``GET /recommendations`` for hybrid, session-only and
   batch-only (and re-ranked), k=10, then the step's events to both sessions with ``POST /events``.
4. **Cross-checks.** The same targets ranked in process by ``lab.replay.replay_targets`` (the
   evaluate code path, on the bytes the API reads): the share of identical top-10 lists per variant;
   and the API's own counters (``GET /metrics`` of each server, summed) against what the client got.

Prints a table; writes JSON. Nothing is asserted (tests/e2e/test_api_replay.py asserts the structure on a
tiny data dir).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

import replay_http
import replay_summary
from common import CACHE_DIR, RESULTS_DIR, console, interrupt_on_signals, machine_info, run_header, step, write_json
from online_env import HOST, stop_server, wait_ready

SERVE_BIN = Path(sys.executable).parent / "hybridrec"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="an ingested data dir (only read)")
    tuning = p.add_mutually_exclusive_group()
    tuning.add_argument("--tuning", type=Path, help="a `hybridrec tune` result (default: DIR/tuning/best.json)")
    tuning.add_argument("--no-tuning", action="store_true", help="train and serve with Settings only")
    p.add_argument("--max-sessions", type=int, default=1_000, help="sessions replayed through the API")
    p.add_argument("--eval-max-sessions", type=int, default=3_000, help="evaluate's sample they are drawn from")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers per API server")
    p.add_argument("--reranker-budget-ms", type=float, default=1_000.0, help="of the re-ranking server")
    p.add_argument("--label", help="the log's name in tables and file names (default: DIR's name)")
    p.add_argument("--work-dir", type=Path, help="scratch data dir and logs (default bench/.cache/api-replay-…)")
    p.add_argument("--out", type=Path, help="JSON (default bench/results/api_replay_<label>_<tuning>.json)")
    return p.parse_args(argv)


def _tuning(args: argparse.Namespace) -> tuple[bytes | None, str]:
    """The tuning file's bytes (None: Settings only) and a label for it."""
    from batch.tuning_file import read_tuning

    path = None if args.no_tuning else args.tuning or args.data_dir / "tuning" / "best.json"
    if path is None or (args.tuning is None and not path.exists()):
        return None, "configured"
    read_tuning(path)  # fail before any work on a file that is not a tuning result
    return path.read_bytes(), "tuned"


@contextlib.contextmanager
def serve(env: dict[str, str], workers: int, log_path: Path):  # type: ignore[no-untyped-def]
    """``hybridrec serve`` on a free loopback port in its own session; yields its base URL."""
    import subprocess

    from feature_store.embedded import free_port

    port = free_port()
    cmd = [str(SERVE_BIN), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://{HOST}:{port}"
            wait_ready(base, proc, log_path)
            yield base
        finally:
            stop_server(proc)


def prepare(args: argparse.Namespace, work: Path, tuning: bytes | None, timings: dict[str, float]) -> dict:
    """The test stage of ``evaluate --data-dir`` in ``work/batch-data``; the sampled sessions; the lab's replay."""
    from lab.evaluate import blend_params
    from lab.ownlog import OwnLog, history_indices, scratch_data_dir
    from lab.periods import PeriodSpec
    from lab.replay import VARIANTS, replay_targets, sample_sessions
    from lab.serving import serving_model
    from online.reranker import LinearReranker
    from shared.config import get_settings
    from shared.errors import ConfigError

    settings = get_settings(data_dir=work / "batch-data")
    scratch_data_dir(args.data_dir, settings.data_dir)
    if tuning is not None:
        settings.tuning_path.parent.mkdir(parents=True, exist_ok=True)
        settings.tuning_path.write_bytes(tuning)
    own = OwnLog.open(settings, PeriodSpec())
    if own.plan.protocol != "temporal":
        raise ConfigError(f"{args.data_dir}: {own.plan.reason}; there is no session to replay")
    stage = own.stage("test")
    with step(
        "run_batch", timings, f"batch run through {stage.run_partition} (test period {stage.start}..{stage.end})"
    ):
        data = own.prepare(settings, stage)
    serving = serving_model(data.run_dir)
    meta = serving.model.bundle.meta
    params = blend_params(settings).for_version(meta)
    reranker = LinearReranker.for_version(meta)
    variants = [v for v in VARIANTS if v != "popularity"] + (["reranked"] if reranker is not None else [])
    history = history_indices(data.history, serving.model.bundle.item_index)
    pool = sample_sessions(data.events, args.eval_max_sessions, args.seed)
    sessions = sample_sessions(pool, args.max_sessions, args.seed)
    with step("lab_replay", timings, "the same targets ranked in process (lab.replay.replay_targets)"):
        lab = replay_targets(serving, sessions, replay_http.K, params, None, variants, reranker, history)
    return {
        "settings": settings,
        "plan": own.plan,
        "stage": stage,
        "data": data,
        "serving": serving,
        "params": params,
        "reranker": reranker,
        "variants": variants,
        "history": history,
        "sessions": sessions,
        "lab": lab,
    }


def run_api(args: argparse.Namespace, work: Path, prep: dict, timings: dict[str, float]) -> dict:
    """Redis, publish, the API server(s), the replay, the server's counters."""
    from batch.publish import publish_run
    from feature_store.embedded import EmbeddedRedis
    from feature_store.redis_store import RedisStore
    from shared.config import get_settings

    keys = replay_http.Keys.new()
    reranked = prep["reranker"] is not None
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis())
        settings = get_settings(data_dir=prep["settings"].data_dir, redis_url=redis.url)
        with RedisStore.from_settings(settings) as store, step("publish", timings, "publish into a fresh Redis"):
            published = publish_run(prep["data"].run_dir, store.versions, settings)
        base_env = {**os.environ, "HYBRIDREC_REDIS_URL": redis.url, "HYBRIDREC_DATA_DIR": str(settings.data_dir)}
        base_env |= keys.env()
        servers = {"main": {"HYBRIDREC_RERANKER_BUDGET_MS": str(args.reranker_budget_ms)} if reranked else {}}
        if reranked:
            servers["blend"] = {"HYBRIDREC_RERANKER_ENABLED": "false"}
        bases = {}
        with step("serve", timings, f"hybridrec serve x{len(servers)} ({args.workers} worker(s) each), auth on"):
            for name, extra in servers.items():
                # each server its own metrics directory: `serve` empties it at start (cli/serve.py)
                env = base_env | extra | {"HYBRIDREC_METRICS_DIR": str(work / f"metrics-{name}")}
                bases[name] = stack.enter_context(serve(env, args.workers, work / f"api-{name}.log"))
        blend = "blend" if reranked else "main"
        routes = {"hybrid": blend, "session_only": blend, "batch_only": blend} | (
            {"reranked": "main"} if reranked else {}
        )
        out = replay_http.ApiOutcome()
        client = replay_http.ApiClient(bases, keys.replay, out)
        stack.callback(client.close)
        n = prep["sessions"]["session_id"].nunique()
        with step("api_replay", timings, f"replay {n} sessions through HTTP"):
            done = [0]

            def progress(_: int) -> None:
                done[0] += 1
                if done[0] % 100 == 0:
                    console.print(f"  {done[0]}/{n} sessions, {sum(out.requests.values()):,} requests")

            replay_http.replay_via_api(
                client, prep["serving"], prep["sessions"], prep["params"], routes, prep["history"], progress
            )
        # each server counts what it answered (its workers' metric files merged at scrape time)
        per_server = {name: replay_http.server_counts(client.metrics(name, keys.admin)) for name in servers}
    return {
        "outcome": out,
        "server_counts_per_server": per_server,
        "published": {"version": published.version, "n_users": published.n_users, "n_items": published.n_items},
        "servers": {name: {"env": env, "workers": args.workers} for name, env in servers.items()},
        "routes": routes,
        "server_counts": replay_http.sum_counts(per_server.values()),
        "redis_binary": redis.binary,
    }


def _latency(samples: dict[str, list[float]]) -> dict:
    return {
        route: {"n": len(v), "p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99))}
        for route, v in samples.items()
    }


def _run_params(run_dir: Path) -> dict:
    """What the test run trained with (the ALS axes tune searches, where they came from, the candidates)."""
    from batch.artifacts import read_json
    from lab.search import ALS_AXES

    params = read_json(run_dir / "manifest.json")["params"]
    wanted = (*ALS_AXES, "als_source", "candidate_model", "blend")
    return {k: params[k] for k in wanted if k in params}


def build_payload(args: argparse.Namespace, prep: dict, served: dict, label: str, timings: dict, machine: dict) -> dict:
    out: replay_http.ApiOutcome = served["outcome"]
    lab = prep["lab"]
    if not np.array_equal(out.targets, lab.targets):
        raise RuntimeError("the API replay and the lab replay did not walk the same targets")
    serving, seed = prep["serving"], args.seed
    api_quality = replay_summary.quality(out.ranked, out.targets, out.sessions, serving, seed)
    lab_quality = replay_summary.quality(lab.ranked, lab.targets, lab.sessions, serving, seed)
    shares = replay_summary.seen_shares(out)
    session_ids = sorted(prep["sessions"]["session_id"].unique().tolist())
    counted = served["server_counts"]
    match = {
        "requests_by_strategy": dict(out.responses) == counted["requests"],
        "events_accepted": out.events_posted == counted["events"].get("accepted", 0),
    }
    stage, plan = prep["stage"], prep["plan"]
    return {
        **run_header("api_replay", args, {**machine, "loadavg_at_end": os.getloadavg()}),
        "hybridrec_env": {k: v for k, v in os.environ.items() if k.startswith("HYBRIDREC_")},
        "label": args.label,
        "tuning_label": label,
        "protocol": {
            "periods": plan.periods.to_dict(),
            "train_through": str(stage.run_partition),
            "replay_period": [str(stage.start), str(stage.end)],
            "blend": prep["params"].__dict__,
            "reranker": prep["reranker"] is not None,
            "run_params": _run_params(prep["data"].run_dir),
        },
        "sample": {
            "n_sessions": len(session_ids),
            "n_targets": len(out.targets),
            "n_skipped_repeat": out.counts.skipped_repeat,
            "n_skipped_history": out.counts.skipped_history,
            "n_skipped_unknown_item": out.counts.skipped_unknown,
            "n_sessions_unknown_user": out.counts.unknown_user_sessions,
            **{f"period_{k}": v for k, v in prep["data"].counts.items()},
        },
        "published": served["published"],
        "servers": served["servers"],
        "routes": served["routes"],
        "api": {
            "quality": api_quality,
            **shares,
            "strategies": {v: dict(c) for v, c in out.strategies.items()},
            "flags": {v: dict(c) for v, c in out.flags.items()},
            "requests": dict(out.requests),
            "responses_by_strategy": dict(out.responses),
            "retried": dict(out.retried),
            "events_posted": out.events_posted,
            "latency_client_ms": _latency(out.latency_ms),
            "wall_s": out.wall_s,
            "server_counts": counted,
            "server_counts_match": match,
            "server_counts_per_server": served["server_counts_per_server"],
        },
        "lab": {
            "quality": lab_quality,
            "seen_share_at_10": {v: float(h.mean()) for v, h in lab.had_seen.items()},
            "strategies": {v: dict(c) for v, c in lab.strategies.items()},
        },
        "agreement": replay_summary.agreement(out, lab.ranked, session_ids, lab.positions),
        "acceptance": replay_summary.acceptance(api_quality, shares),
        "timings_s": timings,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    args.data_dir = args.data_dir.resolve()
    tuning, label = _tuning(args)
    args.label = args.label or args.data_dir.name
    work = args.work_dir or CACHE_DIR / f"api-replay-{args.label}-{label}"
    out_path = args.out or RESULTS_DIR / f"api_replay_{args.label}_{label}.json"
    timings: dict[str, float] = {}
    machine = machine_info()  # the tree and the load as the run starts
    start = time.perf_counter()
    try:
        prep = prepare(args, work, tuning, timings)
        served = run_api(args, work, prep, timings)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the API and Redis stopped")
        return 130
    timings["total"] = round(time.perf_counter() - start, 3)
    payload = build_payload(args, prep, served, label, timings, machine)
    replay_summary.print_tables(payload)
    write_json(out_path, payload)
    console.print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

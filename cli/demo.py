"""`hybridrec demo`: the whole loop on one machine, with an embedded Redis unless HYBRIDREC_REDIS_URL is set.

Starts (or uses) Redis -> generates synthetic data -> ingests it -> runs the batch pipeline -> publishes
-> starts the API (uvicorn in a child process, so this module never imports the online package) with
an API key and a session secret made for this run -> calls it once to prove it works, prints the URLs of the demo storefront and the operator page, asks it for a
session id and prints ready-to-paste curl commands with real ids and the key -> serves until Ctrl-C ->
stops the API, then Redis (SIGTERM, so the AOF is flushed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pandas as pd
from rich.console import Console

from batch.daily import compare_day, gate, publish_day
from batch.ingest import ingest_interactions, ingest_items
from batch.pipeline import run_batch
from batch.synthetic.generate import generate, write_synthetic
from feature_store.embedded import EmbeddedRedis, free_port
from shared.apikeys import SCOPES, key_entry, new_api_key, new_session_secret
from shared.config import Settings, redact_url
from shared.errors import HybridrecError


@dataclass(frozen=True)
class DemoOptions:
    users: int = 5_000
    items: int = 2_000
    days: int = 14
    seed: int = 42
    port: int = 8000
    once: bool = False  # exit after the first response (used by the end-to-end test of the demo)


@contextlib.contextmanager
def _redis(settings: Settings, console: Console) -> Iterator[str]:
    if settings.redis_url:
        console.print(f"using external Redis at {redact_url(settings.redis_url)}")
        yield settings.redis_url
        return
    with EmbeddedRedis(settings.data_dir / "redis", persistent=True) as server:
        console.print(f"started embedded redis-server on {redact_url(server.url)} ({server.binary})")
        yield server.url


@contextlib.contextmanager
def _api(settings: Settings, redis_url: str, port: int, key: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "HYBRIDREC_REDIS_URL": redis_url, "HYBRIDREC_DATA_DIR": str(settings.data_dir)}
    # This run's key (every scope) and session secret: the API keeps only the key's hash.
    env |= {"HYBRIDREC_API_KEYS": key_entry(key, SCOPES), "HYBRIDREC_SESSION_SECRET": new_session_secret()}
    cmd = [sys.executable, "-m", "uvicorn", "online.app:app_from_env", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HybridrecError(f"the API exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise HybridrecError(f"the API at {base} was not ready after {timeout_s:.0f}s")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (kill, timeout, a process manager) take the same clean path as Ctrl-C."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def run_demo(settings: Settings, opts: DemoOptions, console: Console) -> None:
    t0 = time.perf_counter()
    interrupt_on_sigterm()
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    with _redis(settings, console) as redis_url:
        with console.status("generating synthetic data..."):
            data = generate(opts.users, opts.items, opts.days, opts.seed, end, n_categories=min(20, opts.items))
            paths = write_synthetic(data, settings.raw_dir)
        console.print(f"1/4 generated {len(data.interactions):,} events for {opts.users:,} users, {opts.items:,} items")
        ingest_items(paths["items"], settings.items_path)
        console.print(
            "2/4 "
            + ingest_interactions(
                paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir
            ).summary()
        )
        console.print(f"3/4 run-batch {end}:")
        run_dir = run_batch(settings, end, log=lambda name, s: console.print(f"    ✓ {name:<14} {s:6.2f}s"))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        with_store = settings.model_copy(update={"redis_url": redis_url})
        # the daily DAG's order: compare with what serves, gate, publish (the operator page shows the gate)
        verdict = gate(with_store, compare_day(with_store, end), force=True, partition=end)  # the demo publishes anyway
        outcome = publish_day(with_store, end, prune=True)
        console.print(f"4/4 {outcome.summary()}")
        console.print(f"    {verdict}")
        _report_metrics(metrics, console)

        port = opts.port or free_port()
        base = f"http://127.0.0.1:{port}"
        key = new_api_key()
        with _api(settings, redis_url, port, key) as proc:
            _wait_ready(base, proc)
            user, item = _example_ids(data.interactions)
            auth = {"authorization": f"Bearer {key}"}
            first = httpx.get(f"{base}/recommendations/{user}", params={"k": 5}, timeout=5).json()
            issued = httpx.post(f"{base}/sessions", json={"user_id": user}, headers=auth, timeout=5)
            if issued.status_code != 201:
                raise HybridrecError(f"POST /sessions answered {issued.status_code}: {issued.text[:200]}")
            console.print(
                f"\n[bold green]Demo storefront:[/] {base}/demo#key={key}\n"
                f"[bold green]Operator page:[/]   {base}/ops#key={key}\n"
                "(the key travels in the URL's fragment, which browsers never send to a server)",
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                f"[bold green]hybridrec is serving[/] at {base} (docs: {base}/docs); first response "
                f"{time.perf_counter() - t0:.1f}s after start, strategy={first['strategy']}, "
                f"version={first['model_version']}"
            )
            _print_examples(console, base, key, user, issued.json()["session_id"], item)
            if opts.once:
                return
            console.print("Press Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while proc.poll() is None:
                    time.sleep(0.5)
            console.print("stopping the API and Redis...")


def _example_ids(interactions: pd.DataFrame) -> tuple[str, str]:
    last = interactions.iloc[-1]
    return str(last["user_id"]), str(last["item_id"])


def _report_metrics(metrics: dict, console: Console) -> None:
    if not metrics.get("n_users_evaluated"):
        console.print(f"    no offline metrics: {metrics.get('note', 'nothing evaluated')}")
        return
    k, als, pop = metrics["k"], metrics["als"], metrics["popularity"]
    console.print(
        f"    holdout ({metrics['n_users_evaluated']:,} users): Recall@{k} ALS {als['recall']:.3f} vs popularity "
        f"{pop['recall']:.3f}; NDCG@{k} {als['ndcg']:.3f} vs {pop['ndcg']:.3f}"
    )


def _print_examples(console: Console, base: str, key: str, user: str, session: str, item: str) -> None:
    event = json.dumps({"session_id": session, "user_id": user, "item_id": item, "event_type": "click"})
    auth, as_json = f"-H 'authorization: Bearer {key}'", "-H 'content-type: application/json'"
    console.print(
        f"API key of this run (scopes {', '.join(SCOPES)}; writes and /metrics need it): {key}\n"
        f"Session {session} was issued for {user} by POST /sessions. Try:",
        highlight=False,
        soft_wrap=True,
    )
    for line in (
        f"curl -s '{base}/recommendations/{user}?k=5'",
        f"curl -s -X POST {base}/sessions {auth} {as_json} -d '{json.dumps({'user_id': user})}'",
        f"curl -s -X POST {base}/events {auth} {as_json} -d '{event}'",
        f"curl -s '{base}/recommendations/{user}?k=5&session_id={session}'",
        f"curl -s '{base}/items/{item}/similar?k=5'",
        f"curl -s {base}/metrics {auth}",
    ):
        console.print(f"  {line}", soft_wrap=True, highlight=False)

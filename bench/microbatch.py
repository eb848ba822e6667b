"""Micro-batching the scoring of concurrent requests (issue 11, item 4): measured, in process.

    .venv/bin/python bench/microbatch.py [--rates 250,500] [--windows 0,1,2] [--seconds 8]

One API worker's event loop, simulated with the real code and data: requests of the online
benchmark's known-user + session mix (the bench's re-ranked version, ``lab.serving``) arrive open loop
at ``--rates`` per worker (250 and 500 per worker = 500 and 1,000 req/s on the bench's 2 workers).
Each builds its pool (``online.features.build_pool``) and then either scores it at once
(``Pool.score``, window 0) or hands it to a batcher that gathers the pools that arrive within the
window (1 or 2 ms, an ``asyncio`` timer) and scores them all with ONE matrix product: the stacked raw
rows of every pool against one weight row per request, each request keeping its own block (the z
statistics differ per request, so the weights do too). Reported per rate and window: CPU per request
(process time / requests), the mean batch size, and p50/p99 of the time from arrival to scores.
Results: a table and bench/results/microbatch.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

import online_env
from common import CACHE_DIR, RESULTS_DIR, DataSpec, console, run_header, write_json


class Batcher:
    """Gathers (pool, weights, bias) for ``window_s`` after the first, then one product for all."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.pending: list[tuple[object, np.ndarray, float, asyncio.Future]] = []
        self.batches: list[int] = []

    def score(self, pool: object, weights: np.ndarray, bias: float) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((pool, weights, bias, fut))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_later(self.window_s, self._flush)
        return fut

    def _flush(self) -> None:
        from online.features import _Z_DST, _Z_SRC, RAW_FEATURES

        batch, self.pending = self.pending, []
        self.batches.append(len(batch))
        rows = np.empty((len(batch), len(RAW_FEATURES)))
        consts = np.empty(len(batch))
        for b, (pool, w, bias, _) in enumerate(batch):  # each request's z folded into its own weight row
            w_z = w[_Z_DST].astype(np.float64) * pool.z_scale  # type: ignore[attr-defined]
            rows[b] = w[: len(RAW_FEATURES)]
            rows[b, _Z_SRC] += w_z
            consts[b] = bias - float(w_z @ pool.z_mean)  # type: ignore[attr-defined]
        raw = np.hstack([p.raw for p, _, _, _ in batch])  # type: ignore[attr-defined]
        product = rows @ raw  # the one matrix product: (requests, all candidates)
        start = 0
        for b, (pool, _, _, fut) in enumerate(batch):
            n = pool.raw.shape[1]  # type: ignore[attr-defined]
            fut.set_result((product[b, start : start + n] + consts[b]).astype(np.float32))
            start += n


async def drive(requests: list, model: object, rate: float, seconds: float, window_ms: float) -> dict:
    from online.features import build_pool

    params, reranker = model.params, model.reranker  # type: ignore[attr-defined]
    weights, bias = reranker._full, reranker.bias
    batcher = Batcher(window_ms / 1000) if window_ms else None
    latencies: list[float] = []
    n = int(rate * seconds)

    async def one(features: object, due: float) -> None:
        pool = build_pool(model, features, None, params.seed_items, params.session_half_life, params.popular_pool)
        if batcher is None:
            pool.score(weights, bias)
        else:
            await batcher.score(pool, weights, bias)
        latencies.append(time.perf_counter() - due)

    tasks = []
    cpu0, t0 = time.process_time(), time.perf_counter() + 0.01
    for i in range(n):
        due = t0 + i / rate
        while (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(requests[i % len(requests)], due)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    lat = np.array(latencies) * 1000
    return {
        "rate_per_worker": rate,
        "window_ms": window_ms,
        "requests": n,
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
        "mean_batch": round(float(np.mean(batcher.batches)), 2) if batcher else 1.0,
        "latency_ms": {q: round(float(np.percentile(lat, p)), 3) for q, p in (("p50", 50), ("p99", 99))},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="250,500", help="requests/s per worker")
    p.add_argument("--windows", default="0,1,2", help="gather windows in ms (0: no batching)")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3, help="each (rate, window) this many times, interleaved")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "microbatch.json")
    args = p.parse_args(argv)
    from feature_store.base import RequestFeatures, SessionEvent
    from lab.serving import serving_model

    spec = DataSpec.for_events(100_000, 20_000, 1_200_000, 14, 42)
    data_dir = CACHE_DIR / f"online-{spec.key()}"
    _, run_dir, _ = online_env.prepare_run(spec, data_dir, True, {}, 1_000, 42)
    serving = serving_model(run_dir)
    sessions = [s for s in online_env.pick_sessions(data_dir, spec.end_date, 2_000, 5, 42) if s.known]
    requests = [
        RequestFeatures(
            serving.users.get(s.user_id or ""), [SessionEvent(e["item_id"], e["event_type"], 0.0, "") for e in s.events]
        )
        for s in sessions
    ]
    rates = [float(r) for r in args.rates.split(",")]
    windows = [float(w) for w in args.windows.split(",")]
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for rate in rates:
            for window in windows:
                got = asyncio.run(drive(requests, serving.model, rate, args.seconds, window))
                runs.setdefault(f"{rate:g}/{window:g}", []).append(got)
                console.print(
                    f"  {rate:g}/s per worker, window {window:g} ms: {got['cpu_us_per_request']:.0f} us CPU/request, "
                    f"mean batch {got['mean_batch']:.2f}, p99 {got['latency_ms']['p99']:.2f} ms"
                )
    results = {
        key: {
            "cpu_us_per_request": float(np.median([r["cpu_us_per_request"] for r in rs])),
            "mean_batch": float(np.median([r["mean_batch"] for r in rs])),
            "p50_ms": float(np.median([r["latency_ms"]["p50"] for r in rs])),
            "p99_ms": float(np.median([r["latency_ms"]["p99"] for r in rs])),
        }
        for key, rs in runs.items()
    }
    from rich.table import Table

    t = Table(title="Micro-batched scoring vs scoring at once (one worker's event loop, medians of rounds)")
    for col in ("rate/worker / window ms", "CPU us/request", "vs no batching", "mean batch", "p50 ms", "p99 ms"):
        t.add_column(col, justify="left" if col.startswith("rate") else "right")
    for key, r in results.items():
        base = results[f"{key.split('/')[0]}/0"]["cpu_us_per_request"]
        t.add_row(
            key,
            f"{r['cpu_us_per_request']:.0f}",
            f"{r['cpu_us_per_request'] / base:.2f}x",
            f"{r['mean_batch']:.2f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
        )
    console.print(t)
    write_json(
        args.out,
        {
            **run_header("microbatch", args),
            "results_median": results,
            "runs": runs,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

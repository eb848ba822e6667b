"""What the published seen sets cost a request: ``online.ranking.rank`` in process with and without them.

Loads a run directory as the API holds it after publishing (``lab.serving.serving_model``: the same
bytes), draws seeded known users and a random session of 1-7 items, and times ``rank`` for two
request shapes (known user without a session: precomputed; known user + session: hybrid, the blend)
in two variants, interleaved per request so machine noise hits both alike:

* ``seen``: the user record as published (its seen set excluded, ``exclude_seen`` on, the default);
* ``no seen``: the same record without its seen set (what a version published before seen sets, or
  ``HYBRIDREC_SEEN_MAX_ITEMS=0``, serves).

Also reports the seen set's bytes per user in the run (int32 per item, the published encoding).

    .venv/bin/python bench/seen_cost.py RUN_DIR [--requests 5000] [--seed 42]

Prints a table and writes ``bench/results/seen_cost.json``. In-process times, not HTTP: on a shared
machine the HTTP p99 moves by more than this whole difference (bench/README.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from lab.serving import serving_model
from online.blend import BlendParams
from online.ranking import rank

from common import RESULTS_DIR, console, git_state, machine_info, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "seen_cost.json")
    args = parser.parse_args()

    serving = serving_model(args.run_dir)
    model, params = serving.model, BlendParams().for_version(serving.model.bundle.meta)
    users = sorted(serving.users)
    seen_sizes = np.array([serving.users[u].arrays.get("seen", np.empty(0)).size for u in users])
    rng = np.random.default_rng(args.seed)
    item_ids = model.bundle.item_ids
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.requests):
        uid = users[int(rng.integers(len(users)))]
        with_seen = serving.users[uid]
        without = UserRecord(**{k: v for k, v in with_seen.arrays.items() if k != "seen"})
        n = int(rng.integers(1, 8))
        session = [
            SessionEvent(item_id=item_ids[int(i)], event_type="view", ts=float(t), event_id=f"e{t}")
            for t, i in enumerate(rng.integers(len(item_ids), size=n))
        ]
        for shape, events in (("precomputed", []), ("hybrid", session)):
            for variant, record in (("seen", with_seen), ("no seen", without)):
                feats = RequestFeatures(record, events, frozenset(e.item_id for e in events))
                t0 = time.perf_counter()
                rank(model, feats, 10, None, params)
                times.setdefault((shape, variant), []).append((time.perf_counter() - t0) * 1e3)

    rows = {}
    for (shape, variant), ms in times.items():
        a = np.asarray(ms)
        rows[f"{shape} / {variant}"] = {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}
    console.print(f"rank() in process, {args.requests:,} requests per cell, {args.run_dir}")
    console.print(f"  {'request / variant':<26} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in rows.items():
        console.print(f"  {name:<26} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    for shape in ("precomputed", "hybrid"):
        on, off = rows[f"{shape} / seen"], rows[f"{shape} / no seen"]
        console.print(
            f"  {shape}: seen sets add {on['p50_ms'] - off['p50_ms']:+.3f} ms at p50, "
            f"{on['p99_ms'] - off['p99_ms']:+.3f} ms at p99"
        )
    bytes_per_user = float(4 * seen_sizes.mean())
    console.print(
        f"seen set: {seen_sizes.mean():.1f} items per user (max {seen_sizes.max()}), {bytes_per_user:.0f} B per user"
    )
    write_json(
        args.out,
        {
            "rows": rows,
            "seen_items_per_user_mean": float(seen_sizes.mean()),
            "seen_items_per_user_max": int(seen_sizes.max()),
            "seen_bytes_per_user": bytes_per_user,
            "n_users": len(users),
            "args": vars(args),
            "git": git_state(),
            "machine": machine_info(),
        },
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

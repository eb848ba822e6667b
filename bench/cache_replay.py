"""Hit rates of the API's caches on a day of realistic traffic, and what the semantic cache costs in quality.

    .venv/bin/python bench/cache_replay.py [--reuse] [--sessions 3000] [--anonymous-share 0.5]

Uses the online benchmark's data set (100k users x 20k items, Zipf item popularity, sessions of 3-30
events; bench/.cache/, built if missing) and a batch run for the day BEFORE the last one (built once
with ``run_batch``), so the replayed day, the last, is out of sample. ``lab.cache_replay`` replays a
seeded sample of that day's sessions, interleaved in time, through the exact cache alone and with the
semantic cache keyed on the last 1, 2 and 3 items (module docstring there). Results: a table and
bench/results/cache_replay.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path

import online_env
from common import CACHE_DIR, RESULTS_DIR, DataSpec, console, interrupt_on_signals, run_header, step, write_json
from online_reranker import replay_frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sessions", type=int, default=3_000, help="sessions of the last day replayed")
    p.add_argument("--anonymous-share", type=float, default=0.5)
    p.add_argument("--semantic-items", default="1,2,3")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "cache_replay.json")
    args = p.parse_args(argv)
    interrupt_on_signals()
    from batch.artifacts import run_dir_for
    from batch.pipeline import is_complete, run_batch
    from lab.cache_replay import cache_replay
    from lab.replay import sample_sessions
    from lab.serving import serving_model
    from shared.config import get_settings

    spec = DataSpec.for_events(args.users, args.items, args.events, 14, args.seed)
    data_dir = CACHE_DIR / f"online-{spec.key()}"
    timings: dict[str, float] = {}
    online_env.prepare_run(spec, data_dir, args.reuse, timings, 1_000, args.seed)  # the data set (and its tuning)
    day_before = dt.date.fromisoformat(spec.end_date) - dt.timedelta(days=1)
    settings = get_settings(data_dir=data_dir)
    if not (args.reuse and is_complete(settings, day_before)):
        with step("run_batch_day_before", timings, f"run_batch {day_before} (the model of the replay)"):
            run_batch(settings, day_before)
    serving = serving_model(run_dir_for(settings.runs_dir, day_before))
    model = serving.model
    sessions = sample_sessions(replay_frame(data_dir, spec.end_date), args.sessions, args.seed)
    items = [int(n) for n in args.semantic_items.split(",")]
    with step("cache_replay", timings, f"replay {args.sessions:,} sessions of {spec.end_date} through the caches"):
        result = cache_replay(
            serving, sessions, model.params, model.reranker, items, args.anonymous_share, seed=args.seed
        )
    print_table(result)
    write_json(
        args.out,
        {
            **run_header("cache_replay", args),
            "model": {
                "version_day": str(day_before),
                "replayed_day": spec.end_date,
                "reranker": model.reranker is not None,
            },
            "blend": replace(model.params).__dict__,
            "timings_s": timings,
            "result": result,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


def print_table(r: dict) -> None:
    from rich.table import Table

    t = Table(
        title=f"{r['requests']:,} requests of {r['sessions']:,} sessions ({r['anonymous_sessions']:,} anonymous), "
        f"k={r['k']}: hit rates and HitRate@10 served vs uncached (session bootstrap 95%)"
    )
    for col in (
        "caches",
        "exact hits",
        "semantic hits",
        "of eligible",
        "all hits",
        "HitRate@10",
        "uncached",
        "delta (95%)",
    ):
        t.add_column(col, justify="left" if col == "caches" else "right")
    for name in [n for n in r if n == "exact_only" or n.startswith("semantic_")]:
        x = r[name]
        d = x["hit_rate_at_10_delta"]
        t.add_row(
            "exact" if name == "exact_only" else f"exact + semantic (last {x['semantic_items']})",
            f"{x['exact_hit_rate']:.1%}",
            f"{x['semantic_hit_rate']:.1%}",
            f"{x['semantic_hit_rate_of_eligible']:.1%}" if x["semantic_hit_rate_of_eligible"] is not None else "-",
            f"{x['any_hit_rate']:.1%}",
            f"{x['hit_rate_at_10']['served']:.4f}",
            f"{x['hit_rate_at_10']['uncached']:.4f}",
            f"{d['difference']:+.4f} ({d['ci95_low']:+.4f}..{d['ci95_high']:+.4f})",
        )
    console.print(t)
    bad = r["exact_only"]["exact_hits_not_identical"]
    console.print(f"exact hits that differed from the uncached answer: {bad} (must be 0)")


if __name__ == "__main__":
    sys.exit(main())

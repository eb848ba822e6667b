"""Publishing speed and Redis bytes per user, for the compact user record and the legacy one, in one run.

    .venv/bin/python bench/publish_speed.py [--reuse] [--batch-sizes 2000,5000] [--repeats 3]

Publishes the online benchmark's batch run (100k users x ~20k items, 64 factors, 100 candidates, the
run's seen sets; built or reused under bench/.cache/ like bench/online_latency.py) into a fresh
redis-server (no persistence), ``RedisVersionStore.write_version`` as ``hybridrec publish`` runs it:

* users/s, keys/s and MB/s of the whole ``write_version`` (check memory, item blobs, user records,
  verify, meta), and of encoding the user records alone (``codecs.encode_users``);
* Redis bytes per user: ``used_memory`` after minus before, less the item-side keys' own
  ``MEMORY USAGE``, divided by the users; and the mean encoded record.

Layouts: ``compact`` is what this code publishes (``layout.user_layout``: float16 vector, uint16 item
indices); ``legacy`` is float32 / int32, the records of every version before it. Each layout and batch
size is published ``--repeats`` times into an emptied Redis, interleaved; medians are reported.

Quality effect of the compact record (uint16 indices are lossless; the float16 vector is not): the
session replay of ``lab.replay`` (``--quality-sessions`` sessions of the last day, HitRate@10 of the
precomputed and the hybrid tier) on the run as served with each layout (``codecs.round_trip``, the
very bytes the API reads), with the session-bootstrap interval of the difference (``lab.stats``) and
the share of top-10 lists that are identical. The last day is in the model's training data, so the
replay keeps history items (``exclude_seen`` off) and measures the encodings against each other, not
the model. Results: a table and bench/results/publish_speed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import online_env
from common import CACHE_DIR, RESULTS_DIR, DataSpec, console, interrupt_on_signals, run_header, write_json

LEGACY = [["vector", "<f4"], ["candidates", "<i4"], ["seen", "<i4"]]


def publish_once(url: str, data: object, batch_size: int) -> dict:
    from feature_store import codecs
    from feature_store.redis_store import RedisStore
    from shared.config import get_settings

    settings = get_settings(redis_url=url, publish_batch_size=batch_size)
    with RedisStore.from_settings(settings) as store:
        store.client.flushall()
        before = int(store.client.info("memory")["used_memory"])
        start = time.perf_counter()
        store.versions.write_version(data)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        after = int(store.client.info("memory")["used_memory"])
        keys, ver = store.keys, data.version  # type: ignore[attr-defined]
        item_keys = [
            k for k in store.client.scan_iter(match=keys.version_pattern(ver), count=10_000) if b":u:" not in k
        ]
        item_bytes = sum(int(store.client.memory_usage(k, samples=0) or 0) for k in item_keys)
    layout = codecs.user_layout_of(data.meta)  # type: ignore[attr-defined]
    n = len(data.user_ids)  # type: ignore[attr-defined]
    t = time.perf_counter()
    records = codecs.encode_users(data, layout, range(n))  # type: ignore[arg-type]
    encode_s = time.perf_counter() - t
    record_bytes = sum(map(len, records))
    return {
        "seconds": seconds,
        "users_per_s": n / seconds,
        "keys_per_s": (n + len(item_keys) + 1) / seconds,
        "mb_per_s": (record_bytes + item_bytes) / seconds / 1e6,
        "encode_users_per_s": n / encode_s,
        "redis_bytes_per_user": (after - before - item_bytes) / n,
        "record_bytes_per_user": record_bytes / n,
        "item_side_bytes": item_bytes,
    }


def quality_effect(data: object, data_dir: Path, end: str, sessions: int, seed: int) -> dict:
    """HitRate@10 of the compact and the legacy record on the same replay (see the module docstring)."""
    from dataclasses import replace

    from feature_store.codecs import round_trip
    from lab.replay import replay_targets, sample_sessions
    from lab.serving import ServingModel
    from lab.stats import paired_difference
    from online.model import LoadedModel

    from online_reranker import replay_frame

    frame = sample_sessions(replay_frame(data_dir, end), sessions, seed)
    out: dict = {"sessions": sessions, "in_sample": True, "exclude_seen": False}  # the last day was trained on
    ranked = {}
    for name, user_record in (("compact", data.meta["user_record"]), ("legacy", LEGACY)):  # type: ignore[attr-defined]
        bundle, users = round_trip(replace(data, meta={**data.meta, "user_record": user_record}))  # type: ignore[type-var]
        model = LoadedModel.from_bundle(bundle)
        params = replace(model.params, exclude_seen=False)
        variants = ("batch_only", "hybrid", "reranked") if model.reranker else ("batch_only", "hybrid")
        ranked[name] = replay_targets(
            ServingModel(model, users), frame, 10, params, variants=variants, reranker=model.reranker
        )
    c, lg = ranked["compact"], ranked["legacy"]
    for variant in c.ranked:
        hit = {n: (r.ranked[variant] == r.targets[:, None]).any(axis=1) for n, r in ranked.items()}
        out[variant] = {
            "hit_rate_at_10": {n: round(float(h.mean()), 5) for n, h in hit.items()},
            "compact_minus_legacy": paired_difference(hit["compact"], hit["legacy"], c.sessions, seed=seed),
            "identical_top10_share": round(float((c.ranked[variant] == lg.ranked[variant]).all(axis=1).mean()), 4),
            "targets": len(c.targets),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-sizes", default="2000,5000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quality-sessions", type=int, default=2_000, help="replayed sessions for the quality effect")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "publish_speed.json")
    args = p.parse_args(argv)
    interrupt_on_signals()
    from batch.artifacts import RunArtifacts
    from batch.publish import version_data
    from feature_store.embedded import EmbeddedRedis

    spec = DataSpec.for_events(args.users, args.items, args.events, 14, args.seed)
    data_dir = CACHE_DIR / f"online-{spec.key()}"
    _, run_dir, _ = online_env.prepare_run(spec, data_dir, args.reuse, {}, 1_000, args.seed)
    compact = version_data(RunArtifacts.load(run_dir))
    layouts = {"compact": compact, "legacy": dataclasses.replace(compact, meta={**compact.meta, "user_record": LEGACY})}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs: dict[str, list[dict]] = {}
    with EmbeddedRedis() as redis:
        for r in range(args.repeats):
            for name, data in layouts.items():
                for size in sizes:
                    got = publish_once(redis.url, data, size)
                    runs.setdefault(f"{name}/{size}", []).append(got)
                    console.print(
                        f"  repeat {r + 1} {name:<8} batch {size:>6,}: {got['users_per_s']:>9,.0f} users/s, "
                        f"{got['redis_bytes_per_user']:.0f} B/user in Redis"
                    )
    results = {key: {k: round(statistics.median(x[k] for x in rs), 1) for k in rs[0]} for key, rs in runs.items()}
    print_table(results, len(compact.user_ids))
    quality = quality_effect(compact, data_dir, spec.end_date, args.quality_sessions, args.seed)
    for variant in ("batch_only", "hybrid", "reranked"):
        if variant not in quality:
            continue
        q = quality[variant]
        d = q["compact_minus_legacy"]
        console.print(
            f"{variant}: HitRate@10 compact {q['hit_rate_at_10']['compact']:.4f} vs legacy {q['hit_rate_at_10']['legacy']:.4f}"
            f" ({d['difference']:+.4f}, 95% {d['ci95_low']:+.4f}..{d['ci95_high']:+.4f}; {q['targets']:,} targets), "
            f"identical top-10 lists {q['identical_top10_share']:.1%}"
        )
    write_json(
        args.out,
        {
            **run_header("publish_speed", args),
            "version": {k: compact.meta[k] for k in ("n_users", "n_items", "n_factors", "n_candidates")},
            "layouts": {"compact": compact.meta["user_record"], "legacy": LEGACY},
            "results_median": results,
            "runs": runs,
            "quality": quality,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


def print_table(results: dict[str, dict], n_users: int) -> None:
    from rich.table import Table

    t = Table(title=f"write_version of {n_users:,} users (medians); Redis bytes per user = used_memory less item keys")
    for col in ("layout / batch", "s", "users/s", "keys/s", "MB/s", "encode users/s", "record B", "Redis B/user"):
        t.add_column(col, justify="left" if col == "layout / batch" else "right")
    for key, r in results.items():
        t.add_row(
            key,
            f"{r['seconds']:.2f}",
            f"{r['users_per_s']:,.0f}",
            f"{r['keys_per_s']:,.0f}",
            f"{r['mb_per_s']:.1f}",
            f"{r['encode_users_per_s']:,.0f}",
            f"{r['record_bytes_per_user']:.0f}",
            f"{r['redis_bytes_per_user']:.0f}",
        )
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())

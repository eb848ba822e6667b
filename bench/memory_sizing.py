"""How much Redis memory hybridrec needs: a published version, a publish, and each live event.

Publishes synthetic versions with the real shapes (``feature_store.layout``) to a fresh embedded
redis-server and reads ``used_memory`` (INFO memory) around each step:

* one version: measured bytes vs ``RedisVersionStore.estimate_bytes`` (what publish checks against
  ``maxmemory`` before it writes), and the per-key overhead that implies;
* a publish with ``keep_versions=2``: Redis holds current + previous + the new version until prune,
  so the peak is three versions;
* live events, per event: the stream entry (until compaction), the de-duplication key (for
  ``event_id_ttl_s``) and the session list + seen set (for ``session_ttl_seconds``).

    .venv/bin/python bench/memory_sizing.py                       # demo and benchmark scales
    .venv/bin/python bench/memory_sizing.py --scale 5000:2000      # users:items

Prints a table and writes ``bench/results/memory_sizing.json``. Synthetic, seeded values; sizes do
not depend on the values, only on the shapes (and id lengths).
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np

from feature_store.base import Catalogue, SessionEvent, VersionData
from feature_store.embedded import EmbeddedRedis
from feature_store.keys import ALL_CATEGORIES
from feature_store.layout import Ragged, user_layout
from feature_store.redis_memory import KEY_OVERHEAD_BYTES
from feature_store.redis_store import RedisStore
from shared.config import get_settings

from common import RESULTS_DIR, console, git_state, machine_info, write_json

MIB = 2**20


def synthetic_version(version: str, users: int, items: int, factors: int, seen_mean: int, seed: int) -> VersionData:
    rng = np.random.default_rng(seed)
    n_nb, n_cand, n_cat = 30, 100, 20
    lengths = np.minimum(rng.poisson(seen_mean, users), 500)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    categories = [f"c{j % n_cat:02d}" for j in range(items)]
    popular = {ALL_CATEGORIES: np.arange(min(500, items), dtype=np.int32)}
    popular.update({f"c{c:02d}": np.arange(c, items, n_cat, dtype=np.int32)[:500] for c in range(n_cat)})
    meta = {
        "version": version,
        "n_items": items,
        "n_users": users,
        "n_factors": factors,
        "n_neighbours": n_nb,
        "n_covisit": n_nb,
        "n_candidates": n_cand,
        "user_record": user_layout(items),
    }
    return VersionData(
        version=version,
        meta=meta,
        user_ids=[f"u{i:07d}" for i in range(users)],
        user_arrays={
            "vector": rng.standard_normal((users, factors), dtype=np.float32),
            "candidates": rng.integers(0, items, (users, n_cand), dtype=np.int32),
            "seen": Ragged(indptr, rng.integers(0, items, int(indptr[-1]), dtype=np.int32)),
        },
        catalogue=Catalogue(
            [f"i{j:06d}" for j in range(items)], categories, [f"Item {j}" for j in range(items)], [True] * items
        ),
        item_arrays={
            "item_factors": rng.standard_normal((items, factors), dtype=np.float32),
            "neighbours": rng.integers(0, items, (items, n_nb), dtype=np.int32),
            "neighbour_scores": rng.random((items, n_nb), dtype=np.float32),
            "covisit": rng.integers(0, items, (items, n_nb), dtype=np.int32),
            "covisit_scores": rng.random((items, n_nb), dtype=np.float32),
            "popularity": rng.random(items, dtype=np.float32),
        },
        popular=popular,
    )


def measure_versions(store: RedisStore, users: int, items: int, factors: int, seen_mean: int) -> dict:
    used = lambda: store.versions.memory()[0]  # noqa: E731
    versions = [f"2026-01-0{i}.{i:010x}" for i in (1, 2, 3)]
    data = [synthetic_version(v, users, items, factors, seen_mean, seed=i) for i, v in enumerate(versions)]
    n_keys = users + len(store.versions._item_blobs(data[0])) + 1
    raw = store.versions.estimate_bytes(data[0]) - n_keys * KEY_OVERHEAD_BYTES
    base = used()
    start = time.perf_counter()
    store.versions.write_version(data[0])
    seconds = time.perf_counter() - start
    one = used() - base
    store.versions.activate(versions[0])
    store.versions.write_version(data[1])
    store.versions.activate(versions[1])
    two = used() - base
    store.versions.write_version(data[2])  # before prune: current + previous + new
    peak = used() - base
    store.versions.activate(versions[2])
    store.versions.prune(keep=2)
    after = used() - base
    return {
        "users": users,
        "items": items,
        "factors": factors,
        "seen_mean": seen_mean,
        "keys_per_version": n_keys,
        "version_bytes": one,
        "estimate_bytes": store.versions.estimate_bytes(data[0]),
        "key_and_value_bytes": raw,
        "overhead_per_key": (one - raw) / n_keys,
        "bytes_per_user": one / users,
        "two_versions_bytes": two,
        "publish_peak_bytes": peak,
        "after_prune_bytes": after,
        "publish_seconds": seconds,
    }


def measure_events(store: RedisStore, n: int = 50_000, per_session: int = 10) -> dict:
    used = lambda: store.versions.memory()[0]  # noqa: E731
    store.client.flushall()
    events = [
        SessionEvent(
            f"i{i % 20_000:06d}", "click", time.time(), uuid.uuid4().hex, f"u{i:07d}", f"s-{i // per_session:08d}"
        )
        for i in range(n)
    ]
    base = used()
    for start in range(0, n, 500):
        store.events.append(events[start : start + 500])
    total = used() - base
    stream_only = store.client.memory_usage(store.keys.events_stream, samples=0) or 0
    dedup = sum(store.client.memory_usage(store.keys.event_id(ev.event_id), samples=0) or 0 for ev in events[:2_000])
    dedup_per_event = dedup / 2_000
    return {
        "events": n,
        "events_per_session": per_session,
        "bytes_per_event_total": total / n,
        "stream_bytes_per_event": stream_only / n,
        "dedup_bytes_per_event": dedup_per_event,
        "session_bytes_per_event": total / n - stream_only / n - dedup_per_event,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="append", help="users:items (repeatable); default 5000:2000 and 100000:20000")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seen-mean", type=int, default=50, help="mean items per user's seen set")
    args = parser.parse_args()
    scales = [tuple(int(x) for x in s.split(":")) for s in (args.scale or ["5000:2000", "100000:20000"])]
    rows = []
    with EmbeddedRedis() as server:
        store = RedisStore.from_settings(get_settings(redis_url=server.url))
        for users, items in scales:
            store.client.flushall()
            rows.append(measure_versions(store, users, items, args.factors, args.seen_mean))
        events = measure_events(store)
        redis_version = store.client.info("server")["redis_version"]
        store.close()
    console.print(f"Redis {redis_version}; per-key overhead assumed by publish's estimate: {KEY_OVERHEAD_BYTES} B")
    console.print(
        "| users | items | version MiB | estimate MiB | B/user | overhead B/key | 2 versions MiB | publish peak MiB |"
    )
    console.print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        console.print(
            f"| {r['users']:,} | {r['items']:,} | {r['version_bytes'] / MIB:.1f} | {r['estimate_bytes'] / MIB:.1f} | "
            f"{r['bytes_per_user']:.0f} | {r['overhead_per_key']:.0f} | {r['two_versions_bytes'] / MIB:.1f} | "
            f"{r['publish_peak_bytes'] / MIB:.1f} |"
        )
    console.print(
        f"live events ({events['events_per_session']} per session): {events['bytes_per_event_total']:.0f} B each = "
        f"stream {events['stream_bytes_per_event']:.0f} + dedup key {events['dedup_bytes_per_event']:.0f} + "
        f"session {events['session_bytes_per_event']:.0f}"
    )
    write_json(
        RESULTS_DIR / "memory_sizing.json",
        {"redis_version": redis_version, "versions": rows, "events": events, "machine": machine_info(), **git_state()},
    )


if __name__ == "__main__":
    main()

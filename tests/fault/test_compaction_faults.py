"""``hybridrec compact`` killed with SIGKILL at seeded random points while events keep arriving: after a
final run every event is in the dataset exactly once (no loss, no duplicate row)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_store.base import SessionEvent
from feature_store.embedded import EmbeddedRedis
from feature_store.keys import COMPACTION_GROUP
from feature_store.redis_store import RedisStore
from tests.fault.conftest import World, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]
N_EVENTS = 4_000


def _rows(interactions: Path) -> Counter[str]:
    """event_id -> how many raw rows hold it, over every part the stream compaction wrote."""
    ids: Counter[str] = Counter()
    for part in interactions.glob("date=*/part-stream-*.parquet"):
        ids.update(pq.read_table(part, columns=["event_id"]).column("event_id").to_pylist())
    return ids


def test_compaction_killed_at_random_points_writes_each_event_once(
    world: World, server: EmbeddedRedis, client, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    interactions = data / "interactions"
    store = RedisStore.from_settings(world.settings(server.url))
    events = [
        SessionEvent(f"i{i % 300:05d}", "view", 1_775_000_000.0 + i * 37.0, f"k{i:05d}", f"u{i % 50}", f"s{i % 40}")
        for i in range(N_EVENTS)
    ]

    def produce() -> None:
        for start in range(0, N_EVENTS, 100):
            store.events.append(events[start : start + 100])
            time.sleep(0.02)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        parts = len(list(interactions.glob("date=*/part-stream-*.parquet")))
        proc = world.start_cli(server.url, "compact", "--batch-size", "50", data_dir=str(data))
        want = parts + rng.randint(1, 6)
        wait_for(
            lambda: len(list(interactions.glob("date=*/part-stream-*.parquet"))) >= want or proc.poll() is not None,  # noqa: B023
            "compaction to write some parts",
            timeout=120,
            every=0.002,
        )
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
    producer.join(60)
    final = world.cli(server.url, "compact", "--batch-size", "50", data_dir=str(data))
    assert final.returncode == 0, final.stderr
    rows = _rows(interactions)
    assert kills >= 2, "the compactor was never caught running"
    assert set(rows) == {ev.event_id for ev in events}, f"{N_EVENTS - len(rows)} events missing"
    assert max(rows.values()) == 1, [e for e, n in rows.items() if n > 1][:10]
    assert client.xlen("hr:events") == 0 and client.xpending("hr:events", COMPACTION_GROUP)["pending"] == 0
    store.close()

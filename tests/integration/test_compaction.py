"""Compaction of the live events stream against a real redis-server and a real 3-node Redis Cluster: every
event lands in the Parquet dataset exactly once, bad ones in quarantine, and a run killed before its
acknowledgement is retried without loss or duplicates."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from batch.compaction import compact_events
from batch.dataset import INTERACTION_SCHEMA, load_interactions
from feature_store.base import SessionEvent
from feature_store.keys import COMPACTION_GROUP
from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.errors import StoreUnavailable
from shared.schemas import EVENT_WEIGHTS
from tests.support import tiny
from tests.support.modes import both_modes, node_of
from tests.support.server import serve

pytestmark = [pytest.mark.integration, both_modes]
BIN = Path(sys.executable).parent / "hybridrec"
DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TYPES = ("view", "click", "purchase")


def _event(i: int, days: int = 3) -> SessionEvent:
    """Event i: day i % days, a millisecond-precise time, an explicit weight on every 4th."""
    ts = (DAY0 + dt.timedelta(days=i % days, seconds=i, milliseconds=i % 1000)).timestamp()
    return SessionEvent(
        item_id=f"i{i % 17}",
        event_type=TYPES[i % 3],
        ts=ts,
        event_id=f"e{i:06d}",
        user_id=f"u{i % 11}",
        session_id=f"s{i % 5}" if i % 2 else None,
        weight=0.5 * i if i % 4 == 0 else None,
    )


def _raw_rows(settings: Settings) -> pd.DataFrame:
    """Every row of every stream part, NOT de-duplicated, with the partition date it sits in."""
    files = sorted(str(p) for p in settings.interactions_dir.glob("date=*/part-stream-*.parquet"))
    if not files:
        return pd.DataFrame(columns=[*INTERACTION_SCHEMA.names, "partition"])
    by_date = pads.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    base = str(settings.interactions_dir)
    table = pads.dataset(files, format="parquet", partitioning=by_date, partition_base_dir=base).to_table()
    return table.to_pandas().rename(columns={"date": "partition"})


def _quarantined(settings: Settings) -> pd.DataFrame:
    paths = sorted(settings.quarantine_dir.glob("stream-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_rows_match(rows: pd.DataFrame, events: list[SessionEvent]) -> None:
    """One row per event, each holding that event's values, in the partition of its UTC date."""
    when = pd.to_datetime([round(ev.ts * 1000) for ev in events], unit="ms", utc=True).as_unit("us")
    want = pd.DataFrame(
        {
            "event_id": [ev.event_id for ev in events],
            "user_id": [ev.user_id for ev in events],
            "item_id": [ev.item_id for ev in events],
            "event_type": [ev.event_type for ev in events],
            "ts": when,
            "weight": [EVENT_WEIGHTS[ev.event_type] if ev.weight is None else ev.weight for ev in events],
            "session_id": [ev.session_id for ev in events],
            "partition": when.strftime("%Y-%m-%d"),
        }
    )
    got = rows[list(want.columns)].sort_values("event_id", ignore_index=True)
    pd.testing.assert_frame_equal(got, want.sort_values("event_id", ignore_index=True), check_dtype=False)


def test_the_consumer_reads_pending_entries_first_and_ack_removes_them(store: RedisStore) -> None:
    store.events.append([_event(i) for i in range(5)])
    store.events.ensure_consumer_group("g")
    store.events.ensure_consumer_group("g")  # exists already: a no-op, not an error
    first = store.events.read_events("g", "c1", 3, pending_first=False)
    assert [ev for _, ev in first] == [_event(i) for i in range(3)]  # every field decoded back
    # pending entries come back first, and are not topped up with the 2 new ones
    assert store.events.read_events("g", "c1", 10, pending_first=True) == first
    # a consumer with nothing pending gets the new entries
    assert [ev for _, ev in store.events.read_events("g", "c2", 10, pending_first=True)] == [_event(3), _event(4)]
    assert (
        store.events.pending_count("g"),
        store.events.pending_count("g", "c1"),
        store.events.pending_count("g", "nobody"),
    ) == (5, 3, 0)
    assert store.events.ack_events("g", [sid for sid, _ in first]) == 3
    assert store.events.stream_length() == 2 and store.events.pending_count("g", "c1") == 0
    assert store.events.read_events("g", "c1", 10, pending_first=True) == []


def test_events_posted_through_the_api_are_compacted_once_each(settings: Settings, store: RedisStore) -> None:
    store.versions.write_version(tiny.version_data())
    store.versions.activate("2026-01-01.00000000aa")
    events = [_event(i) for i in range(600)]
    # auth off, so the API takes these client-chosen session ids as they are (the mode this test also covers)
    with serve(settings.model_copy(update={"auth": "off"})) as base, httpx.Client(base_url=base) as api:
        for start in range(0, len(events), 250):
            body = [
                {
                    "event_id": ev.event_id,
                    "user_id": ev.user_id,
                    "session_id": ev.session_id or "anonymous-visit",
                    "item_id": ev.item_id,
                    "event_type": ev.event_type,
                    "ts": dt.datetime.fromtimestamp(ev.ts, dt.UTC).isoformat(),
                    **({"weight": ev.weight} if ev.weight is not None else {}),
                }
                for ev in events[start : start + 250]
            ]
            r = api.post("/events", json=body)
            assert r.status_code == 202, r.text
    events = [ev if ev.session_id else _with_session(ev, "anonymous-visit") for ev in events]
    assert store.events.stream_length() == 600

    seen: list[int] = []
    report = compact_events(store.events, settings, batch_size=64, progress=seen.append)

    assert (report.events_read, report.rows_written, report.rows_quarantined) == (600, 600, 0)
    assert report.batches == 10 and sum(seen) == 600
    assert report.partitions == ["2026-03-01", "2026-03-02", "2026-03-03"]
    _assert_rows_match(_raw_rows(settings), events)
    assert store.events.stream_length() == 0 and store.events.pending_count(COMPACTION_GROUP) == 0
    loaded = load_interactions(settings.interactions_dir, dt.date(2026, 3, 3), 3)
    assert len(loaded) == 600

    before = _snapshot(settings.data_dir)
    again = compact_events(store.events, settings, batch_size=64)
    assert (again.events_read, again.batches) == (0, 0)
    assert _snapshot(settings.data_dir) == before


def _with_session(ev: SessionEvent, session_id: str) -> SessionEvent:
    return SessionEvent(ev.item_id, ev.event_type, ev.ts, ev.event_id, ev.user_id, session_id, ev.weight)


def test_bad_entries_are_quarantined_with_a_reason_and_acknowledged(settings: Settings, store: RedisStore) -> None:
    client, stream = store.client, store.keys.events_stream
    good = [_event(i) for i in range(4)]
    store.events.append(good[:2])
    fields = {"event_id": "x1", "user_id": "u1", "session_id": "", "item_id": "i1", "ts": "1772323200.0", "weight": ""}
    client.xadd(stream, {**fields, "event_type": "like"})
    client.xadd(stream, {**fields, "event_id": "x2", "event_type": "view", "ts": "yesterday"})
    client.xadd(stream, {**fields, "event_id": "x3", "event_type": "view", "user_id": ""})  # anonymous
    client.xadd(stream, {**fields, "event_id": "", "event_type": "view"})
    client.xadd(stream, {**fields, "event_id": "x5", "event_type": "click", "weight": "-1.0"})
    store.events.append(good[2:])
    # an entry handed to the compactor and then deleted from the stream before it was acknowledged
    store.events.ensure_consumer_group(COMPACTION_GROUP)
    gone = client.xadd(stream, {**fields, "event_id": "x6", "event_type": "view"}).decode()
    store.events.read_events(COMPACTION_GROUP, "compactor", 100, pending_first=False)  # all 10 now pending
    client.xdel(stream, gone)

    report = compact_events(store.events, settings, batch_size=100)

    assert (report.events_read, report.rows_written, report.rows_quarantined) == (10, 4, 6)
    _assert_rows_match(_raw_rows(settings), good)
    bad = _quarantined(settings).set_index("stream_id")
    deleted = bad.loc[gone]
    assert deleted["event_id"] == "" and deleted["reason"].startswith("the stream entry has no fields")
    bad = bad.drop(index=gone).set_index("event_id")
    assert "event_type 'like' is not one of view" in bad.loc["x1", "reason"]
    assert bad.loc["x2", "reason"] == "ts 'nan' is not an ISO-8601 time or epoch seconds"
    assert bad.loc["x3", "reason"] == "user_id is empty (an anonymous event needs a session_id)"
    assert bad.loc["", "reason"] == "event_id is empty"
    assert bad.loc["x5", "reason"] == "weight '-1.0' is negative"
    assert bad.loc["x1", "event_type"] == "like" and bad.loc["x2", "ts"] == "nan"
    assert dict(report.bad_reasons) == {
        "bad_event_type": 1,
        "bad_ts": 1,
        "missing_user_id": 1,
        "missing_event_id": 1,
        "bad_weight": 1,
        "deleted_entry": 1,
    }
    # acknowledged and deleted: nothing is read again
    assert store.events.stream_length() == 0 and store.events.pending_count(COMPACTION_GROUP) == 0
    assert compact_events(store.events, settings).events_read == 0


def test_a_compaction_killed_before_its_acknowledgement_is_retried_without_loss_or_duplicates(
    settings: Settings, store: RedisStore
) -> None:
    """Freeze Redis writes (CLIENT PAUSE WRITE) while the compactor holds a batch it has read but not
    acknowledged, let it write that batch's files, SIGKILL it, and rerun with another batch size."""
    client, stream = store.client, store.keys.events_stream
    n = 3_000
    events = [_event(i) for i in range(n)]
    store.events.append(events[:100])
    client.xadd(stream, {"event_id": "bad1", "user_id": "u1", "item_id": "i1", "event_type": "like", "ts": "1.0e9"})
    store.events.append(events[100:])
    client.xadd(stream, {"event_id": "bad2", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "soon"})
    total = n + 2
    env = {**os.environ, "HYBRIDREC_REDIS_URL": settings.redis_url or "", "HYBRIDREC_DATA_DIR": str(settings.data_dir)}
    parts = settings.interactions_dir
    node = node_of(store, stream)  # on a cluster, the node that holds the stream is the one to pause

    proc = subprocess.Popen(
        [str(BIN), "compact", "--batch-size", "40"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    paused = False
    try:
        deadline = time.monotonic() + 30
        while len({p.name for p in parts.glob("date=*/part-stream-*.parquet")}) < 5:  # a few batches in
            assert time.monotonic() < deadline and proc.poll() is None, "compaction never got going"
            time.sleep(0.01)
        # Pause until we catch the compactor holding a batch (it reads with XREADGROUP, a write, so
        # a pause can also find it between batches; then let it run on and try again).
        for _ in range(200):
            node.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
            paused = True
            held = client.xpending(stream, COMPACTION_GROUP)
            if held["pending"]:
                break
            node.execute_command("CLIENT", "UNPAUSE")
            paused = False
            time.sleep(0.002)
        assert held["pending"] == 40, "never caught the compactor holding a batch"
        tag = f"part-stream-{held['min'].decode()}-{held['max'].decode()}.parquet"
        days = {
            dt.datetime.fromtimestamp(float(f[b"ts"]), dt.UTC).date()
            for _, f in client.xrange(stream, held["min"], held["max"])
            if not f[b"event_id"].startswith(b"bad")  # those go to quarantine
        }
        expected = {parts / f"date={d.isoformat()}" / tag for d in days}
        while not all(p.exists() for p in expected):  # its files get written; then it blocks on the ack
            assert time.monotonic() < deadline, "the held batch was never written"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if paused:
            node.execute_command("CLIENT", "UNPAUSE")
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # killed between writing and acknowledging: the batch is on disk AND still in the stream, pending
    left = client.xlen(stream)
    assert 0 < left < total and client.xpending(stream, COMPACTION_GROUP)["pending"] == 40
    on_disk = len(_raw_rows(settings)) + sum(len(pq.read_table(p)) for p in settings.quarantine_dir.glob("*.parquet"))
    assert on_disk >= total - left + 40, "an event left the stream before it was on disk"

    rerun = compact_events(store.events, settings, batch_size=39)  # a smaller batch size: same file names
    assert rerun.events_read == left

    rows = _raw_rows(settings)
    assert len(rows) == n and rows["event_id"].nunique() == n  # raw rows: no duplicate at all
    assert set(rows["event_id"]) == {ev.event_id for ev in events}
    _assert_rows_match(rows, events)
    bad = _quarantined(settings)
    assert sorted(bad["event_id"]) == ["bad1", "bad2"] and bad["reason"].str.len().gt(0).all()
    assert client.xlen(stream) == 0 and client.xpending(stream, COMPACTION_GROUP)["pending"] == 0
    assert len(load_interactions(parts, dt.date(2026, 3, 3), 3)) == n


def test_an_unreachable_redis_is_reported_as_unavailable(settings: Settings) -> None:
    store = RedisStore.from_settings(settings, url="redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
        compact_events(store.events, settings)
    assert not settings.data_dir.exists()


def test_an_anonymous_visitors_events_are_written_for_training(settings: Settings, store: RedisStore) -> None:
    """No user but a session: accepted by the API and stored (user_id null), so co-visitation and
    popularity learn from it; the stream's 202 means it reaches training."""
    visit = [_with_session(SessionEvent(f"i{n}", "view", _event(n).ts, f"a{n}", None, None), "visit-1") for n in (1, 2)]
    store.events.append(visit)
    report = compact_events(store.events, settings)
    assert (report.rows_written, report.rows_quarantined) == (2, 0)
    rows = _raw_rows(settings)
    assert rows["user_id"].isna().all() and set(rows["session_id"]) == {"visit-1"}

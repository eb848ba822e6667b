"""Drain the live events stream (``p:events``) into the date-partitioned interaction dataset.

Every event the API accepts is XADDed to the stream. Compaction reads it through the consumer group
``keys.COMPACTION_GROUP`` in batches and, for each batch:

1. validates every event with the rules of file ingest (ids present and at most MAX_ID_LENGTH long,
   a known event type, a ts inside 1970..2099, a finite non-negative weight or the type's default)
   plus one of its own: an event_id is required, because it is what de-duplicates;
2. writes the good rows, one part per UTC date of their ts, to
   ``<interactions_dir>/date=YYYY-MM-DD/part-stream-<first-id>-<last-id>.parquet`` and the bad ones
   to ``<quarantine_dir>/stream-<first-id>-<last-id>.parquet`` with a ``reason`` each (never
   dropped), every file via a temporary name and a rename, then fsyncs them;
3. only then acknowledges and deletes the batch's entries (XACK, then XDEL: no MULTI, which a Redis
   at maxmemory refuses, so compaction drains a full Redis too).

Delivery guarantee: **exactly-once effect on training**, built from three parts.

* At-least-once delivery: an entry leaves the stream only after its rows are durably on disk. A run
  killed anywhere before step 3 leaves its batch in the consumer's pending-entries list, and the next
  run starts by re-reading that batch, whole (each batch is acknowledged before the next is read, so
  the list holds at most that one batch), before it asks for new entries.
* Idempotent writes: file names come from the batch's stream-id range, and a re-read batch has the
  same range and the same rows, so a retry overwrites the files of the killed attempt instead of
  adding to them (whatever ``batch_size`` the retry uses). Raw rows on disk = events, once each.
* De-duplication at load: :func:`batch.dataset.load_interactions` keeps one row per event_id, so even
  an event that reaches the dataset twice by another road (a client re-posting it with the same
  event_id, or a file ingested as well) counts once.

A run stops once it has caught up: when a read returns fewer than ``batch_size`` events. Events that
arrive later wait in the stream for the next run.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from batch.dataset import INTERACTION_SCHEMA, partition_dir, write_parquet_atomic
from batch.ingest import TS_RANGE_S
from feature_store.base import EventLog, ProgressFn, SessionEvent
from feature_store.keys import COMPACTION_GROUP
from shared.config import Settings
from shared.errors import ConfigError
from shared.schemas import DATE_FORMAT, EVENT_TYPES, EVENT_WEIGHTS, MAX_ID_LENGTH

QUARANTINE_COLUMNS = (
    "stream_id",
    "event_id",
    "user_id",
    "session_id",
    "item_id",
    "event_type",
    "ts",
    "weight",
    "reason",
)
_US_PER_DAY = 86_400 * 1_000_000


@dataclass
class CompactionReport:
    """What one run did. rows_written + rows_quarantined == events_read; ``bad_reasons`` counts
    problem kinds (an event with two problems counts twice)."""

    events_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    partitions: list[str] = field(default_factory=list)
    quarantine_paths: list[Path] = field(default_factory=list)
    bad_reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.events_read / self.seconds if self.seconds > 0 else 0.0
        where = f"{len(self.partitions)} partition(s)"
        if self.partitions:
            where += f" {self.partitions[0]}..{self.partitions[-1]}"
        text = (
            f"compacted {self.events_read:,} live events in {self.batches} batch(es), {self.seconds:.2f}s "
            f"({rate:,.0f} events/s): {self.rows_written:,} rows -> {where}, {self.rows_quarantined:,} quarantined"
        )
        if self.rows_quarantined:
            kinds = ", ".join(f"{k}={n}" for k, n in sorted(self.bad_reasons.items()))
            text += f" -> {self.quarantine_paths[0].parent} ({kinds})"
        return text


def compact_events(
    store: EventLog,
    settings: Settings,
    consumer: str = "compactor",
    batch_size: int = 5_000,
    progress: ProgressFn | None = None,
) -> CompactionReport:
    """Move every event now in the stream into the dataset (see the module docstring for the guarantee).

    ``consumer`` names this reader inside the group: a retry must use the same name to pick up a killed
    run's batch. ``progress`` is called with the number of events of each batch once it is acknowledged.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    report = CompactionReport()
    partitions: set[str] = set()
    if not store.ensure_consumer_group(COMPACTION_GROUP):  # no stream yet: nothing was ever appended
        report.seconds = time.perf_counter() - started
        return report
    # A killed run's batch is re-read whole, so that its id range, hence its file names, repeat.
    left_over = store.pending_count(COMPACTION_GROUP, consumer)
    if left_over:
        batch = store.read_events(COMPACTION_GROUP, consumer, left_over, pending_first=True)
        _compact_batch(store, settings, batch, report, partitions, progress)
    while True:
        batch = store.read_events(COMPACTION_GROUP, consumer, batch_size, pending_first=False)
        _compact_batch(store, settings, batch, report, partitions, progress)
        if len(batch) < batch_size:
            break
    report.partitions = sorted(partitions)
    report.seconds = time.perf_counter() - started
    return report


def _compact_batch(
    store: EventLog,
    settings: Settings,
    batch: Sequence[tuple[str, SessionEvent]],
    report: CompactionReport,
    partitions: set[str],
    progress: ProgressFn | None,
) -> None:
    """Write one batch (good rows by date, bad rows to quarantine), make it durable, then ack it."""
    if not batch:
        return
    tag = f"stream-{batch[0][0]}-{batch[-1][0]}"
    good: list[tuple[SessionEvent, int, float]] = []  # event, ts in µs, weight
    bad: list[tuple[str, SessionEvent, list[str]]] = []
    for stream_id, event in batch:
        problems = validate_event(event)
        if problems:
            bad.append((stream_id, event, [message for _, message in problems]))
            report.bad_reasons.update(kind for kind, _ in problems)
        else:
            weight = EVENT_WEIGHTS[_event_type(event)] if event.weight is None else event.weight
            good.append((event, round(event.ts * 1_000_000), weight))
    parts = _write_by_date(good, settings.interactions_dir, f"part-{tag}.parquet")
    written = list(parts.values())
    if bad:
        path = settings.quarantine_dir / f"{tag}.parquet"
        write_parquet_atomic(_quarantine_table(bad), path)
        written.append(path)
        report.quarantine_paths.append(path)
    _fsync(written)
    store.ack_events(COMPACTION_GROUP, [stream_id for stream_id, _ in batch])
    report.events_read += len(batch)
    report.rows_written += len(good)
    report.rows_quarantined += len(bad)
    report.batches += 1
    partitions.update(day.strftime(DATE_FORMAT) for day in parts)
    if progress:
        progress(len(batch))


def validate_event(event: SessionEvent) -> list[tuple[str, str]]:
    """Problems of one decoded stream event as (kind, message); empty when it may be written.

    Same rules and kinds as :mod:`batch.ingest`, plus ``missing_event_id`` and ``deleted_entry`` (an
    entry removed from the stream while it was pending, which has no fields left).
    """
    if not (event.event_id or event.item_id or event.event_type or event.user_id) and math.isnan(event.ts):
        return [("deleted_entry", "the stream entry has no fields (deleted or trimmed before it was compacted)")]
    problems = []
    for name, value in (("event_id", event.event_id), ("user_id", event.user_id), ("item_id", event.item_id)):
        text = (value or "").strip()
        if not text:
            problems.append((f"missing_{name}", f"{name} is empty"))
        elif len(text) > MAX_ID_LENGTH:
            problems.append((f"long_{name}", f"{name} is {len(text)} characters long (max {MAX_ID_LENGTH})"))
    if event.session_id and len(event.session_id.strip()) > MAX_ID_LENGTH:
        n = len(event.session_id.strip())
        problems.append(("long_session_id", f"session_id is {n} characters long (max {MAX_ID_LENGTH})"))
    if _event_type(event) not in EVENT_WEIGHTS:
        problems.append(("bad_event_type", f"event_type {event.event_type!r} is not one of {', '.join(EVENT_TYPES)}"))
    lo, hi = TS_RANGE_S
    if math.isnan(event.ts):
        problems.append(("bad_ts", "ts is not unix seconds"))
    elif not lo <= event.ts < hi:
        problems.append(("bad_ts", f"ts {event.ts!r} is outside 1970..2099 (epoch times must be in seconds)"))
    if event.weight is not None and not (math.isfinite(event.weight) and event.weight >= 0):
        problems.append(("bad_weight", f"weight {event.weight!r} is not a finite, non-negative number"))
    return problems


def _event_type(event: SessionEvent) -> str:
    return event.event_type.strip().lower()


def _id(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def _write_by_date(
    rows: list[tuple[SessionEvent, int, float]], interactions_dir: Path, name: str
) -> dict[dt.date, Path]:
    """One part named ``name`` per UTC date of the rows' ts (µs), rows in stream order."""
    by_day: dict[int, list[tuple[SessionEvent, int, float]]] = {}
    for row in rows:
        by_day.setdefault(row[1] // _US_PER_DAY, []).append(row)
    paths = {}
    for day, day_rows in sorted(by_day.items()):
        table = pa.table(
            {
                "user_id": [_id(ev.user_id) for ev, _, _ in day_rows],
                "item_id": [_id(ev.item_id) for ev, _, _ in day_rows],
                "event_type": [_event_type(ev) for ev, _, _ in day_rows],
                "ts": pa.array([us for _, us, _ in day_rows], pa.timestamp("us", tz="UTC")),
                "weight": [w for _, _, w in day_rows],
                "session_id": [_id(ev.session_id) for ev, _, _ in day_rows],
                "event_id": [_id(ev.event_id) for ev, _, _ in day_rows],
            },
            schema=INTERACTION_SCHEMA,
        )
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        paths[date] = partition_dir(interactions_dir, date) / name
        write_parquet_atomic(table, paths[date])
    return paths


def _quarantine_table(bad: list[tuple[str, SessionEvent, list[str]]]) -> pa.Table:
    """Bad events, every field as text (ts and weight as decoded: ``nan`` where the stream held
    something that is not a number), plus the stream id and the joined reasons."""
    records = [
        (
            stream_id,
            ev.event_id,
            ev.user_id or "",
            ev.session_id or "",
            ev.item_id,
            ev.event_type,
            repr(ev.ts),
            "" if ev.weight is None else repr(ev.weight),
            "; ".join(reasons),
        )
        for stream_id, ev, reasons in bad
    ]
    columns = zip(*records, strict=True)
    return pa.table(dict(zip(QUARANTINE_COLUMNS, (pa.array(c, pa.string()) for c in columns), strict=True)))


def _fsync(paths: list[Path]) -> None:
    """Flush the files and their directory entries to disk: acknowledging deletes the stream's copy,
    so the dataset's copy must survive a power cut, not only a killed process. Grandparents too,
    because a batch may have just created its ``date=`` directory."""
    dirs = {p.parent for p in paths} | {p.parent.parent for p in paths}
    for path in [*paths, *sorted(dirs)]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Drain the live events stream (``p:events``) into the date-partitioned interaction dataset.

Every event the API accepts is XADDed to the stream. Compaction reads it through the consumer group
``keys.COMPACTION_GROUP`` in batches and, for each batch:

1. judges every event by the interaction contract (:mod:`batch.contract`, the rules of file ingest
   too), with the event_id required, because it is what de-duplicates;
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

import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from batch.contract import Problems, check_interactions, kinds_text, partitions_text, write_partitions
from batch.dataset import write_parquet_atomic
from feature_store.base import EventLog, ProgressFn, SessionEvent
from feature_store.keys import COMPACTION_GROUP
from shared.config import Settings
from shared.errors import ConfigError
from shared.schemas import DATE_FORMAT

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
        text = (
            f"compacted {self.events_read:,} live events in {self.batches} batch(es), {self.seconds:.2f}s "
            f"({rate:,.0f} events/s): {self.rows_written:,} rows -> {partitions_text(self.partitions)}, "
            f"{self.rows_quarantined:,} quarantined"
        )
        if self.rows_quarantined:
            text += f" -> {self.quarantine_paths[0].parent} ({kinds_text(self.bad_reasons)})"
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
    events = [event for _, event in batch]
    problems = Problems(len(events))
    deleted = np.array([_is_deleted(event) for event in events], dtype=bool)
    problems.add(
        "deleted_entry", deleted, "the stream entry has no fields (deleted or trimmed before it was compacted)"
    )
    rows = check_interactions(_frame(events), problems, ~deleted, require_event_id=True)
    parts = write_partitions(rows, ~problems.bad, settings.interactions_dir, f"part-{tag}.parquet")
    written = list(parts.values())
    if problems.bad.any():
        path = settings.quarantine_dir / f"{tag}.parquet"
        write_parquet_atomic(_quarantine_table(batch, problems), path)
        written.append(path)
        report.quarantine_paths.append(path)
    _fsync(written)
    store.ack_events(COMPACTION_GROUP, [stream_id for stream_id, _ in batch])
    report.events_read += len(batch)
    report.rows_quarantined += int(problems.bad.sum())
    report.rows_written += len(batch) - int(problems.bad.sum())
    report.bad_reasons.update(problems.kinds)
    report.batches += 1
    partitions.update(day.strftime(DATE_FORMAT) for day in parts)
    if progress:
        progress(len(batch))


def _is_deleted(event: SessionEvent) -> bool:
    """An entry removed from the stream while it was pending comes back with no fields at all."""
    return not (event.event_id or event.item_id or event.event_type or event.user_id) and math.isnan(event.ts)


def _frame(events: Sequence[SessionEvent]) -> pd.DataFrame:
    """Decoded stream events as the contract's input frame (n,). ts stays float seconds (NaN where the
    stream held something else); weight becomes text, "" where absent, so that an unreadable weight
    (NaN) is told apart from a missing one, as in a CSV file."""
    return pd.DataFrame(
        {
            "user_id": [event.user_id or "" for event in events],
            "item_id": [event.item_id for event in events],
            "event_type": [event.event_type for event in events],
            "ts": np.array([event.ts for event in events], dtype=np.float64),
            "weight": ["" if event.weight is None else repr(event.weight) for event in events],
            "session_id": [event.session_id or "" for event in events],
            "event_id": [event.event_id for event in events],
        }
    )


def _quarantine_table(batch: Sequence[tuple[str, SessionEvent]], problems: Problems) -> pa.Table:
    """The bad events of ``batch``, every field as text (ts and weight as decoded: ``nan`` where the
    stream held something that is not a number), plus the stream id and the joined reasons."""
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
            str(problems.reason[i]),
        )
        for i, (stream_id, ev) in enumerate(batch)
        if problems.bad[i]
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

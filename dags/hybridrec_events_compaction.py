"""hybridrec_events_compaction: drain the live events the API accepted into the interaction dataset.

Wiring only: the task body is a local import and one call into ``batch.compaction``. The API appends
every accepted event to the Redis stream ``<prefix>:events``; this job reads it through a consumer
group, writes each batch to ``interactions/date=YYYY-MM-DD/part-stream-<first>-<last>.parquet``
(names derived from the stream ids, so a retried batch overwrites the same files), and only then
acknowledges and deletes those entries. Killed half-way, the retry re-reads the un-acknowledged
batch: no event is lost, and none is counted twice (loading also de-duplicates by event_id).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

DOC = """
### hybridrec live-event compaction (hourly)

Drains the Redis stream of accepted live events into the date-partitioned Parquet dataset so the
next daily training sees today's clicks. At-least-once delivery + idempotent file names +
event_id de-duplication = each event counted exactly once. Bad events go to
`<data_dir>/quarantine/` with a reason and are acknowledged (never retried forever).

*If it fails*: Redis unreachable -> it retries with backoff; nothing is acknowledged before it is
written, so simply clearing the task is always safe.
"""


@dag(
    dag_id="hybridrec_events_compaction",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["hybridrec"],
)
def hybridrec_events_compaction() -> None:
    @task(
        doc_md="Stream -> Parquet, then ack + delete what was written; returns counts.",
        retries=3,
        retry_delay=dt.timedelta(seconds=30),
        retry_exponential_backoff=True,
    )
    def compact() -> dict:
        from batch.daily import compact_live_events
        from shared.config import get_settings

        return compact_live_events(get_settings())

    compact()


hybridrec_events_compaction()

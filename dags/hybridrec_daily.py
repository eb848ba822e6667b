"""hybridrec_daily: ingest -> train -> compare_with_serving -> quality gate -> publish -> prune, once per day.

Wiring only: every task body is a local import and one call into ``batch.daily`` with the partition,
``data_interval_start``'s date (never the wall clock); each step finds its run directory from it, so
XComs stay small (the run path for the log, the comparison's metrics, the version id).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

REDIS_RETRIES = {"retries": 3, "retry_delay": dt.timedelta(seconds=20), "retry_exponential_backoff": True}

DOC = """
### hybridrec daily batch

For the day in the run's data interval (`data_interval_start`, UTC):

1. **ingest**: ingests files dropped in `<data_dir>/landing/date=YYYY-MM-DD/` and checks the day's
   partition exists (the hourly compaction also writes there). *Fails when the day has no data*:
   deliver the files or run the compaction DAG, then clear the task.
2. **train**: `run-batch` for the day into `<data_dir>/runs/date=YYYY-MM-DD/` (atomic, idempotent).
3. **compare_with_serving**: ranks the new model and the serving one on the same fair holdout (users' latest
   items from that day); writes `comparison.json` into the run.
4. **quality_gate**: fails (no retries) when Recall@k or NDCG@k fell by more than
   `HYBRIDREC_QUALITY_TOLERANCE` against the serving model. The serving version stays. Read the
   task log (which metric, by how much), check the day's data, and re-trigger with
   `force_publish=true` to publish anyway.
5. **publish**: writes the version to Redis, verifies, flips the pointer. Retries with backoff;
   a retry after a crash converges on the same state. A run for an older day than the serving
   version (a backfill) is kept on disk but not published (serving never moves back in time)
   unless `force_publish=true`.
6. **prune**: keeps `HYBRIDREC_KEEP_VERSIONS` versions (current and rollback target).

Settings come from `HYBRIDREC_*` environment variables of the worker. Backfill with
`airflow backfill create --dag-id hybridrec_daily --from-date D1 --to-date D2 --max-active-runs 1`
or, without Airflow,
`hybridrec backfill --start D1 --end D2` (add `--publish` to publish each day under the same rule).
"""


def _partition(data_interval_start: pendulum.DateTime) -> dt.date:
    return dt.date(data_interval_start.year, data_interval_start.month, data_interval_start.day)


@dag(
    dag_id="hybridrec_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    max_active_runs=1,
    params={"force_publish": Param(False, type="boolean", description="Publish even if the quality gate fails.")},
    doc_md=DOC,
    tags=["hybridrec"],
)
def hybridrec_daily() -> None:
    @task(doc_md="Ingest the day's landing files; fail if the day's partition is empty.")
    def ingest(data_interval_start: pendulum.DateTime | None = None) -> dict:
        from batch.daily import ingest_day
        from shared.config import get_settings

        return ingest_day(get_settings(), _partition(data_interval_start))

    @task(doc_md="Train ALS, measure it on the temporal holdout, precompute candidates; returns the run directory.")
    def train(data_interval_start: pendulum.DateTime | None = None) -> str:
        from batch.daily import train_day
        from shared.config import get_settings

        return train_day(get_settings(), _partition(data_interval_start))

    @task(doc_md="New model vs serving model on the same fair holdout; returns both metric sets.", **REDIS_RETRIES)
    def compare_with_serving(data_interval_start: pendulum.DateTime | None = None) -> dict:
        from batch.daily import compare_day
        from shared.config import get_settings

        return compare_day(get_settings(), _partition(data_interval_start))

    @task(doc_md="Refuse a model worse than the serving one (no retries); force_publish overrides.", retries=0)
    def quality_gate(
        comparison: dict, params: dict | None = None, data_interval_start: pendulum.DateTime | None = None
    ) -> str:
        from batch.daily import gate
        from shared.config import get_settings

        force = bool((params or {}).get("force_publish"))
        return gate(get_settings(), comparison, force, _partition(data_interval_start))

    @task(doc_md="Write, verify and activate the version in Redis; returns the version serving.", **REDIS_RETRIES)
    def publish(data_interval_start: pendulum.DateTime | None = None, params: dict | None = None) -> str:
        from batch.daily import publish_day
        from shared.config import get_settings

        force = bool((params or {}).get("force_publish"))
        return publish_day(get_settings(), _partition(data_interval_start), force).serving

    @task(doc_md="Delete versions beyond HYBRIDREC_KEEP_VERSIONS (never current or previous).", **REDIS_RETRIES)
    def prune(version: str) -> list[str]:
        from batch.daily import prune_versions
        from shared.config import get_settings

        return prune_versions(get_settings())

    trained, comparison, published = train(), compare_with_serving(), publish()
    ingest() >> trained >> [comparison, published]
    quality_gate(comparison) >> published
    prune(published)


hybridrec_daily()

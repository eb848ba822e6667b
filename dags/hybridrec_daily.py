"""hybridrec_daily: ingest -> train -> [candidates shards] -> seal -> compare_with_serving -> quality gate
-> begin_publish -> [publish shards] -> publish -> prune, once per day.

Wiring only: every task body is a local import and one call into ``batch.daily`` with the partition,
``data_interval_start``'s date (never the wall clock); each step finds its run directory from it, so
XComs stay small (the run path for the log, the user ranges, the comparison's metrics, the version id).
The two mapped tasks (dynamic task mapping) get one instance per user range when
``HYBRIDREC_BATCH_SHARDS`` > 1, and none (skipped) when it is 1: train and publish then do all users.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

REDIS_RETRIES = {"retries": 3, "retry_delay": dt.timedelta(seconds=20), "retry_exponential_backoff": True}
# A shard's task is retried where it died (a lost worker, an OOM kill): its output is atomic and the same bytes.
SHARD_RETRIES = {"retries": 2, "retry_delay": dt.timedelta(seconds=30)}

DOC = """
### hybridrec daily batch

For the day in the run's data interval (`data_interval_start`, UTC):

1. **ingest**: ingests files dropped in `<data_dir>/landing/date=YYYY-MM-DD/` and checks the day's
   partition exists (the hourly compaction also writes there). *Fails when the day has no data*:
   deliver the files or run the compaction DAG, then clear the task.
2. **train**: `run-batch` for the day into `<data_dir>/runs/date=YYYY-MM-DD/` (atomic, idempotent).
   With `HYBRIDREC_BATCH_SHARDS` = N > 1: everything but the users' candidates and seen sets, staged in
   `<data_dir>/runs/.sharded-date=YYYY-MM-DD/`, and N user ranges.
3. **shard_users** -> **candidates_shard** (mapped, one per range; none when unsharded) -> **seal_run**:
   each shard writes its users' candidates and seen sets (atomic files, same bytes on a retry); seal
   checks that every shard is there (else it fails naming the missing map indexes: clear those), merges
   them into the run, byte for byte the unsharded run, and renames it into place.
4. **compare_with_serving**: ranks the new model and the serving one on the same fair holdout (users' latest
   items from that day); writes `comparison.json` into the run.
5. **quality_gate**: fails (no retries) when Recall@k or NDCG@k fell by more than
   `HYBRIDREC_QUALITY_TOLERANCE` against the serving model. The serving version stays. Read the
   task log (which metric, by how much), check the day's data, and re-trigger with
   `force_publish=true` to publish anyway.
6. **begin_publish** -> **publish_shard** (mapped, sharded runs only) -> **publish**: writes the version
   to Redis, verifies every user record, flips the pointer. Sharded, begin stages the version, each
   shard writes its users (a retry rewrites the same bytes) and publish verifies and flips: nothing is
   visible before the flip. Retries with backoff; a retry after a crash converges on the same state.
   A run for an older day than the serving version (a backfill) is kept on disk but not published
   (serving never moves back in time) unless `force_publish=true`.
7. **prune**: keeps `HYBRIDREC_KEEP_VERSIONS` versions (current and rollback target).

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

    @task(doc_md="Train ALS, measure it on the temporal holdout, precompute (unsharded) or stage (sharded) the run.")
    def train(data_interval_start: pendulum.DateTime | None = None) -> str:
        from batch.daily import train_day
        from shared.config import get_settings

        return train_day(get_settings(), _partition(data_interval_start))

    @task(doc_md="The user ranges of the staged run; none when train built the whole run (HYBRIDREC_BATCH_SHARDS=1).")
    def shard_users(data_interval_start: pendulum.DateTime | None = None) -> list[dict]:
        from batch.daily import shard_users_day
        from shared.config import get_settings

        return shard_users_day(get_settings(), _partition(data_interval_start))

    @task(
        doc_md="Candidate lists and seen sets of one range of users (one mapped instance per range).", **SHARD_RETRIES
    )
    def candidates_shard(shard: dict, data_interval_start: pendulum.DateTime | None = None) -> dict:
        from batch.daily import candidates_shard_day
        from shared.config import get_settings

        return candidates_shard_day(get_settings(), _partition(data_interval_start), shard)

    @task(doc_md="Merge the shards into the complete run (a no-op for an unsharded run).", trigger_rule="none_failed")
    def seal_run(data_interval_start: pendulum.DateTime | None = None) -> str:
        from batch.daily import seal_day
        from shared.config import get_settings

        return seal_day(get_settings(), _partition(data_interval_start))

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

    @task(doc_md="Sharded: stage the version in Redis; returns the user ranges (none when unsharded).", **REDIS_RETRIES)
    def begin_publish(data_interval_start: pendulum.DateTime | None = None, params: dict | None = None) -> list[dict]:
        from batch.daily import begin_publish_day
        from shared.config import get_settings

        force = bool((params or {}).get("force_publish"))
        return begin_publish_day(get_settings(), _partition(data_interval_start), force)

    @task(doc_md="Write one range of users into the staged version (one mapped instance per range).", **REDIS_RETRIES)
    def publish_shard(shard: dict, data_interval_start: pendulum.DateTime | None = None) -> int:
        from batch.daily import publish_shard_day
        from shared.config import get_settings

        return publish_shard_day(get_settings(), _partition(data_interval_start), shard)

    @task(
        doc_md="Write (unsharded) or verify (sharded) the version, then activate it; returns the version serving.",
        trigger_rule="none_failed",
        **REDIS_RETRIES,
    )
    def publish(
        ranges: list[dict], data_interval_start: pendulum.DateTime | None = None, params: dict | None = None
    ) -> str:
        from batch.daily import finish_publish_day
        from shared.config import get_settings

        force = bool((params or {}).get("force_publish"))
        return finish_publish_day(get_settings(), _partition(data_interval_start), force, bool(ranges)).serving

    @task(doc_md="Delete versions beyond HYBRIDREC_KEEP_VERSIONS (never current or previous).", **REDIS_RETRIES)
    def prune(version: str) -> list[str]:
        from batch.daily import prune_versions
        from shared.config import get_settings

        return prune_versions(get_settings())

    users = shard_users()
    sealed, comparison, ranges = seal_run(), compare_with_serving(), begin_publish()
    published = publish(ranges)
    ingest() >> train() >> users
    candidates_shard.expand(shard=users) >> sealed >> comparison
    quality_gate(comparison) >> ranges
    publish_shard.expand(shard=ranges) >> published
    prune(published)


hybridrec_daily()

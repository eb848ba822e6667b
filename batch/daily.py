"""The daily steps, each keyed by its partition date: ``(settings, partition)`` in, a small value out.

Every caller goes through these functions: the Airflow tasks (dags/hybridrec_daily.py only wires
them), ``hybridrec publish`` and ``hybridrec backfill --publish`` and the demo. So the rules that
hold between steps hold everywhere, above all: a run for an older day than the serving version is
built but never published unless forced, so serving never moves back in time.

Each step finds its inputs from the partition alone (the run directory is
``batch.artifacts.run_dir_for(settings.runs_dir, partition)``), is idempotent, and a retried or
re-run step converges on the same files and the same published state.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from batch import shards
from batch.artifacts import read_json, run_dir_for, staging_dir_for, write_json
from batch.dataset import list_partitions
from batch.ingest import ingest_interactions
from batch.pipeline import is_complete, run_batch
from batch.publish import PublishResult, begin_publish, finish_publish, publish_run, publish_users
from batch.quality import Comparison, QualityGateFailed, check_gate, compare_with_serving
from batch.steplog import logged_step
from feature_store.base import ProgressFn, VersionStore
from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.errors import ArtifactNotFound, StoreError
from shared.ids import parse_date
from shared.schemas import DATE_FORMAT

LANDING_SUFFIXES = (".csv", ".parquet")
log = logging.getLogger("hybridrec.batch")


def ingest_day(settings: Settings, partition: dt.date) -> dict:
    """Ingest files dropped in ``landing/date=D/``, then require that partition D holds interactions."""
    with logged_step(settings, "ingest", partition) as out:
        out.update(_ingest_day(settings, partition))
        return out


def _ingest_day(settings: Settings, partition: dt.date) -> dict:
    landing = settings.landing_dir / f"date={partition.strftime(DATE_FORMAT)}"
    files = sorted(p for p in landing.glob("*") if p.suffix in LANDING_SUFFIXES) if landing.is_dir() else []
    good = bad = 0
    for path in files:
        report = ingest_interactions(path, "auto", settings.interactions_dir, settings.quarantine_dir)
        good, bad = good + report.rows_good, bad + report.rows_bad
    parts = list_partitions(settings.interactions_dir).get(partition, [])
    if not parts:
        raise ArtifactNotFound(
            f"no interactions for {partition}: drop the day's files into {landing}/ or let the hourly "
            "compaction write the live events, then clear this task to retry"
        )
    return {"landing_files": len(files), "rows_good": good, "rows_bad": bad, "part_files": len(parts)}


def train_day(settings: Settings, partition: dt.date) -> str:
    """Build the run for ``partition``; returns its directory (for the log; later steps find it by date).

    With ``settings.batch_shards`` > 1 only the shared part (``batch.shards``): the users' candidates and
    seen sets are left to ``candidates_shard_day``, one range each, and ``seal_day`` completes the run.
    """
    with logged_step(settings, "train", partition) as out:
        if settings.batch_shards > 1:
            out["shards"] = len(shards.stage(settings, partition, settings.batch_shards))
            out["run_dir"] = str(staging_dir_for(settings.runs_dir, partition))
        else:
            out["run_dir"] = str(run_batch(settings, partition))
        return out["run_dir"]


def shard_users_day(settings: Settings, partition: dt.date) -> list[dict[str, int]]:
    """The user ranges of the staged run of ``partition`` ({index, start, stop} each, for Airflow's
    ``expand``); [] when nothing is staged: an unsharded run, or a sharded one already sealed."""
    return [s.to_dict() for s in shards.planned_shards(settings, partition)]


def candidates_shard_day(settings: Settings, partition: dt.date, shard: dict[str, int]) -> dict[str, float]:
    """Candidate lists and seen sets of one range of users of the staged run (idempotent); its timings."""
    with logged_step(settings, "candidates_shard", partition) as out:
        out.update(shard)
        return shards.build_shard(settings, partition, shards.Shard(**shard))


def seal_day(settings: Settings, partition: dt.date) -> str:
    """Complete the staged run of ``partition`` from its shards (a no-op for a complete run); its directory."""
    with logged_step(settings, "seal_run", partition) as out:
        if staging_dir_for(settings.runs_dir, partition).exists():
            out["run_dir"] = str(shards.seal_run(settings, partition))
        else:
            out["run_dir"] = str(_built_run(settings, partition))
        return out["run_dir"]


def _built_run(settings: Settings, partition: dt.date) -> Path:
    """The complete run directory of ``partition``; ArtifactNotFound (saying what to run) when there is none."""
    if not is_complete(settings, partition):
        raise ArtifactNotFound(
            f"no complete run in {run_dir_for(settings.runs_dir, partition)}: run `hybridrec run-batch "
            f"--date {partition.strftime(DATE_FORMAT)}` first"
        )
    return run_dir_for(settings.runs_dir, partition)


def _serving_partition(store: VersionStore) -> tuple[str | None, dt.date | None]:
    version = store.current_version()
    if version is None:
        return None, None
    meta = store.read_meta(version) or {}
    return version, parse_date(meta.get("partition", version[:10]))


def _serving_run(settings: Settings, store: VersionStore, partition: dt.date) -> tuple[Path | None, str | None, str]:
    """The local run directory of the serving version, if it is older than ``partition`` and unchanged.

    A serving model from a LATER day has seen the new run's holdout, so comparing with it would be
    unfair (that happens in a backfill of old dates); publish_day keeps the newer version then.
    """
    version, serving_day = _serving_partition(store)
    if version is None or serving_day is None:
        return None, None, "nothing published yet"
    if serving_day > partition:
        return None, version, f"serving version {version} is from a later day; publish keeps it"
    meta = store.read_meta(version) or {}
    run_dir = run_dir_for(settings.runs_dir, serving_day)
    try:
        same = read_json(run_dir / "manifest.json").get("content_hash") == meta.get("content_hash")
    except ArtifactNotFound:
        same = False
    if not same:
        return None, version, f"the artifacts of serving version {version} are not in {settings.runs_dir}"
    return run_dir, version, ""


def compare_day(settings: Settings, partition: dt.date) -> dict:
    """Compare the run of ``partition`` with the serving model on the same fair holdout; also kept as
    the run's comparison.json."""
    with logged_step(settings, "compare_with_serving", partition) as out:
        run_dir = _built_run(settings, partition)
        with RedisStore.from_settings(settings) as store:
            serving_dir, version, note = _serving_run(settings, store.versions, partition)
        if serving_dir is None:
            comparison = Comparison(settings.eval_k, 0, None, None, version, note)
        else:
            comparison = compare_with_serving(settings, run_dir, serving_dir, version)
        result = comparison.to_dict()
        write_json(run_dir / "comparison.json", result)
        out.update(version=version, n_users=comparison.n_users)
        return result


def gate(settings: Settings, comparison: dict, force: bool, partition: dt.date | None = None) -> str:
    """The quality gate (batch.quality.check_gate) on the comparison of ``partition``'s run. Its decision,
    passed, forced, refused or no_comparison, is logged and recorded in the store for the operator page;
    a refusal then raises QualityGateFailed."""
    c = Comparison(**comparison)
    with logged_step(settings, "quality_gate", partition) as out:
        out["version"] = c.current_version
        try:
            message = check_gate(c, settings.quality_tolerance, force=False)
            outcome = "no_comparison" if c.candidate is None or c.current is None else "passed"
        except QualityGateFailed as exc:
            if not force:
                out["outcome"] = "refused"
                _record_gate(settings, partition, "refused", str(exc), c)
                raise
            message, outcome = f"quality gate overridden by force_publish: {exc}", "forced"
        out["outcome"] = outcome
        _record_gate(settings, partition, outcome, message, c)
        return message


def _record_gate(settings: Settings, partition: dt.date | None, outcome: str, message: str, c: Comparison) -> None:
    """Keep the decision for the operator page; a store error only loses the record, never the decision."""
    decision = {
        "partition": partition.strftime(DATE_FORMAT) if partition else None,
        "outcome": outcome,
        "message": message,
        "decided_at": time.time(),
        "tolerance": settings.quality_tolerance,
        "candidate": c.candidate,
        "current": c.current,
        "current_version": c.current_version,
        "n_users": c.n_users,
    }
    try:
        with RedisStore.from_settings(settings) as store:
            store.versions.record_gate(decision)
    except StoreError as exc:
        log.warning("could not record the gate decision for the operator page: %s", exc)


@dataclass(frozen=True)
class PublishOutcome:
    """What ``publish_day`` did: ``serving`` is the version serving afterwards; ``published`` is None
    when the run was kept back because a later day is serving."""

    partition: dt.date
    serving: str
    published: PublishResult | None

    def summary(self) -> str:
        if self.published is not None:
            return self.published.summary()
        return (
            f"kept {self.serving} serving: the run for {self.partition} is from an earlier day, and serving "
            "never moves back in time (force it with `hybridrec publish --force` or force_publish=true)"
        )


def publish_day(
    settings: Settings,
    partition: dt.date,
    force: bool = False,
    prune: bool = False,
    progress: ProgressFn | None = None,
) -> PublishOutcome:
    """Publish the run of ``partition`` as a new version and switch readers to it.

    A run for an older day than the serving version (a backfill) is built but not published, unless
    ``force``: serving never moves back in time. ``prune`` then keeps ``settings.keep_versions``
    versions (the DAG prunes in a task of its own); ``progress`` is called with keys written.
    """
    with logged_step(settings, "publish", partition) as out, RedisStore.from_settings(settings) as store:
        run_dir = _built_run(settings, partition)
        if kept := _kept_back(store.versions, partition, force):
            out.update(version=kept, outcome="kept_later_day")
            return PublishOutcome(partition, kept, None)
        result = publish_run(run_dir, store.versions, settings, progress=progress, prune=prune)
        out.update(version=result.version, outcome="published")
        return PublishOutcome(partition, result.version, result)


def _kept_back(store: VersionStore, partition: dt.date, force: bool) -> str | None:
    """The serving version when it is from a later day than ``partition`` (and not ``force``): then the
    run is not published, as ``publish_day`` says."""
    version, serving_day = _serving_partition(store)
    return version if version and serving_day and serving_day > partition and not force else None


def begin_publish_day(settings: Settings, partition: dt.date, force: bool = False) -> list[dict[str, int]]:
    """With ``settings.batch_shards`` > 1: stage the run's version in the store and return the user ranges
    for ``publish_shard_day`` ({index, start, stop} each). [] when there is nothing to stage: unsharded
    (``publish_day`` writes it all in one go) or kept back (a later day serves)."""
    with logged_step(settings, "begin_publish", partition) as out, RedisStore.from_settings(settings) as store:
        run_dir = _built_run(settings, partition)
        if settings.batch_shards <= 1 or (kept := _kept_back(store.versions, partition, force)):
            out["outcome"] = "unsharded" if settings.batch_shards <= 1 else f"kept_later_day {kept}"
            return []
        version, ranges = begin_publish(run_dir, store.versions, settings)
        out.update(version=version, shards=len(ranges))
        return [r.to_dict() for r in ranges]


def publish_shard_day(settings: Settings, partition: dt.date, shard: dict[str, int]) -> int:
    """Write one range of users into the staged version (idempotent: a retry rewrites the same bytes)."""
    with logged_step(settings, "publish_shard", partition) as out, RedisStore.from_settings(settings) as store:
        out.update(shard)
        out["users"] = publish_users(_built_run(settings, partition), store.versions, shards.Shard(**shard))
        return out["users"]


def finish_publish_day(settings: Settings, partition: dt.date, force: bool, staged: bool) -> PublishOutcome:
    """The publish step after ``begin_publish_day``: when it ``staged`` the version, verify that every
    user record is there, write the meta and flip the pointer (PublishError naming what is missing
    otherwise: the serving version stays); when it did not, ``publish_day`` (one go, or kept back)."""
    if not staged:
        return publish_day(settings, partition, force)
    with logged_step(settings, "publish", partition) as out, RedisStore.from_settings(settings) as store:
        run_dir = _built_run(settings, partition)
        if kept := _kept_back(store.versions, partition, force):  # a later day went live meanwhile
            out.update(version=kept, outcome="kept_later_day")
            return PublishOutcome(partition, kept, None)
        result = finish_publish(run_dir, store.versions)
        out.update(version=result.version, outcome="published")
        return PublishOutcome(partition, result.version, result)


def prune_versions(settings: Settings) -> list[str]:
    with logged_step(settings, "prune", None) as out, RedisStore.from_settings(settings) as store:
        out["deleted"] = store.versions.prune(settings.keep_versions)
        return out["deleted"]


def compact_live_events(settings: Settings) -> dict:
    """Hourly: drain the live events stream into the interaction dataset (see batch.compaction)."""
    from batch.compaction import compact_events

    with logged_step(settings, "compact", None) as out, RedisStore.from_settings(settings) as store:
        report = compact_events(store.events, settings)
        out.update(
            events_read=report.events_read, rows_written=report.rows_written, rows_quarantined=report.rows_quarantined
        )
        return {k: out[k] for k in ("events_read", "rows_written", "rows_quarantined")}

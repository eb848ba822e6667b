"""Publish a finished run to the online store: write a complete version, verify, flip the pointer, prune.

Publishing is transport only: every value a version holds was computed and saved by the batch run
(batch.pipeline), and is covered by the run's content hash, hence by the version id.

``publish_run`` does it in one process. A sharded publish splits it into ``begin_publish`` (stage the
version: item blobs, registration), ``publish_users`` for each user range, in parallel on several
workers, and ``finish_publish`` (verify every user record is there, write the meta, flip the pointer):
see ``feature_store.redis_versions`` for how the store keeps the stages safe. Each loads the run with
memory maps, so a range's task reads its users' rows only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batch.artifacts import POPULAR_FILE, RunArtifacts
from batch.shards import Shard, user_ranges
from feature_store.base import Catalogue, VersionData, VersionStore
from feature_store.layout import ITEM_ARRAYS, user_layout
from shared.config import Settings
from shared.errors import ArtifactNotFound
from shared.ids import make_version_id, parse_date


@dataclass(frozen=True)
class PublishResult:
    version: str
    previous: str | None
    pruned: list[str]
    n_users: int
    n_items: int
    seconds: float

    def summary(self) -> str:
        was = f" (was {self.previous})" if self.previous and self.previous != self.version else ""
        return (
            f"published {self.version}{was}: {self.n_users:,} users, {self.n_items:,} items "
            f"in {self.seconds:.1f}s; pruned {len(self.pruned)} old version(s)"
        )


def version_data(arts: RunArtifacts) -> VersionData:
    """Everything the store needs for one version, as the run holds it: publishing computes nothing.

    Deterministic: same run -> same bytes. ArtifactNotFound for a run from before popular lists were
    part of a run (rebuild it).
    """
    m = arts.manifest
    items = arts.items
    if arts.popular is None:
        raise ArtifactNotFound(
            f"{arts.run_dir} has no {POPULAR_FILE} (it was built by an older release): rebuild it with "
            f"`hybridrec run-batch --date {m['partition']}`, then publish"
        )
    version = make_version_id(parse_date(m["partition"]), m["content_hash"])
    widths = {spec.width: int(arts.item_arrays[spec.name].shape[1]) for spec in ITEM_ARRAYS if spec.width}
    meta = {
        "version": version,
        "partition": m["partition"],
        "content_hash": m["content_hash"],
        "n_users": len(arts.user_ids),
        "n_items": len(items),
        **widths,
        "n_candidates": int(arts.user_arrays["candidates"].shape[1]),  # type: ignore[union-attr]
        "user_record": user_layout(len(items)),
        "n_interactions": m.get("n_interactions"),
        "window": m.get("window"),
        "params": m.get("params", {}),
        "metrics": arts.metrics,
    }
    return VersionData(
        version=version,
        meta=meta,
        user_ids=[str(u) for u in arts.user_ids],
        user_arrays=arts.user_arrays,
        catalogue=Catalogue(
            item_ids=items["item_id"].astype(str).tolist(),
            categories=items["category"].astype(str).tolist(),
            titles=items["title"].astype(str).tolist(),
            available=items["available"].astype(bool).tolist(),
        ),
        item_arrays=arts.item_arrays,
        popular=arts.popular,
    )


def publish_run(
    run_dir: Path,
    store: VersionStore,
    settings: Settings,
    progress: Callable[[int], None] | None = None,
    prune: bool = True,
) -> PublishResult:
    """Write ``run_dir`` as a new version and activate it; then (``prune``) keep ``settings.keep_versions``.

    All under the publish lock, so a concurrent publish waits for this one (up to
    ``settings.publish_lock_wait_s``) or refuses with PublishError. Idempotent: a retry after a crash
    at any point converges on the same published state.
    """
    start = time.perf_counter()
    data = version_data(RunArtifacts.load(run_dir))
    with store.publishing():
        # short of memory, the store prunes what the prune below would delete before it writes
        pruned = store.write_version(data, progress=progress, keep=settings.keep_versions)
        previous = store.activate(data.version)
        pruned += store.prune(settings.keep_versions) if prune else []
    return PublishResult(
        version=data.version,
        previous=previous,
        pruned=pruned,
        n_users=len(data.user_ids),
        n_items=len(data.catalogue.item_ids),
        seconds=time.perf_counter() - start,
    )


def begin_publish(run_dir: Path, store: VersionStore, settings: Settings) -> tuple[str, list[Shard]]:
    """Stage the version of ``run_dir`` (nothing to do if it is complete); returns its id and the user
    ranges (``settings.batch_shards`` of them) for ``publish_users``."""
    data = version_data(RunArtifacts.load(run_dir, mmap=True))
    store.begin_version(data, keep=settings.keep_versions)
    return data.version, user_ranges(len(data.user_ids), settings.batch_shards)


def publish_users(
    run_dir: Path, store: VersionStore, shard: Shard, progress: Callable[[int], None] | None = None
) -> int:
    """Write the records of the users of ``shard`` into the staged version (idempotent); returns how many."""
    data = version_data(RunArtifacts.load(run_dir, mmap=True))
    return store.write_user_range(data.version, data, shard.rows, progress)


def finish_publish(run_dir: Path, store: VersionStore) -> PublishResult:
    """Verify the staged version (PublishError naming what is missing: nothing becomes visible), write its
    meta and activate it, under one hold of the publish lock. Idempotent."""
    start = time.perf_counter()
    data = version_data(RunArtifacts.load(run_dir, mmap=True))
    with store.publishing():
        store.finish_version(data)
        previous = store.activate(data.version)
    return PublishResult(
        version=data.version,
        previous=previous,
        pruned=[],
        n_users=len(data.user_ids),
        n_items=len(data.catalogue.item_ids),
        seconds=time.perf_counter() - start,
    )

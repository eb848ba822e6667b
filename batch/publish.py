"""Publish a finished run to the online store: write a complete version, verify, flip the pointer, prune."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.artifacts import RunArtifacts
from batch.candidates import popular_by_category
from feature_store.base import Catalogue, VersionData, VersionStore
from feature_store.keys import ALL_CATEGORIES
from feature_store.layout import ITEM_ARRAYS, user_layout
from shared.config import Settings
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


def version_data(arts: RunArtifacts, popular_n: int) -> VersionData:
    """Everything the store needs for one version. Deterministic: same run -> same bytes."""
    m = arts.manifest
    items = arts.items
    categories = items["category"].astype(str).to_numpy()
    available = items["available"].astype(bool).to_numpy()
    popularity = arts.item_arrays["popularity"].astype(np.float32)
    popular = popular_by_category(popularity, categories, popular_n, available)
    popular = {(ALL_CATEGORIES if cat == "" else cat): idx for cat, idx in popular.items()}
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
        "user_record": user_layout(),
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
            categories=categories.tolist(),
            titles=items["title"].astype(str).tolist(),
            available=available.tolist(),
        ),
        item_arrays=arts.item_arrays,
        popular=popular,
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
    data = version_data(RunArtifacts.load(run_dir), settings.popular_n)
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

"""The serving model of a batch run, built in memory exactly as the API would hold it, without Redis.

``batch.publish.version_data`` is the one place that turns a run directory into what is published
(popular lists per category included); this module only converts its ``VersionData`` into the
``ItemBundle`` the API loads (``online.model.LoadedModel.from_bundle``) and the per-user
``UserRecord`` s the API reads per request, so offline replay ranks with the very data the API serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.artifacts import RunArtifacts
from batch.publish import version_data
from feature_store.base import ItemBundle, VersionData
from feature_store.codecs import UserRecord
from online.model import LoadedModel


@dataclass(frozen=True)
class ServingModel:
    """What one request can see: the loaded item model and the user records of its version."""

    model: LoadedModel
    users: Mapping[str, UserRecord]  # user_id -> record; a missing user is "unknown in this version"


def item_bundle(data: VersionData) -> ItemBundle:
    """The item half of a published version, shaped as ``RedisStore.read_item_bundle`` returns it."""
    return ItemBundle(
        version=data.version,
        meta=dict(data.meta),
        item_ids=[str(i) for i in data.item_ids],
        categories=np.asarray(list(data.categories), dtype=object),
        titles=[str(t) for t in data.titles],
        available=np.asarray(list(data.available), dtype=bool),
        item_factors=np.asarray(data.item_factors, dtype=np.float32),
        neighbours=np.asarray(data.neighbours, dtype=np.int32),
        neighbour_scores=np.asarray(data.neighbour_scores, dtype=np.float32),
        covisit=np.asarray(data.covisit, dtype=np.int32),
        covisit_scores=np.asarray(data.covisit_scores, dtype=np.float32),
        popularity=np.asarray(data.popularity, dtype=np.float32),
        popular={cat: np.asarray(idx, dtype=np.int32) for cat, idx in data.popular.items()},
    )


def user_records(data: VersionData) -> dict[str, UserRecord]:
    """user_id -> ``UserRecord(vector float32 (f,), candidates int32 (n,))``, ``-1`` padding dropped.

    The same content ``feature_store.codecs.encode_user`` stores (it drops the padding too).
    """
    vectors = np.asarray(data.user_factors, dtype=np.float32)
    cands = np.asarray(data.candidates, dtype=np.int32)
    return {
        str(user): UserRecord(vector=vectors[i], candidates=cands[i][cands[i] >= 0])
        for i, user in enumerate(data.user_ids)
    }


def serving_model(run_dir: Path, popular_n: int) -> ServingModel:
    """Load ``run_dir`` (a complete ``runs/date=...``) as the API would serve it after ``publish``."""
    data = version_data(RunArtifacts.load(run_dir), popular_n)
    return ServingModel(model=LoadedModel.from_bundle(item_bundle(data)), users=user_records(data))

"""The serving model of a batch run, exactly as the API holds it, without Redis.

``batch.publish.version_data`` is the one place that turns a run directory into what is published;
``feature_store.codecs.round_trip`` then encodes and decodes every value with the store's own codecs,
so the lab's replay ranks with the very bytes the API reads (float16 neighbour scores included):
``tests/integration/test_lab_serving.py`` checks the two agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batch.artifacts import RunArtifacts
from batch.publish import version_data
from feature_store.base import UserRecord
from feature_store.codecs import round_trip
from online.model import LoadedModel


@dataclass(frozen=True)
class ServingModel:
    """What one request can see: the loaded item model and the user records of its version."""

    model: LoadedModel
    users: Mapping[str, UserRecord]  # user_id -> record; a missing user is "unknown in this version"


def serving_model(run_dir: Path) -> ServingModel:
    """Load ``run_dir`` (a complete ``runs/date=...``) as the API would serve it after ``publish``."""
    bundle, users = round_trip(version_data(RunArtifacts.load(run_dir)))
    return ServingModel(model=LoadedModel.from_bundle(bundle), users=users)

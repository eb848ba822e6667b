"""The lab ranks with exactly the bytes the API reads: a published run read back from a real Redis
equals ``lab.serving.serving_model`` of the same run, array for array and bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from batch.pipeline import run_batch
from batch.publish import publish_run
from feature_store.layout import ITEM_ARRAYS, USER_ARRAYS
from feature_store.redis_store import RedisStore
from lab.datasets import SYNTHETIC_END, ingest_synthetic
from lab.serving import serving_model
from online.model import LoadedModel
from shared.config import Settings

pytestmark = pytest.mark.integration


def test_the_lab_model_is_the_api_model_bit_for_bit(settings: Settings, store: RedisStore) -> None:
    small = settings.model_copy(update={"als_factors": 4, "als_iterations": 2, "n_candidates": 20})
    ingest_synthetic(small, users=150, items=60, days=3, seed=3)
    run_dir = run_batch(small, SYNTHETIC_END)
    version = publish_run(run_dir, store.versions, small).version

    lab = serving_model(run_dir)
    api = LoadedModel.from_bundle(store.versions.read_item_bundle(version))
    assert lab.model.version == api.version
    for spec in ITEM_ARRAYS:
        got, want = getattr(lab.model.bundle, spec.name), getattr(api.bundle, spec.name)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), spec.name
    assert lab.model.bundle.item_ids == api.bundle.item_ids
    assert {c: v.tolist() for c, v in lab.model.bundle.popular.items()} == {
        c: v.tolist() for c, v in api.bundle.popular.items()
    }
    np.testing.assert_array_equal(lab.model.unit_factors, api.unit_factors)
    for user_id in list(lab.users)[:25]:
        from_redis = store.versions.read_request(version, user_id, None).user
        assert from_redis is not None
        for spec in USER_ARRAYS:
            assert getattr(lab.users[user_id], spec.name).tobytes() == getattr(from_redis, spec.name).tobytes()
    # the float16 wire format is what both see, not the run's float32
    run_scores = np.load(run_dir / "neighbours.npz")["scores"]
    assert not np.array_equal(lab.model.bundle.neighbour_scores, run_scores)

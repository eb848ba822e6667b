"""A tuned blend travels batch -> version meta -> API: the file format, the meta override, the ranking it changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from batch.tuning_file import read_tuned_blend
from feature_store.base import RequestFeatures, SessionEvent
from feature_store.codecs import UserRecord
from online.model import LoadedModel
from online.ranking import BlendParams, rank
from online.service import RecommendationService
from shared.config import get_settings
from shared.errors import ConfigError
from shared.schemas import BLEND_FIELDS
from tests.support import tiny

TUNED = {
    "weight_user": 0.0,
    "weight_session": 1.0,
    "weight_popularity": 0.1,
    "weight_covisit": 0.5,
    "session_half_life": 2.0,
    "precomputed_weight_popularity": 0.4,
}
# u0 points at a-items; the session is b0, so the user signal pulls a-items, the session b-items.
USER_A = UserRecord(vector=np.array([2.0, 0.0], dtype=np.float32), candidates=np.array([0, 1, 2, 5], dtype=np.int32))
SESSION = [SessionEvent(item_id="b0", event_type="view", ts=0.0, event_id="e0")]


def _model(meta: dict, version: str = "2026-01-01.00000000aa") -> LoadedModel:
    return LoadedModel.from_bundle(dataclasses.replace(tiny.bundle(), version=version, meta=meta))


def test_every_shared_blend_field_is_a_blend_param() -> None:
    assert set(BLEND_FIELDS) <= {f.name for f in dataclasses.fields(BlendParams)}


def test_meta_blend_overrides_the_settings_and_its_absence_keeps_them() -> None:
    configured = BlendParams.from_settings(get_settings(weight_user=0.7, weight_popularity=0.3))
    assert configured.weight_user == 0.7 and configured.weight_popularity == 0.3
    tuned = configured.for_version({"params": {"blend": TUNED, "other": 1}})
    assert {name: getattr(tuned, name) for name in BLEND_FIELDS} == TUNED
    assert tuned.seed_items == configured.seed_items  # untouched by the blend
    assert configured.for_version({"params": {"n_candidates": 100}}) == configured
    assert configured.for_version({}) == configured
    # a blend tuned before weight_covisit existed keeps the configured co-visitation weight
    older = {k: v for k, v in TUNED.items() if k != "weight_covisit"}
    assert configured.for_version({"params": {"blend": older}}).weight_covisit == configured.weight_covisit


def test_the_service_ranks_with_the_loaded_versions_blend() -> None:
    settings = get_settings(weight_user=1.0, weight_session=0.1, weight_popularity=0.0)  # user-led
    recommender = RecommendationService(None, None, settings)  # type: ignore[arg-type]  # params_for reads neither
    plain, tuned = _model({"params": {}}), _model({"params": {"blend": TUNED}}, "2026-01-02.00000000bb")
    assert recommender.params_for(plain) == BlendParams.from_settings(settings)
    assert recommender.params_for(tuned).weight_user == 0.0
    # configured: the user's a-items lead; tuned: the user vector is ignored, the session's b-items lead
    features = RequestFeatures(USER_A, SESSION)
    default_top = rank(plain, features, 2, None, recommender.params_for(plain)).item_ids
    tuned_top = rank(tuned, features, 2, None, recommender.params_for(tuned)).item_ids
    assert default_top == ["a0", "a1"] and tuned_top == ["b1", "b2"]


def test_tuning_file_is_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "tuning" / "best.json"
    assert read_tuned_blend(path) is None
    path.parent.mkdir()
    path.write_text(json.dumps({"best": {**TUNED, "extra": 5}, "grid": []}))
    assert read_tuned_blend(path) == TUNED
    path.write_text(json.dumps({"best": {**TUNED, "weight_user": -1}}))
    with pytest.raises(ConfigError, match="weight_user"):
        read_tuned_blend(path)
    path.write_text(json.dumps({"grid": []}))
    with pytest.raises(ConfigError, match="not a tuning result"):
        read_tuned_blend(path)

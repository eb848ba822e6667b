"""A tuned blend travels batch -> version meta -> API: the file format, the meta override, the ranking it changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from batch.tuning_file import read_tuning
from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from online.blend import BlendParams
from online.model import LoadedModel
from online.ranking import rank
from shared.config import get_settings
from shared.errors import ConfigError
from shared.schemas import BLEND_FIELDS, OPTIONAL_BLEND_FIELDS
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


def _model(meta: dict, version: str = "2026-01-01.00000000aa", defaults: BlendParams | None = None) -> LoadedModel:
    return LoadedModel.from_bundle(dataclasses.replace(tiny.bundle(), version=version, meta=meta), defaults)


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


def test_a_loaded_version_ranks_with_its_own_blend() -> None:
    configured = BlendParams.from_settings(get_settings(weight_user=1.0, weight_session=0.1, weight_popularity=0.0))
    plain = _model({"params": {}}, defaults=configured)
    tuned = _model({"params": {"blend": TUNED}}, "2026-01-02.00000000bb", defaults=configured)
    assert plain.params == configured  # derived once, when the version loads
    assert tuned.params.weight_user == 0.0
    # configured (user-led): the user's a-items lead; tuned: the user vector is ignored, the session's b-items lead
    features = RequestFeatures(USER_A, SESSION)
    assert rank(plain, features, 2, None, plain.params).item_ids == ["a0", "a1"]
    assert rank(tuned, features, 2, None, tuned.params).item_ids == ["b1", "b2"]


def test_tuning_file_is_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "tuning" / "best.json"
    assert read_tuning(path).blend is None
    path.parent.mkdir()
    path.write_text(json.dumps({"best": {**TUNED, "extra": 5}, "grid": []}))
    assert read_tuning(path).blend == TUNED
    path.write_text(json.dumps({"best": {**TUNED, "weight_user": -1}}))
    with pytest.raises(ConfigError, match=r"best\.weight_user: Input should be greater than or equal to 0"):
        read_tuning(path)
    path.write_text(json.dumps({"grid": []}))
    with pytest.raises(ConfigError, match="not a tuning result: best: Field required"):
        read_tuning(path)
    # a JSON number, not text; a field the file lacks is left out, not null; every problem is listed
    path.write_text(json.dumps({"best": {**TUNED, "weight_user": "0.5", "weight_covisit": None}}))
    with pytest.raises(ConfigError) as refused:
        read_tuning(path)
    assert "best.weight_user: Input should be a valid number (got '0.5')" in str(refused.value)
    assert "best.weight_covisit: null is not allowed: leave the key out instead" in str(refused.value)
    older = {k: v for k, v in TUNED.items() if k not in OPTIONAL_BLEND_FIELDS}
    path.write_text(json.dumps({"best": older}))
    assert read_tuning(path).blend == older  # the API serves the missing fields at their configured values

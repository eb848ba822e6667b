"""Session replay on the tiny hand-made version, where every list and so every hit is known.

Tiny (tests/support/tiny.py): a-items lie on axis 0, b-items on axis 1, popularity favours b. User u0
points along axis 0 and has candidates a0, a1, a2, b2; "ux" is unknown to the version. With k = 2:

S1 (u0): a0 view+click (one step), a1, a0 (repeat: skipped), a2. Targets a1 (t=1) and a2 (t=3).
  batch-only [a0, a1]: hits a1 only. popularity (minus session) [b0, b1]: no hit.
  session-only and hybrid: a1, a2 lead given a0; a2 leads given a0, a1: both hit.
S2 (ux): b0, zz (unknown item: skipped), b1. Target b1 (t=2).
  batch-only = the popular list [b0, b1] (the API's fallback for an unknown user): hit.
  popularity minus b0 = [b1, b2]: hit. session-only and hybrid (= the session path): hit.
S3 (u0): a0 view+click: one step, nothing to predict, not sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.base import UserRecord
from feature_store.codecs import round_trip
from lab.replay import evaluate_replay, position_label, sample_sessions
from lab.serving import ServingModel
from online.blend import BlendParams
from online.model import LoadedModel
from shared.errors import DataValidationError
from tests.support import tiny

# The hand-computed lists below assume the blend of weight_user 1 and no co-visitation.
HAND = BlendParams(weight_user=1.0, weight_covisit=0.0)


def _serving() -> ServingModel:
    user = UserRecord(vector=np.array([2.0, 0.0], dtype=np.float32), candidates=np.array([0, 1, 2, 5], dtype=np.int32))
    return ServingModel(model=LoadedModel.from_bundle(tiny.bundle()), users={"u0": user})


def _events() -> pd.DataFrame:
    rows = [
        ("S1", "u0", "a0", "view"),
        ("S1", "u0", "a0", "click"),
        ("S1", "u0", "a1", "view"),
        ("S1", "u0", "a0", "view"),
        ("S1", "u0", "a2", "view"),
        ("S2", "ux", "b0", "view"),
        ("S2", "ux", "zz", "view"),
        ("S2", "ux", "b1", "view"),
        ("S3", "u0", "a0", "view"),
        ("S3", "u0", "a0", "click"),
    ]
    frame = pd.DataFrame(rows, columns=["session_id", "user_id", "item_id", "event_type"])
    return frame.assign(position=frame.groupby("session_id").cumcount())


def test_hits_and_skips_match_the_hand_computed_lists() -> None:
    report = evaluate_replay(_serving(), _events(), ks=(2,), seed=0, max_sessions=None, params=HAND)
    assert report["data"] == {
        "n_sessions": 2,
        "n_targets": 3,
        "n_skipped_repeat": 1,
        "n_skipped_history": 0,
        "n_skipped_unknown_item": 1,
        "n_sessions_unknown_user": 1,
    }
    hit = {v: report["variants"][v]["2"]["hit_rate"] for v in report["variants"]}
    assert hit == pytest.approx({"popularity": 1 / 3, "batch_only": 2 / 3, "session_only": 1.0, "hybrid": 1.0})
    assert report["variants"]["batch_only"]["2"]["mrr"] == pytest.approx((1 / 2 + 1 / 2) / 3)
    assert report["variants"]["hybrid"]["2"]["n_lists"] == 3
    assert report["strategies"] == {
        "batch_only": {"popular": 1, "precomputed": 2},
        "session_only": {"session": 3},
        "hybrid": {"hybrid": 2, "session": 1},
    }
    assert report["n_by_position"]["1"] == report["n_by_position"]["2"] == report["n_by_position"]["3"] == 1
    assert report["hit_rate_at_10_by_position"]["batch_only"]["3"] == 0.0  # a2 is not in u0's top 2


def test_order_within_a_session_decides_the_targets() -> None:
    events = _events()
    s1 = events["session_id"] == "S1"
    events.loc[s1, "position"] = events.loc[s1, "position"].to_numpy()[::-1]  # replay S1 backwards
    report = evaluate_replay(_serving(), events, ks=(2,), seed=0, max_sessions=None, params=HAND)
    # Backwards S1 is a2, a0, a1, a0 (click then view: one step, a repeat): targets a0, a1; 1 skipped.
    assert report["data"]["n_targets"] == 3
    assert report["data"]["n_skipped_repeat"] == 1


def test_sampling_is_seeded_and_ignores_one_step_sessions() -> None:
    events = _events()
    assert set(sample_sessions(events, None, 0)["session_id"]) == {"S1", "S2"}
    one = sample_sessions(events, 1, 7)
    assert one["session_id"].nunique() == 1
    assert one.equals(sample_sessions(events.sample(frac=1.0, random_state=3), 1, 7))


def test_missing_columns_are_refused() -> None:
    with pytest.raises(DataValidationError, match="position"):
        sample_sessions(_events().drop(columns="position"), None, 0)


def test_position_buckets() -> None:
    assert [position_label(t) for t in (1, 9, 10, 31)] == ["1", "9", "10+", "10+"]


def test_serving_model_is_the_published_content() -> None:
    data = tiny.version_data(n_users=2)
    padded = data.user_arrays["candidates"].copy()
    padded[1, 2:] = -1
    bundle, records = round_trip(
        type(data)(**{**data.__dict__, "user_arrays": {**data.user_arrays, "candidates": padded}})
    )
    assert records["u0"].candidates.tolist() == [0, 1, 2, 5]
    assert records["u1"].candidates.tolist() == [0, 1]
    assert bundle.item_index["b0"] == 3
    assert {k: v.tolist() for k, v in bundle.popular.items()} == {k: v.tolist() for k, v in tiny.POPULAR.items()}
    # float16 on the wire: what the API reads, not the float32 the run holds
    assert bundle.neighbour_scores.dtype == np.float32
    np.testing.assert_array_equal(bundle.neighbour_scores, tiny.NEIGHBOUR_SCORES.astype(np.float16))
    assert not np.array_equal(bundle.neighbour_scores, tiny.NEIGHBOUR_SCORES)  # 0.9 is not exact in float16


def test_paired_differences_use_the_same_targets_and_sessions() -> None:
    report = evaluate_replay(_serving(), _events(), ks=(10,), seed=0, max_sessions=None, params=HAND)
    hit = {v: report["variants"][v]["10"]["hit_rate"] for v in report["variants"]}
    paired = report["paired_hit_rate_at_10"]
    assert set(paired) == {"hybrid_vs_batch_only", "hybrid_vs_session_only"}  # no re-ranker given
    for name, p in paired.items():
        a, b = name.split("_vs_")
        assert p["difference"] == pytest.approx(hit[a] - hit[b])
        assert (p["n_targets"], p["n_sessions"]) == (3, 2)
        assert p["ci95_low"] <= p["difference"] <= p["ci95_high"]


def test_a_target_budget_takes_whole_sessions_in_seeded_order() -> None:
    events = _events()  # S1: 3 steps after the first, S2: 2 (S3 has one step: never sampled)
    assert sample_sessions(events, None, 0, max_targets=1)["session_id"].nunique() == 1
    assert set(sample_sessions(events, None, 0, max_targets=5)["session_id"]) == {"S1", "S2"}
    for seed in range(4):
        one = sample_sessions(events, None, seed, max_targets=3)
        steps = {"S1": 3, "S2": 2}
        taken = list(dict.fromkeys(one["session_id"]))
        assert sum(steps[s] for s in taken) >= 3  # the budget is reached...
        assert len(taken) == 1 or steps[min(taken, key=steps.get)] < 3  # ...by the last session taken
        assert one.equals(sample_sessions(events.sample(frac=1.0, random_state=seed), None, seed, max_targets=3))


def test_seen_share_counts_lists_holding_an_item_of_the_users_history() -> None:
    """u0's batch-only list is [a0, a1] (its candidates; its published seen set is empty, so nothing is
    removed). Told that u0 had a0 before, both of S1's batch-only lists hold a seen item; S2's user is
    unknown (no history). Hybrid removes the session's a0 itself, so its lists hold none."""
    plain = evaluate_replay(_serving(), _events(), ks=(2,), seed=0, max_sessions=None, params=HAND)
    assert plain["seen_share_at_10"] == {v: 0.0 for v in ("popularity", "batch_only", "session_only", "hybrid")}
    told = evaluate_replay(
        _serving(), _events(), ks=(2,), seed=0, max_sessions=None, params=HAND, history_of={"u0": frozenset({0})}
    )
    assert told["seen_share_at_10"]["batch_only"] == pytest.approx(2 / 3)
    assert told["seen_share_at_10"]["hybrid"] == 0.0
    assert told["published_seen_share_at_10"]["batch_only"] == 0.0  # the version was never told about a0
    assert told["variants"] == plain["variants"]  # the history only measures, it never changes a list

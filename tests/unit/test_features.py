"""Request-time features on the tiny version, each against a hand-computed value."""

from dataclasses import replace

import numpy as np
import pytest

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from online.features import FEATURES, build_pool
from online.model import LoadedModel
from tests.support import tiny

# a0 is often followed by b2 (score 0.5) and a1 (0.25); b0 by a2 (0.8). Everything else: none.
COVISIT = np.full((6, 2), -1, dtype=np.int32)
COVISIT_SCORES = np.zeros((6, 2), dtype=np.float32)
COVISIT[0], COVISIT_SCORES[0] = [5, 1], [0.5, 0.25]
COVISIT[3], COVISIT_SCORES[3] = [2, -1], [0.8, 0.0]


def _model() -> LoadedModel:
    return LoadedModel.from_bundle(
        replace(tiny.bundle(), arrays={**tiny.ITEM_ARRAYS, "covisit": COVISIT, "covisit_scores": COVISIT_SCORES})
    )


def _events(*items: str, kind: str = "view") -> list[SessionEvent]:
    return [SessionEvent(item_id=i, event_type=kind, ts=float(n), event_id=f"e{n}") for n, i in enumerate(items)]


def _pool(user=None, session=(), half_life=1.0, category=None):
    return build_pool(_model(), RequestFeatures(user, _events(*session)), category, 5, half_life, 50)


def _col(pool, name: str, item: str) -> float:
    j = tiny.ITEM_IDS.index(item)
    return float(pool.column(name)[np.flatnonzero(pool.items == j)[0]])


def test_pool_holds_covisit_neighbours_and_excludes_the_session() -> None:
    pool = _pool(session=("a0",))
    ids = {tiny.ITEM_IDS[j] for j in pool.items.tolist()}
    assert "a0" not in ids and {"a1", "a2", "b2"} <= ids
    rows = np.searchsorted(pool.items, [5, 1])
    # b2 reaches the pool only through co-visitation; for a1 the ALS neighbour label wins when both apply
    assert pool.reasons(rows) == ["often_next_to:a0", "similar_to:a0"]


def test_covisit_sums_over_seeds_with_recency_decay() -> None:
    # session a0 then b0, half-life 1 event: b0 (newest) decays 1.0, a0 decays 0.5
    pool = _pool(session=("a0", "b0"))
    assert _col(pool, "covisit", "a2") == pytest.approx(0.8)
    assert _col(pool, "covisit", "b2") == pytest.approx(0.5 * 0.5)
    assert _col(pool, "covisit", "a1") == pytest.approx(0.5 * 0.25)
    assert _col(pool, "covisit", "b1") == 0.0


def test_category_share_is_the_decayed_weight_share_of_the_category() -> None:
    # views a0, a1, b0 with half-life 1: weights 0.25, 0.5, 1.0 -> category A holds 0.75 / 1.75
    pool = _pool(session=("a0", "a1", "b0"))
    assert _col(pool, "category_share", "a2") == pytest.approx(0.75 / 1.75)
    assert _col(pool, "category_share", "b1") == pytest.approx(1.0 / 1.75)


def test_candidate_rank_and_membership() -> None:
    user = UserRecord(vector=np.array([1.0, 0.0], dtype=np.float32), candidates=np.array([2, 5], dtype=np.int32))
    pool = _pool(user=user, session=("b0",))
    assert _col(pool, "candidate_rank", "a2") == pytest.approx(1.0)  # rank 0: 1/log2(2)
    assert _col(pool, "candidate_rank", "b2") == pytest.approx(1 / np.log2(3))
    assert _col(pool, "in_candidates", "b1") == 0.0 and _col(pool, "in_candidates", "b2") == 1.0
    assert _col(pool, "user_dot", "b2") == pytest.approx(0.2)


def test_last_item_sim_uses_the_newest_item_only() -> None:
    pool = _pool(session=("b0", "a0"))
    assert _col(pool, "last_item_sim", "a1") == pytest.approx(0.9 / np.hypot(0.9, 0.1), rel=1e-5)


def test_z_features_are_zero_without_their_signal_and_every_feature_has_pool_length() -> None:
    pool = _pool()  # cold start: no user, no session
    assert pool.items.size > 0
    for name in FEATURES:
        col = pool.column(name)
        assert col.shape == pool.items.shape and col.dtype == np.float32, name
    for name in ("user_z", "session_z", "covisit_z", "category_share", "candidate_rank"):
        assert not pool.column(name).any(), name
    assert pool.column("popularity_z").std() > 0

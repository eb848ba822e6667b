"""Baselines and the static protocol on a block matrix where the right answer is obvious.

Two groups of 4 users x 4 items (users 0-3 like items 0-3, users 4-7 like items 4-7); user u has
not seen item u, which is the one item of its own group left to recommend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from batch.train import AlsParams
from lab.baselines import ALS, ItemKNN, Popularity
from lab.splits import TemporalHoldout
from lab.static import markdown_table, run_static_protocol
from shared.errors import ModelError

PARAMS = AlsParams(factors=4, regularization=0.05, alpha=4.0, iterations=20)
USERS = np.arange(8)


def _block_dense() -> np.ndarray:
    dense = np.zeros((8, 8), dtype=np.float32)
    dense[:4, :4] = 1.0
    dense[4:, 4:] = 1.0
    np.fill_diagonal(dense, 0.0)
    return dense


def _block() -> csr_matrix:
    return csr_matrix(_block_dense())


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_item_knn_recommends_the_missing_item_of_the_group_and_nothing_across(similarity: str) -> None:
    # Item u is similar to the 3 items user u has (2 shared users each); nothing links the groups,
    # so the other group's items have no score and the rest of the list is padding.
    lists = ItemKNN(similarity, neighbours=10).fit(_block()).recommend(USERS, 3)
    assert lists.dtype == np.int32
    assert lists.tolist() == [[u, -1, -1] for u in range(8)]


def test_als_ranks_the_missing_item_first_and_is_seeded() -> None:
    first = ALS(PARAMS, seed=1).fit(_block()).recommend(USERS, 2)
    again = ALS(PARAMS, seed=1).fit(_block()).recommend(USERS, 2)
    assert first[:, 0].tolist() == list(range(8))
    assert np.array_equal(first, again)


def test_popularity_ranks_by_training_users_then_by_index() -> None:
    dense = _block_dense()
    dense[0, 5] = 1.0  # item 5 now has 4 users, the rest 3
    dense[4, 6] = 50.0  # a heavy weight is still one user: item 6 stays at 3
    lists = Popularity().fit(csr_matrix(dense)).recommend(np.array([0, 1, 4]), 3)
    # user 0 has seen 1, 2, 3, 5 -> ties of count 3 by index: 0, 4, 6
    # user 1 has seen 0, 2, 3 -> 5 first (4 users), then 1, 4
    # user 4 has seen 5, 6, 7 -> all left have 3 users: 0, 1, 2
    assert lists.tolist() == [[0, 4, 6], [5, 1, 4], [0, 1, 2]]


def test_models_refuse_to_recommend_before_fit() -> None:
    for model in (Popularity(), ItemKNN(), ALS(PARAMS, seed=0)):
        with pytest.raises(ModelError, match="before fit"):
            model.recommend(USERS, 1)


def _block_events() -> pd.DataFrame:
    """The block as events: each user's own-group items in order, item u last (the temporal holdout)."""
    rows = []
    for u in range(8):
        group = range(0, 4) if u < 4 else range(4, 8)
        for i in [*(j for j in group if j != u), u]:
            rows.append((f"u{u}", f"i{i}"))
    ts = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(np.arange(len(rows)), unit="min")
    return pd.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "weight": 1.0, "ts": ts})


def test_evaluate_static_on_the_block() -> None:
    models = {"popularity": Popularity(), "item_knn": ItemKNN(neighbours=10), "als": ALS(PARAMS, seed=1)}
    result = run_static_protocol(_block_events(), TemporalHoldout(1), models, ks=(1, 2), seed=0)

    assert result["data"]["n_eval_users"] == 8 and result["data"]["n_heldout_pairs"] == 8
    assert result["protocol"] == {"name": "temporal", "holdout_per_user": 1}
    for name in ("item_knn", "als"):
        row = result["models"][name]["1"]
        # every user's top-1 is its held-out item: all accuracy metrics 1, all 8 items shown once.
        assert {m: row[m] for m in ("recall", "ndcg", "hit_rate", "mrr", "coverage")} == pytest.approx(
            {"recall": 1.0, "ndcg": 1.0, "hit_rate": 1.0, "mrr": 1.0, "coverage": 1.0}
        )
    pop = result["models"]["popularity"]["1"]
    # All 8 items have 3 training users (tied), so top-1 = lowest unseen index: users 0-3 get item u
    # (hit), users 4-7 get item 0 (miss) -> recall 4/8; shown {0, 1, 2, 3} -> coverage 4/8; every
    # percentile is the all-tied 0.5.
    assert pop["recall"] == pytest.approx(0.5) and pop["coverage"] == pytest.approx(0.5)
    assert pop["popularity_bias"] == pytest.approx(0.5)
    # k = 2 for popularity: users 4-7 now get [0, 1], still a miss; users 0-3 keep the hit at rank 1.
    assert result["models"]["popularity"]["2"]["mrr"] == pytest.approx(0.5)
    assert "| als | 1 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 |" in markdown_table(result)

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from batch.evaluate import coverage, evaluate, holdout_indices, ndcg_at_k, recall_at_k, temporal_split
from batch.train import AlsModel, AlsParams, train_als
from shared.errors import ModelError

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def _events(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """rows: (user, item, hour offset); returned sorted by ts like the real input."""
    df = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": "view",
            "ts": [T0 + pd.Timedelta(hours=r[2]) for r in rows],
            "weight": 1.0,
            "session_id": None,
        }
    )
    df["ts"] = df["ts"].astype("datetime64[us, UTC]")
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


# --- metrics, against hand-computed values ------------------------------------------------------


def test_recall_and_ndcg_of_the_worked_example() -> None:
    # ranked [3, 1, 7], relevant {1, 9}, k = 2: one hit at rank 2, two relevant items both fit in k.
    assert recall_at_k([3, 1, 7], {1, 9}, 2) == pytest.approx(0.5)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k([3, 1, 7], {1, 9}, 2) == pytest.approx(expected)


def test_metrics_normalise_by_min_k_and_relevant() -> None:
    # 3 relevant, k = 2, both slots hit: a perfect top-2, so both metrics are 1.
    assert recall_at_k(np.array([4, 5, 6]), {4, 5, 6}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([4, 5, 6]), {4, 5, 6}, 2) == pytest.approx(1.0)
    # one relevant item at rank 3 of k = 5: recall 1, ndcg 1 / log2(4) = 0.5.
    assert recall_at_k([0, 1, 2, 3, 4], {2}, 5) == pytest.approx(1.0)
    assert ndcg_at_k([0, 1, 2, 3, 4], {2}, 5) == pytest.approx(0.5)
    # padding and misses score zero.
    assert recall_at_k([-1, -1], {3}, 2) == 0.0
    assert ndcg_at_k([7, -1], {3}, 2) == 0.0
    # a repeated hit counts once: ranks 1 and 2 hold the same item.
    assert ndcg_at_k([2, 2, 9], {2, 9}, 3) == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_metrics_refuse_an_empty_relevant_set() -> None:
    with pytest.raises(ModelError):
        recall_at_k([1, 2], set(), 2)
    with pytest.raises(ModelError):
        ndcg_at_k([1, 2], set(), 2)


def test_coverage_counts_distinct_items_and_ignores_padding() -> None:
    assert coverage(np.array([[0, 1, -1], [1, 2, -1]]), 10) == pytest.approx(0.3)
    assert coverage([[5], [5], [5]], 5) == pytest.approx(0.2)


# --- temporal split ------------------------------------------------------------------------------


def test_temporal_split_holds_out_last_distinct_item_and_skips_unfair_or_small_users() -> None:
    events = _events(
        [
            ("plain", "a", 1), ("plain", "b", 2), ("plain", "c", 3), ("plain", "d", 4),
            ("repeat", "a", 1), ("repeat", "b", 2), ("repeat", "c", 3), ("repeat", "a", 4),
            ("small", "a", 1), ("small", "b", 2), ("small", "b", 3),
        ]
    )  # fmt: skip
    train, holdout = temporal_split(events, holdout_per_user=1)

    assert holdout == {"plain": {"d"}}
    kept = set(zip(train["user_id"], train["item_id"], train["ts"].dt.hour, strict=True))
    assert ("plain", "d", 4) not in kept
    assert ("repeat", "a", 4) not in kept  # candidate events at/after T never reach train
    assert ("repeat", "a", 1) in kept  # its earlier history stays
    assert len(train) == len(events) - 2
    assert {("small", "b", 3), ("small", "a", 1)} <= kept
    assert list(train.columns) == list(events.columns)


def test_temporal_split_with_two_held_out_items_uses_the_earliest_last_event_as_holdout_point() -> None:
    # Walking back: c (t5), d (t4) -> T = t4. c also occurred at t3 < T: unfair, dropped; d is kept.
    events = _events([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4), ("u", "c", 5)])
    train, holdout = temporal_split(events, holdout_per_user=2)
    assert holdout == {"u": {"d"}}
    assert list(zip(train["item_id"], train["ts"].dt.hour, strict=True)) == [("a", 1), ("b", 2), ("c", 3)]


def test_temporal_split_handles_equal_timestamps_by_input_order() -> None:
    events = _events([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 3)])
    train, holdout = temporal_split(events, holdout_per_user=1)
    assert holdout == {"u": {"d"}}
    assert train["item_id"].tolist() == ["a", "b", "c"]


# --- evaluate ------------------------------------------------------------------------------------


def _block_setup() -> tuple[AlsModel, csr_matrix, dict[int, np.ndarray]]:
    """Two groups of 4 users x 4 items; each user misses one item of its group, which is held out."""
    dense = np.zeros((8, 8), dtype=np.float32)
    dense[:4, :4] = 1.0
    dense[4:, 4:] = 1.0
    np.fill_diagonal(dense, 0.0)
    train = csr_matrix(dense)
    model = train_als(train, AlsParams(factors=4, regularization=0.05, alpha=4.0, iterations=20), seed=1)
    return model, train, {u: np.array([u], dtype=np.int32) for u in range(8)}


def test_evaluate_block_model_is_perfect_and_popularity_is_not() -> None:
    model, train, holdout = _block_setup()
    popularity = np.arange(8, dtype=np.float32)  # item 7 most popular, then 6, ...
    result = evaluate(model, train, holdout, k=1, max_users=100, seed=0, popularity_scores=popularity)

    assert result["k"] == 1 and result["n_users_evaluated"] == 8
    assert result["als"] == pytest.approx({"recall": 1.0, "ndcg": 1.0, "coverage": 1.0})
    # Popularity top-1 among unseen items: users 0-3 have not seen 4-7, so all get item 7 (miss).
    # Users 4-7 have seen their group except item u, which outranks 0-3: each gets its held-out item.
    # recall = ndcg = 4 / 8; recommended {7, 4, 5, 6} -> coverage 4 / 8.
    assert result["popularity"] == pytest.approx({"recall": 0.5, "ndcg": 0.5, "coverage": 0.5})


def test_evaluate_samples_users_reproducibly_with_the_seed() -> None:
    model, train, holdout = _block_setup()
    pop = np.ones(8, dtype=np.float32)
    a = evaluate(model, train, holdout, k=2, max_users=3, seed=4, popularity_scores=pop)
    b = evaluate(model, train, holdout, k=2, max_users=3, seed=4, popularity_scores=pop)
    assert a == b and a["n_users_evaluated"] == 3


def test_evaluate_validates_shapes() -> None:
    model, train, holdout = _block_setup()
    with pytest.raises(ModelError, match="popularity"):
        evaluate(model, train, holdout, k=1, max_users=10, seed=0, popularity_scores=np.ones(3))
    with pytest.raises(ModelError, match="train_matrix"):
        evaluate(model, train[:4], holdout, k=1, max_users=10, seed=0, popularity_scores=np.ones(8))
    with pytest.raises(ModelError, match="no user"):
        evaluate(model, train, {}, k=1, max_users=10, seed=0, popularity_scores=np.ones(8))


def test_holdout_indices_maps_ids() -> None:
    out = holdout_indices({"u2": {"b", "a"}}, {"u1": 0, "u2": 1}, {"a": 0, "b": 1})
    assert list(out) == [1] and out[1].tolist() == [0, 1]
    with pytest.raises(ModelError):
        holdout_indices({"u9": {"a"}}, {"u1": 0}, {"a": 0})

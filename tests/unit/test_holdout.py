from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from batch.holdout import holdout_indices, temporal_split
from batch.holdout_metrics import holdout_metrics
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
    result = holdout_metrics(model, train, holdout, k=1, max_users=100, seed=0, popularity_scores=popularity)

    assert result["k"] == 1 and result["n_users_evaluated"] == 8
    assert result["als"] == pytest.approx({"recall": 1.0, "ndcg": 1.0, "coverage": 1.0})
    # Popularity top-1 among unseen items: users 0-3 have not seen 4-7, so all get item 7 (miss).
    # Users 4-7 have seen their group except item u, which outranks 0-3: each gets its held-out item.
    # recall = ndcg = 4 / 8; recommended {7, 4, 5, 6} -> coverage 4 / 8.
    assert result["popularity"] == pytest.approx({"recall": 0.5, "ndcg": 0.5, "coverage": 0.5})


def test_evaluate_samples_users_reproducibly_with_the_seed() -> None:
    model, train, holdout = _block_setup()
    pop = np.ones(8, dtype=np.float32)
    a = holdout_metrics(model, train, holdout, k=2, max_users=3, seed=4, popularity_scores=pop)
    b = holdout_metrics(model, train, holdout, k=2, max_users=3, seed=4, popularity_scores=pop)
    assert a == b and a["n_users_evaluated"] == 3


def test_evaluate_validates_shapes() -> None:
    model, train, holdout = _block_setup()
    with pytest.raises(ModelError, match="popularity"):
        holdout_metrics(model, train, holdout, k=1, max_users=10, seed=0, popularity_scores=np.ones(3))
    with pytest.raises(ModelError, match="train_matrix"):
        holdout_metrics(model, train[:4], holdout, k=1, max_users=10, seed=0, popularity_scores=np.ones(8))
    with pytest.raises(ModelError, match="no user"):
        holdout_metrics(model, train, {}, k=1, max_users=10, seed=0, popularity_scores=np.ones(8))


def test_holdout_indices_maps_ids() -> None:
    out = holdout_indices({"u2": {"b", "a"}}, {"u1": 0, "u2": 1}, {"a": 0, "b": 1})
    assert list(out) == [1] and out[1].tolist() == [0, 1]
    with pytest.raises(ModelError):
        holdout_indices({"u9": {"a"}}, {"u1": 0}, {"a": 0})

"""Seeded splits and full ranking of lab.splits on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from batch.holdout import temporal_split
from lab.splits import Factors, RandomHoldout, TemporalHoldout, random_split, rank_all
from shared.errors import DataValidationError

T0 = pd.Timestamp("2024-03-01", tz="UTC")
# distinct items per user -> held out at 20%: n_test = min(n - 1, max(1, floor(0.2 n + 0.5)))
#   13 -> floor(3.1) = 3; 10 -> floor(2.5) = 2; 8 -> floor(2.1) = 2; 5 -> floor(1.5) = 1;
#    3 -> floor(1.1) = 1 (max 1);  2 -> 1 (keeps one to train on);  1 -> 0 (only trains).
SIZES = {"a": 13, "b": 10, "c": 8, "d": 5, "e": 3, "f": 2, "g": 1}
EXPECTED_TEST = {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1, "f": 1}


def _interactions() -> pd.DataFrame:
    """Users of SIZES; each pair has two events (so a split that keeps one of them would leak)."""
    rows = [(u, f"i{j:02d}") for u, n in SIZES.items() for j in range(n)]
    rows = rows + rows
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "weight": 1.0,
            "ts": [T0 + pd.Timedelta(minutes=m) for m in range(len(rows))],
        }
    )


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def test_random_split_is_disjoint_and_covers_every_pair_once() -> None:
    data = _interactions()
    train, holdout = random_split(data, 0.2, seed=3)
    held = {(u, i) for u, items in holdout.items() for i in items}
    assert not held & _pairs(train)  # no event of a held-out pair stays in train
    assert held | _pairs(train) == _pairs(data)
    assert len(train) == len(data) - 2 * len(held)  # both events of each held-out pair left
    assert {u: len(items) for u, items in holdout.items()} == EXPECTED_TEST
    assert list(train.columns) == list(data.columns)


def test_random_split_is_seeded_and_independent_of_row_order() -> None:
    data = _interactions()
    _, first = random_split(data, 0.2, seed=3)
    _, again = random_split(data, 0.2, seed=3)
    shuffled = data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    _, reordered = random_split(shuffled, 0.2, seed=3)
    _, other = random_split(data, 0.2, seed=4)
    assert first == again == reordered
    assert other != first


def test_random_split_draws_each_users_test_items_uniformly() -> None:
    # 10 items, 2 held out: over 500 seeds each item should be held out 500 * 2/10 = 100 times.
    data = pd.DataFrame({"user_id": "u", "item_id": [f"i{j}" for j in range(10)], "weight": 1.0})
    counts = pd.Series([i for s in range(500) for i in random_split(data, 0.2, seed=s)[1]["u"]]).value_counts()
    assert len(counts) == 10
    assert counts.between(65, 135).all()  # +-3.9 sd of Binomial(500, 0.2) = 100 +- 35


def test_random_split_rejects_bad_fractions_and_missing_columns() -> None:
    with pytest.raises(DataValidationError, match="test_fraction"):
        random_split(_interactions(), 1.0, seed=0)
    with pytest.raises(DataValidationError, match="missing"):
        random_split(pd.DataFrame({"user_id": ["u"]}), 0.2, seed=0)


def test_protocol_objects_delegate_to_their_split() -> None:
    data = _interactions()
    train, holdout = TemporalHoldout(holdout_per_user=1).split(data, seed=99)
    expected_train, expected_holdout = temporal_split(data, 1)
    assert holdout == expected_holdout
    pd.testing.assert_frame_equal(train, expected_train)
    assert RandomHoldout(0.2).split(data, seed=3)[1] == random_split(data, 0.2, seed=3)[1]
    with pytest.raises(DataValidationError, match="ts"):  # no timestamps (Last.fm plays): refused
        TemporalHoldout().split(data.drop(columns="ts"), seed=0)


# --- full ranking --------------------------------------------------------------------------------

SCORES = np.array(
    [
        [0.5, 0.9, 0.9, 0.1, 0.0],  # item 1 seen; 2 beats 0 beats 3 -> [2, 0, 3]
        [0.3, 0.3, 0.3, 0.3, 0.3],  # all tied, item 0 seen -> by index [1, 2, 3]
        [0.0, 0.0, 0.2, 0.1, 0.0],  # items 2 and 3 seen; zeros tie -> [0, 1, 4]
    ],
    dtype=np.float32,
)
SEEN = csr_matrix(np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=np.float32))
EXPECTED = [[2, 0, 3], [1, 2, 3], [0, 1, 4]]


def test_rank_all_factors_and_score_functions_rank_the_same_way() -> None:
    users = np.arange(3)
    by_factors = rank_all(Factors(SCORES, np.eye(5, dtype=np.float32)), SEEN, users, 3)
    by_function = rank_all(lambda block: SCORES[block], SEEN, users, 3, batch_size=1)
    assert by_factors.dtype == np.int32
    assert by_factors.tolist() == by_function.tolist() == EXPECTED
    assert rank_all(lambda block: SCORES[block], SEEN, np.array([2, 0]), 3).tolist() == [EXPECTED[2], EXPECTED[0]]


def test_rank_all_pads_when_fewer_items_are_rankable() -> None:
    # k = 6 > 5 items: 4 unseen items then padding, on both paths.
    assert rank_all(Factors(SCORES, np.eye(5, dtype=np.float32)), SEEN, np.array([0]), 6).tolist() == [
        [2, 0, 3, 4, -1, -1]
    ]
    # -inf scores are never recommended: user 0 can only get items 0 and 4.
    masked = np.where([True, False, False, False, True], SCORES[0], -np.inf)[None, :].astype(np.float32)
    assert rank_all(lambda block: masked, SEEN, np.array([0]), 3).tolist() == [[0, 4, -1]]

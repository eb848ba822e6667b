from __future__ import annotations

import numpy as np
import pytest

from batch.fusion import fuse_candidates
from shared.errors import ModelError


def test_reciprocal_rank_known_answer() -> None:
    a = np.array([[1, 2, 3, -1]])
    b = np.array([[3, 4, -1]])
    ids, scores = fuse_candidates(a, b, n=6, weight_b=1.0, k0=60.0)
    # 3: 1/63 + 1/61; 1: 1/61; then 2 and 4 tie at 1/62 and go by ascending id; then padding
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert ids.tolist() == [[3, 1, 2, 4, -1, -1]]
    expected = np.float32([1 / 63 + 1 / 61, 1 / 61, 1 / 62, 1 / 62, -np.inf, -np.inf])
    assert np.array_equal(scores[0], expected)


def test_weight_moves_the_balance_between_the_lists() -> None:
    a = np.array([[5, 1, 9]])
    b = np.array([[2, 7, 1]])
    assert fuse_candidates(a, b, n=5, weight_b=0.0)[0].tolist() == [[5, 1, 9, 2, 7]]  # b-only items by id
    assert fuse_candidates(a, b, n=5, weight_b=0.0)[1][0, 3:].tolist() == [0.0, 0.0]
    assert fuse_candidates(a, b, n=5, weight_b=100.0)[0].tolist() == [[2, 7, 1, 5, 9]]
    # k0 = 1: item 1 (1/3 + 1/4) beats 5 and 2 (1/2 each), which tie and go by id
    assert fuse_candidates(a, b, n=3, weight_b=1.0, k0=1.0)[0].tolist() == [[1, 2, 5]]


def test_rows_are_fused_independently_and_deterministically() -> None:
    rng = np.random.default_rng(0)
    a = np.stack([rng.permutation(50)[:20] for _ in range(30)])
    b = np.stack([rng.permutation(50)[:20] for _ in range(30)])
    b[3, 15:] = -1
    ids, scores = fuse_candidates(a, b, n=25, weight_b=0.7)
    for u in (0, 3, 29):
        one_ids, one_scores = fuse_candidates(a[u : u + 1], b[u : u + 1], n=25, weight_b=0.7)
        assert np.array_equal(one_ids[0], ids[u]) and np.array_equal(one_scores[0], scores[u])
        assert len(set(ids[u].tolist())) == 25
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_empty_lists_give_padding() -> None:
    ids, scores = fuse_candidates(np.full((2, 3), -1), np.full((2, 1), -1), n=2)
    assert (ids == -1).all() and (scores == -np.inf).all()


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([[1, 1, 2]], [[3]], {}, "repeats an item"),
        ([[1, -1, 2]], [[3]], {}, "after -1 padding"),
        ([[1, 2]], [[3], [4]], {}, "one row per user"),
        ([[1, 2]], [[3]], {"weight_b": -1.0}, "weight_b"),
        ([[1, 2]], [[3]], {"n": 0}, "n >= 1"),
    ],
)
def test_bad_inputs_are_refused(a: list, b: list, kwargs: dict, match: str) -> None:
    args = {"n": 3, **kwargs}
    with pytest.raises(ModelError, match=match):
        fuse_candidates(np.array(a), np.array(b), **args)

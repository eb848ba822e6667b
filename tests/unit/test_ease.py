from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from batch.ease import EaseModel, EaseParams, ease_item_neighbours, ease_top_n, train_ease
from shared.errors import ConfigError, ModelError
from tests.support.matrices import block_matrix

# block_matrix: in each 4-item block every item has 3 users and each pair of items shares 2, so
# G = (1 + l2) I + 2 J per block and, by Sherman-Morrison, B_ij = 2 / (l2 + 7) inside a block, 0 across.
L2 = 1.0
IN_BLOCK = 2.0 / (L2 + 7.0)  # 0.25


def fit(matrix: csr_matrix, l2: float = L2) -> EaseModel:
    return train_ease(matrix, EaseParams(l2=l2, max_items=1_000))


def test_block_matrix_weights_match_the_closed_form() -> None:
    weights = fit(block_matrix()).weights
    expected = np.zeros((8, 8))
    expected[:4, :4] = expected[4:, 4:] = IN_BLOCK
    np.fill_diagonal(expected, 0.0)
    assert weights.dtype == np.float32 and weights.shape == (8, 8)
    np.testing.assert_allclose(weights, expected, atol=1e-7)
    assert (np.diagonal(weights) == 0).all() and (weights[:4, 4:] == 0).all()


def test_weights_match_a_dense_inverse_and_ignore_strengths() -> None:
    rng = np.random.default_rng(3)
    binary = (rng.random((60, 300)) < 0.08).astype(np.float64)  # 300 items: more than one row block
    strengths = csr_matrix((binary * rng.integers(1, 9, binary.shape)).astype(np.float32))
    p = np.linalg.inv(binary.T @ binary + 5.0 * np.eye(300))
    expected = -p / np.diagonal(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    weights = fit(strengths, l2=5.0).weights
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-7)
    assert np.array_equal(weights, fit(csr_matrix(binary.astype(np.float32)), l2=5.0).weights)


def test_fits_are_bit_identical() -> None:
    matrix = csr_matrix((np.random.default_rng(0).random((40, 90)) < 0.1).astype(np.float32))
    assert np.array_equal(fit(matrix).weights, fit(matrix).weights)


def test_user_gets_the_missing_item_of_their_block_first() -> None:
    matrix = block_matrix()
    ids, scores = ease_top_n(fit(matrix), matrix, n=5)
    assert ids.dtype == np.int32 and scores.dtype == np.float32 and ids.shape == (8, 5)
    assert ids[:, 0].tolist() == list(range(8))
    np.testing.assert_allclose(scores[:, 0], 3 * IN_BLOCK, rtol=1e-6)
    # the other block scores exactly 0 and ties go by ascending index
    assert ids[0].tolist() == [0, 4, 5, 6, 7] and scores[0, 1:].tolist() == [0.0] * 4
    assert ids[5].tolist() == [5, 0, 1, 2, 3]


def test_seen_and_banned_items_are_excluded_and_short_lists_are_padded() -> None:
    matrix = block_matrix()
    banned = np.zeros(8, dtype=bool)
    banned[[4, 5]] = True
    ids, scores = ease_top_n(fit(matrix), matrix, n=6, banned=banned)
    for u in range(8):
        assert not set(ids[u].tolist()) & (set(matrix[u].indices.tolist()) | {4, 5})
    assert ids[0].tolist() == [0, 6, 7, -1, -1, -1]
    assert scores[0, 3:].tolist() == [-np.inf] * 3
    assert ids[6].tolist() == [6, 0, 1, 2, 3, -1]
    ids_big, scores_big = ease_top_n(fit(matrix), matrix, n=12)  # n above the catalogue size
    assert ids_big.shape == (8, 12) and (ids_big[:, 5:] == -1).all() and (scores_big[:, 5:] == -np.inf).all()


def test_a_stored_zero_excludes_the_item_but_adds_no_score() -> None:
    model = fit(block_matrix())
    history = csr_matrix((np.array([1.0, 0.0], dtype=np.float32), (np.array([0, 0]), np.array([1, 2]))), shape=(1, 8))
    ids, scores = ease_top_n(model, history, n=3)
    assert ids[0].tolist() == [0, 3, 4]  # item 2 excluded; only item 1 scores
    np.testing.assert_allclose(scores[0, :2], IN_BLOCK, rtol=1e-6)


def test_a_user_without_history_gets_items_by_index() -> None:
    empty = csr_matrix((2, 8), dtype=np.float32)
    ids, scores = ease_top_n(fit(block_matrix()), empty, n=3)
    assert ids.tolist() == [[0, 1, 2], [0, 1, 2]] and (scores == 0).all()


def test_lists_do_not_depend_on_batch_size() -> None:
    rng = np.random.default_rng(7)
    matrix = csr_matrix((rng.random((50, 120)) < 0.1) * rng.random((50, 120)), dtype=np.float32)
    model = fit(matrix, l2=2.0)
    ids, scores = ease_top_n(model, matrix, n=20)
    ids_small, scores_small = ease_top_n(model, matrix, n=20, batch_size=3)
    assert np.array_equal(ids, ids_small) and np.array_equal(scores, scores_small)
    dense = matrix.toarray()
    brute = (dense > 0).astype(np.float32) @ model.weights
    brute[dense != 0] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(120), brute.shape), -brute), axis=1)[:, :20]
    assert np.array_equal(ids, order)


def test_memory_bound_refuses_before_allocating() -> None:
    huge = csr_matrix((np.ones(1, dtype=np.float32), ([0], [0])), shape=(1, 1_000_000))  # 12 TB dense
    with pytest.raises(ModelError, match=r"1000000 items needs about 11175\.9 GiB") as info:
        train_ease(huge, EaseParams(l2=10.0, max_items=20_000))
    message = str(info.value)
    assert "12000000000000 bytes" in message and "max_items=20000" in message
    assert "Raise max_items" in message and "ALS" in message
    with pytest.raises(ModelError, match="max_items=7"):
        train_ease(block_matrix(), EaseParams(l2=1.0, max_items=7))


@pytest.mark.parametrize(("l2", "max_items"), [(0.0, 10), (-1.0, 10), (float("nan"), 10), (float("inf"), 10), (1.0, 0)])
def test_invalid_params_are_refused(l2: float, max_items: int) -> None:
    with pytest.raises(ConfigError):
        EaseParams(l2=l2, max_items=max_items)


def test_model_and_inputs_are_validated() -> None:
    with pytest.raises(ModelError, match="zero diagonal"):
        EaseModel(np.eye(3, dtype=np.float32))
    with pytest.raises(ModelError, match="float32"):
        EaseModel(np.zeros((3, 3)))
    for bad in ([np.nan, 0.0], [np.inf, -np.inf]):  # the second pair would cancel in a careless check
        weights = np.zeros((3, 3), dtype=np.float32)
        weights[0, 1], weights[1, 0] = bad
        with pytest.raises(ModelError, match="NaN/inf"):
            EaseModel(weights)
    model = fit(block_matrix())
    with pytest.raises(ModelError, match="model's item columns"):
        ease_top_n(model, csr_matrix((2, 7), dtype=np.float32), n=3)
    with pytest.raises(ModelError, match="banned"):
        ease_top_n(model, block_matrix(), n=3, banned=np.zeros(7, dtype=bool))
    with pytest.raises(ModelError, match="csr_matrix"):
        train_ease(block_matrix().tocoo(), EaseParams(l2=1.0, max_items=10))


def test_item_neighbours_are_the_own_block_and_skip_unused_items() -> None:
    dense = np.zeros((8, 9), dtype=np.float32)
    dense[:, :8] = block_matrix().toarray()  # item 8: nobody used it
    ids, scores = ease_item_neighbours(fit(csr_matrix(dense)), n=4)
    assert ids[0].tolist() == [1, 2, 3, 4] and ids[6].tolist() == [4, 5, 7, 0]
    np.testing.assert_allclose(scores[0, :3], IN_BLOCK, rtol=1e-6)
    assert scores[0, 3] == 0.0
    assert ids[8].tolist() == [-1] * 4 and (scores[8] == -np.inf).all()
    assert 8 not in ease_item_neighbours(fit(csr_matrix(dense)), n=8)[0]

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix, vstack

from batch.train import AlsModel, AlsParams, auto_regularization, continue_als, refresh_users, train_als
from shared.config import Settings, get_settings
from shared.errors import ConfigError, ModelError
from tests.support.matrices import block_matrix

PARAMS = AlsParams(factors=4, regularization=0.05, alpha=4.0, iterations=20)


def test_params_from_settings() -> None:
    s = Settings(als_factors=16, als_regularization=0.1, als_alpha=2.0, als_iterations=7)
    assert AlsParams.from_settings(s) == AlsParams(factors=16, regularization=0.1, alpha=2.0, iterations=7)
    with pytest.raises(ConfigError):
        AlsParams(factors=0, regularization=0.1, alpha=1.0, iterations=1)


def test_block_matrix_scores_own_group_above_other_group() -> None:
    model = train_als(block_matrix(), PARAMS, seed=1)
    assert model.user_factors.shape == (8, 4) and model.item_factors.shape == (8, 4)
    assert model.user_factors.dtype == np.float32 and model.item_factors.dtype == np.float32
    scores = model.user_factors @ model.item_factors.T
    for u in range(8):
        own, other = (range(4), range(4, 8)) if u < 4 else (range(4, 8), range(4))
        assert scores[u, u] > max(scores[u, j] for j in other), f"user {u} prefers the other group"
        assert scores[u, u] > 0.5 * min(scores[u, j] for j in own if j != u)


def test_same_input_and_seed_give_identical_arrays_and_other_seed_differs() -> None:
    rng = np.random.default_rng(0)
    m = csr_matrix((rng.random((60, 40)) < 0.1) * rng.random((60, 40)), dtype=np.float32)
    a, b = train_als(m, PARAMS, seed=7), train_als(m, PARAMS, seed=7)
    assert np.array_equal(a.user_factors, b.user_factors)
    assert np.array_equal(a.item_factors, b.item_factors)
    c = train_als(m, PARAMS, seed=8)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_empty_rows_get_zero_vectors() -> None:
    m = block_matrix().toarray()
    m[2] = 0
    model = train_als(csr_matrix(m), PARAMS, seed=1)
    assert not model.user_factors[2].any()


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (csr_matrix(np.array([[np.nan, 1.0], [1.0, 0.0]], dtype=np.float32)), "NaN"),
        (block_matrix().tocoo(), "csr_matrix"),
        (csr_matrix((3, 3), dtype=np.float32), "empty"),
        (csr_matrix(np.array([[-1.0, 1.0]], dtype=np.float32)), "negative"),
    ],
)
def test_invalid_training_matrix_is_rejected(matrix: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        train_als(matrix, PARAMS, seed=1)  # type: ignore[arg-type]


def test_model_rejects_nan_wrong_dtype_and_mismatched_widths() -> None:
    ok = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ModelError, match="NaN"):
        AlsModel(np.full((2, 3), np.nan, dtype=np.float32), ok)
    with pytest.raises(ModelError, match="float32"):
        AlsModel(ok.astype(np.float64), ok)
    with pytest.raises(ModelError, match="widths"):
        AlsModel(ok, np.zeros((2, 4), dtype=np.float32))


def test_refresh_is_the_exact_least_squares_solve_with_confidence_one_plus_alpha_w() -> None:
    matrix = block_matrix()
    matrix.data[:] = np.linspace(0.5, 2.0, matrix.nnz, dtype=np.float32)
    model = train_als(matrix, PARAMS, seed=3)
    refreshed = refresh_users(model, matrix, PARAMS)

    y = model.item_factors.astype(np.float64)
    for u in (0, 5):
        row = matrix[u]
        yu, w = y[row.indices], row.data.astype(np.float64)
        a = y.T @ y + (yu.T * (PARAMS.alpha * w)) @ yu + PARAMS.regularization * np.eye(PARAMS.factors)
        b = yu.T @ (1.0 + PARAMS.alpha * w)
        np.testing.assert_allclose(refreshed.user_factors[u], np.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


def test_refresh_keeps_unchanged_users_close_changes_the_updated_one_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    dense = ((rng.random((80, 30)) < 0.15) * rng.integers(1, 4, (80, 30))).astype(np.float32)
    params = AlsParams(factors=8, regularization=0.1, alpha=2.0, iterations=30)
    model = train_als(csr_matrix(dense), params, seed=11)

    newer = dense.copy()
    newer[0, np.flatnonzero(dense[0] == 0)[:3]] = 3.0  # user 0's latest events
    new_user = np.zeros((1, 30), dtype=np.float32)
    new_user[0, :3] = 1.0
    full = vstack([csr_matrix(newer), csr_matrix(new_user)], format="csr")

    a = refresh_users(model, full, params)
    b = refresh_users(model, full, params)
    assert np.array_equal(a.user_factors, b.user_factors)
    assert a.user_factors.shape == (81, 8) and a.item_factors is model.item_factors

    def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))

    active = np.flatnonzero(dense[1:].any(axis=1)) + 1
    assert cosine(a.user_factors[active], model.user_factors[active]).min() > 0.99
    assert cosine(a.user_factors[:1], model.user_factors[:1])[0] < 0.99
    assert a.user_factors[80].any()


def test_refresh_rejects_other_item_columns() -> None:
    model = train_als(block_matrix(), PARAMS, seed=1)
    with pytest.raises(ModelError, match="item columns"):
        refresh_users(model, csr_matrix(np.ones((2, 9), dtype=np.float32)), PARAMS)


def test_the_full_data_model_gives_a_vector_to_an_item_only_the_holdout_had() -> None:
    """Item 7's only event is user 0's held-out last item: the blind fit leaves it a zero vector (it can
    never be recommended or seed a session); continued on the full data it gets a real one."""
    full = block_matrix().tolil()
    full[:, 7] = 0
    full[0, 7] = 1.0
    full = csr_matrix(full, dtype=np.float32)
    train = full.tolil()
    train[0, 7] = 0
    train = csr_matrix(train, dtype=np.float32)
    train.eliminate_zeros()
    blind = train_als(train, PARAMS, seed=1)
    assert not np.any(blind.item_factors[7])
    before = blind.item_factors.copy()
    served = continue_als(blind, full, PARAMS, sweeps=3)
    assert np.array_equal(blind.item_factors, before)  # the blind model (metrics, gate) is untouched
    assert np.all(np.linalg.norm(served.item_factors, axis=1) > 0)  # no zero vector left
    assert np.array_equal(continue_als(blind, full, PARAMS, 3).item_factors, served.item_factors)  # deterministic
    with pytest.raises(ModelError, match="does not match"):
        continue_als(blind, full[:4], PARAMS, 1)


def test_auto_regularization_is_four_times_the_median_confidence_and_resolved_once() -> None:
    # strengths 0.5, 1, 2 -> confidences 1 + 4 w = 3, 5, 9: median 5, lambda 20
    matrix = csr_matrix(np.array([[0.5, 0.0, 1.0], [0.0, 2.0, 0.0]], dtype=np.float32))
    assert auto_regularization(matrix, alpha=4.0) == 20.0
    auto = AlsParams(factors=2, regularization="auto", alpha=4.0, iterations=2)
    assert auto.resolved(matrix).regularization == 20.0
    fixed = AlsParams(factors=2, regularization=3.0, alpha=4.0, iterations=2)
    assert fixed.resolved(matrix) is fixed
    # train_als with "auto" is train_als with the resolved number, bit for bit
    a, b = train_als(matrix, auto, seed=1), train_als(matrix, auto.resolved(matrix), seed=1)
    assert a.item_factors.tobytes() == b.item_factors.tobytes()
    with pytest.raises(ConfigError):
        AlsParams(factors=2, regularization="often", alpha=4.0, iterations=2)  # type: ignore[arg-type]


def test_the_default_regularization_is_auto() -> None:
    assert get_settings().als_regularization == "auto"
    assert AlsParams.from_settings(get_settings()).regularization == "auto"

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from batch.candidates import decayed_popularity, item_neighbours, popular_by_category, top_k, top_n_unseen
from batch.matrix import build_id_maps
from batch.train import AlsModel, AlsParams, train_als
from shared.errors import DataValidationError, ModelError
from tests.support.matrices import block_matrix


def reference_top_k(queries: np.ndarray, items: np.ndarray, seen: csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: canonical scores (float64 products summed in factor order), full sort by (-score, index)."""
    acc = np.zeros((queries.shape[0], items.shape[0]))
    for j in range(queries.shape[1]):
        acc += queries[:, j, None].astype(np.float64) * items[None, :, j].astype(np.float64)
    scores = acc.astype(np.float32)
    scores[seen.nonzero()] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    return np.where(top == -np.inf, -1, order), top


def test_block_users_get_their_missing_group_item_first_and_never_a_seen_one() -> None:
    matrix = block_matrix()
    model = train_als(matrix, AlsParams(factors=4, regularization=0.05, alpha=4.0, iterations=20), seed=1)
    ids, scores = top_n_unseen(model, matrix, n=3)
    assert ids.dtype == np.int32 and scores.dtype == np.float32 and ids.shape == (8, 3)
    assert ids[:, 0].tolist() == list(range(8))
    for u in range(8):
        assert not set(ids[u].tolist()) & set(matrix[u].indices.tolist())
        assert np.all(np.diff(scores[u]) <= 0)


def test_padding_when_fewer_unseen_items_than_n() -> None:
    matrix = block_matrix()
    model = AlsModel(np.ones((8, 2), dtype=np.float32), np.ones((8, 2), dtype=np.float32))
    ids, scores = top_n_unseen(model, matrix, n=7)
    # 5 unseen items per user (own missing item + 4 of the other group), ties by index, then padding.
    assert ids[0].tolist() == [0, 4, 5, 6, 7, -1, -1]
    assert ids[6].tolist() == [0, 1, 2, 3, 6, -1, -1]
    assert np.all(scores[:, 5:] == -np.inf) and np.all(scores[:, :5] == 2.0)
    ids_big, _ = top_n_unseen(model, matrix, n=12)  # n larger than the catalogue
    assert ids_big.shape == (8, 12) and (ids_big[:, 5:] == -1).all()


def test_ties_break_by_ascending_index_and_zero_user_ranks_by_index() -> None:
    users = np.array([[1.0], [0.0]], dtype=np.float32)
    items = np.array([[1.0], [2.0], [2.0], [0.0], [2.0]], dtype=np.float32)
    exclude = csr_matrix(np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    ids, scores = top_k(users, items, 5, exclude=exclude)
    assert ids[0].tolist() == [1, 4, 0, 3, -1]
    assert scores[0].tolist() == [2.0, 2.0, 1.0, 0.0, -np.inf]
    assert ids[1].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("n_items", "integer"), [(7, True), (100, True), (1037, True), (1000, False), (2053, False)])
def test_selection_matches_brute_force(n_items: int, integer: bool) -> None:
    rng = np.random.default_rng(n_items)
    if integer:  # many exact ties
        users = rng.integers(-2, 3, (50, 3)).astype(np.float32)
        items = rng.integers(-2, 3, (n_items, 3)).astype(np.float32)
    else:
        users = rng.standard_normal((50, 16), dtype=np.float32)
        items = rng.standard_normal((n_items, 16), dtype=np.float32)
    seen = csr_matrix((rng.random((50, n_items)) < 0.3).astype(np.float32))
    ids, scores = top_k(users, items, 20, exclude=seen, batch_size=16)

    k = min(20, n_items)
    ref_ids, ref_scores = reference_top_k(users, items, seen, k)
    assert np.array_equal(ids[:, :k], ref_ids) and np.array_equal(scores[:, :k], ref_scores)


def test_identical_item_vectors_tie_exactly_wherever_they_sit() -> None:
    # Float32 GEMM may score two copies of a vector differently depending on their column; the
    # published (canonical) scores may not, so copies rank by index.
    rng = np.random.default_rng(4)
    users = rng.standard_normal((64, 32), dtype=np.float32)
    items = rng.standard_normal((3001, 32), dtype=np.float32)
    items[[17, 1500, 2999]] = items[3000]
    ids, scores = top_k(users, items, 3001)
    for u in range(64):
        pos = [int(np.flatnonzero(ids[u] == i)[0]) for i in (17, 1500, 2999, 3000)]
        assert pos == sorted(pos) and pos[-1] - pos[0] == 3
        assert len(set(scores[u, pos].tolist())) == 1


def test_results_do_not_depend_on_batch_size_and_repeat_exactly() -> None:
    rng = np.random.default_rng(2)
    model = AlsModel(rng.standard_normal((40, 5), dtype=np.float32), rng.standard_normal((30, 5), dtype=np.float32))
    matrix = csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))
    base = top_n_unseen(model, matrix, 10)
    for bs in (1, 7, 40, 4096):
        ids, scores = top_n_unseen(model, matrix, 10, batch_size=bs)
        assert np.array_equal(ids, base[0]) and np.array_equal(scores, base[1])


def test_top_n_unseen_rejects_a_matrix_of_another_shape() -> None:
    model = AlsModel(np.ones((8, 2), dtype=np.float32), np.ones((8, 2), dtype=np.float32))
    with pytest.raises(ModelError, match="shape"):
        top_n_unseen(model, block_matrix()[:, :7], 3)


def test_item_neighbours_cosine_excludes_self_and_zero_norm_items() -> None:
    factors = np.array([[1, 0], [3, 0.3], [0, 2], [0, 0], [-1, 0]], dtype=np.float32)
    ids, scores = item_neighbours(factors, m=5)
    assert ids.shape == (5, 5) and ids.dtype == np.int32
    assert ids[0].tolist() == [1, 2, 4, -1, -1]  # 3 has no direction; n_items - 1 - 1 real neighbours
    np.testing.assert_allclose(scores[0, :3], [3 / np.hypot(3, 0.3), 0.0, -1.0], atol=1e-6)
    assert ids[3].tolist() == [-1] * 5 and np.all(scores[3] == -np.inf)
    assert 3 not in ids[[0, 1, 2, 4]]
    assert ids[2, 0] == 1  # cos(2, 1) > cos(2, 0) = 0 > cos(2, 4)


def test_item_neighbours_are_deterministic_under_ties() -> None:
    factors = np.array([[1, 1], [2, 2], [1, 1], [3, 3]], dtype=np.float32)  # all parallel: cosine 1
    ids, _ = item_neighbours(factors, m=2)
    assert ids.tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]


def _events(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": "u",
            "item_id": [r[0] for r in rows],
            "event_type": "view",
            "ts": pd.to_datetime([r[2] for r in rows], utc=True).astype("datetime64[us, UTC]"),
            "weight": [r[1] for r in rows],
            "session_id": None,
        }
    )


def test_decayed_popularity_halves_per_half_life_and_clips_future_events() -> None:
    ref = pd.Timestamp("2024-01-15", tz="UTC")
    events = _events(
        [("a", 2.0, "2024-01-15"), ("a", 4.0, "2024-01-08"), ("b", 8.0, "2024-01-01"), ("c", 1.0, "2024-01-20")]
    )
    maps = build_id_maps(events, ["d"])
    pop = decayed_popularity(events, maps, ref, half_life_days=7.0)
    assert pop.dtype == np.float32
    np.testing.assert_allclose(pop, [2.0 + 4.0 * 0.5, 8.0 * 0.25, 1.0, 0.0], rtol=1e-6)
    with pytest.raises(DataValidationError, match="timezone"):
        decayed_popularity(events, maps, pd.Timestamp("2024-01-15"), 7.0)


def test_popular_by_category_orders_by_score_then_index_and_skips_unavailable() -> None:
    scores = np.array([5, 1, 5, 3, 9, 3], dtype=np.float32)
    categories = np.array(["x", "y", "x", "y", "x", "z"], dtype=object)
    available = np.array([True, True, True, True, False, True])
    out = popular_by_category(scores, categories, n=3, available=available)
    assert set(out) == {"", "x", "y", "z"}
    assert out[""].tolist() == [0, 2, 3]
    assert out["x"].tolist() == [0, 2]
    assert out["y"].tolist() == [3, 1]
    assert out["z"].tolist() == [5]
    assert all(v.dtype == np.int32 for v in out.values())
    assert popular_by_category(scores, categories, n=2, available=None)["x"].tolist() == [4, 0]
    with pytest.raises(DataValidationError):
        popular_by_category(scores, np.array(["x", "", "x", "y", "x", "z"], dtype=object), n=2, available=None)


def test_nan_factors_are_rejected() -> None:
    items = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ModelError, match="NaN"):
        top_k(np.array([[np.nan, 1.0]], dtype=np.float32), items, 2)
    with pytest.raises(ModelError, match="finite"):
        item_neighbours(np.array([[np.nan, 1.0], [1.0, 1.0]], dtype=np.float32), 1)


def test_seen_sets_are_sorted_capped_to_the_most_recent_and_deterministic() -> None:
    import pandas as pd

    from batch.matrix import build_id_maps
    from batch.seen import seen_items

    ts = pd.to_datetime(["2026-01-01", "2026-01-03", "2026-01-02", "2026-01-04", "2026-01-01", "2026-01-05"], utc=True)
    df = pd.DataFrame(
        {"user_id": ["u", "u", "u", "u", "v", "u"], "item_id": ["i3", "i1", "i2", "i0", "i1", "i3"], "ts": ts}
    )
    maps = build_id_maps(df)
    full = seen_items(df, maps, cap=10)
    assert [full[u].tolist() for u in range(2)] == [[0, 1, 2, 3], [1]]
    capped = seen_items(df.sample(frac=1.0, random_state=1), maps, cap=2)  # row order does not matter
    assert capped[0].tolist() == [0, 3]  # i3 (last touched on the 5th) and i0 (the 4th), sorted by index
    assert seen_items(df, maps, cap=0)[0].size == 0

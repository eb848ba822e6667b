from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from implicit.nearest_neighbours import bm25_weight
from scipy.sparse import coo_matrix, csr_matrix

from batch.matrix import BM25_FLOOR, build_id_maps, check_user_items, confidence_matrix
from shared.errors import DataValidationError, ModelError


def _events(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    n = len(rows)
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["view"] * n,
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC").astype("datetime64[us, UTC]"),
            "weight": [r[2] for r in rows],
            "session_id": [None] * n,
        }
    )


EVENTS = _events([("u2", "b", 1.0), ("u1", "a", 1.0), ("u1", "a", 2.0), ("u2", "c", 8.0), ("u1", "c", 0.0)])


def test_id_maps_are_sorted_union_of_interactions_and_catalogue() -> None:
    maps = build_id_maps(EVENTS, item_ids_extra=["z", "a"])
    assert maps.user_ids.tolist() == ["u1", "u2"]
    assert maps.item_ids.tolist() == ["a", "b", "c", "z"]
    assert maps.user_index == {"u1": 0, "u2": 1}
    assert maps.item_index == {"a": 0, "b": 1, "c": 2, "z": 3}
    assert maps.item_codes(pd.Series(["z", "b"])).tolist() == [3, 1]


def test_id_maps_do_not_depend_on_event_order() -> None:
    shuffled = EVENTS.sample(frac=1.0, random_state=3)
    a, b = build_id_maps(EVENTS), build_id_maps(shuffled)
    assert a.user_ids.tolist() == b.user_ids.tolist()
    assert a.item_ids.tolist() == b.item_ids.tolist()


def test_id_maps_reject_null_ids() -> None:
    bad = EVENTS.assign(user_id=[None, "u1", "u1", "u2", "u1"])
    with pytest.raises(DataValidationError, match="nulls"):
        build_id_maps(bad)


def test_log_confidence_sums_weights_then_log1p_in_canonical_float32_csr() -> None:
    maps = build_id_maps(EVENTS, item_ids_extra=["z"])
    m = confidence_matrix(EVENTS, maps, "log")
    assert isinstance(m, csr_matrix)
    assert m.dtype == np.float32 and m.shape == (2, 4)
    assert m.has_canonical_format and m.has_sorted_indices
    expected = np.zeros((2, 4), dtype=np.float32)
    expected[0, 0] = np.log1p(3.0)  # u1-a: 1 + 2
    expected[1, 1] = np.log1p(1.0)
    expected[1, 2] = np.log1p(8.0)
    np.testing.assert_allclose(m.toarray(), expected, rtol=1e-6)
    assert m.nnz == 3  # u1-c has total weight 0: no stored zero
    assert (m.data != 0).all()


def test_bm25_matches_implicit_bm25_weight_on_item_user_orientation() -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{rng.integers(12)}", f"i{rng.integers(9)}", float(rng.integers(1, 5))) for _ in range(60)]
    events = _events(rows)
    maps = build_id_maps(events)
    summed = coo_matrix(
        (events["weight"], (maps.user_codes(events["user_id"]), maps.item_codes(events["item_id"]))),
        shape=(maps.n_users, maps.n_items),
    ).tocsr()
    reference = bm25_weight(summed.T.tocsr(), K1=1.2, B=0.75).T.tocsr()
    assert (summed.getnnz(axis=0) > 0).all(), "fixture must have no empty item for the comparison"
    assert (reference.data > 0).all(), "fixture must not hit the BM25 floor"

    ours = confidence_matrix(events, maps, "bm25", bm25_k1=1.2, bm25_b=0.75)

    np.testing.assert_allclose(ours.toarray(), reference.toarray(), rtol=1e-6)


def test_bm25_ignores_catalogue_items_nobody_touched() -> None:
    without = confidence_matrix(EVENTS, build_id_maps(EVENTS), "bm25")
    with_extra = confidence_matrix(EVENTS, build_id_maps(EVENTS, ["x0", "x1", "x2"]), "bm25")
    np.testing.assert_allclose(with_extra.toarray()[:, :3], without.toarray())


def test_bm25_keeps_interactions_of_a_user_who_saw_everything_as_weak_positives() -> None:
    events = _events([("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "a", 1.0)])
    m = confidence_matrix(events, build_id_maps(events), "bm25")
    assert m.nnz == 3 and (m.data > 0).all()
    assert m[0, 0] == pytest.approx(BM25_FLOOR)  # idf(u1) = log(2) - log1p(2) < 0


@pytest.mark.parametrize("weight", [np.nan, -1.0, np.inf])
def test_invalid_weights_are_rejected(weight: float) -> None:
    bad = EVENTS.assign(weight=[1.0, weight, 1.0, 1.0, 1.0])
    with pytest.raises(DataValidationError, match="weight"):
        confidence_matrix(bad, build_id_maps(bad), "log")


def test_ids_missing_from_the_maps_are_rejected() -> None:
    maps = build_id_maps(EVENTS.iloc[:2])
    with pytest.raises(DataValidationError, match="not in the id maps"):
        confidence_matrix(EVENTS, maps, "log")


def test_check_user_items_rejects_non_csr_empty_nan_and_negative() -> None:
    good = csr_matrix(np.array([[1.0, 0.0]], dtype=np.float32))
    assert check_user_items(good) is good
    with pytest.raises(ModelError, match="csr_matrix"):
        check_user_items(good.tocoo())
    with pytest.raises(ModelError, match="empty"):
        check_user_items(csr_matrix((2, 3), dtype=np.float32))
    with pytest.raises(ModelError, match="NaN"):
        check_user_items(csr_matrix(np.array([[np.nan, 1.0]], dtype=np.float32)))
    with pytest.raises(ModelError, match="negative"):
        check_user_items(csr_matrix(np.array([[-1.0, 1.0]], dtype=np.float32)))

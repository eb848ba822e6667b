"""Every metric of batch.metrics against values worked out by hand (arithmetic in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from batch.metrics import (
    catalog_coverage,
    hit_rate_at_k,
    item_counts,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    popularity_bias_per_list,
    popularity_percentile,
    recall_at_k,
)
from shared.errors import ModelError

D2, D3, D4, D5 = (1 / math.log2(r + 1) for r in (2, 3, 4, 5))  # discounts of ranks 2..5; rank 1 is 1

# ranked [3, 1, 7, 9, 2], relevant {1, 9, 4}: R = 3, hits at ranks 2 and 4 (h = 0 1 0 1 0).
RANKED = [3, 1, 7, 9, 2]
RELEVANT = {1, 9, 4}


def test_worked_example_at_k_1_has_no_hit() -> None:
    # top-1 = [3]: no hit, so every accuracy metric is 0.
    for metric in (recall_at_k, ndcg_at_k, hit_rate_at_k, mrr_at_k):
        assert metric(RANKED, RELEVANT, 1) == 0.0


def test_worked_example_at_k_2() -> None:
    # recall = 1 hit / min(2, 3) = 0.5
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    # DCG = 1/log2(3) = 0.6309; IDCG = 1 + 1/log2(3) = 1.6309 (2 ideal slots); NDCG = 0.3869
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(D2 / (1 + D2))
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.386853, abs=1e-6)
    assert hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0
    # first hit at rank 2
    assert mrr_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)


def test_worked_example_at_k_5() -> None:
    # recall = 2 hits / min(5, 3) = 2/3
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    # DCG = 1/log2(3) + 1/log2(5) = 0.6309 + 0.4307 = 1.0616
    # IDCG = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.6309 + 0.5 = 2.1309 (R = 3 < k: three ideal slots)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx((D2 + D4) / (1 + D2 + D3))
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.498190, abs=1e-6)
    assert mrr_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.5)


def test_k_larger_than_the_list_counts_missing_slots_as_misses() -> None:
    # k = 10 > L = 5: same hits; recall still / min(10, 3) = 3, IDCG still over 3 slots.
    assert recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 3)
    assert ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx((D2 + D4) / (1 + D2 + D3))
    # one relevant item at rank 1 of a one-item list, k = 50: perfect.
    assert recall_at_k([4], {4}, 50) == 1.0 and ndcg_at_k([4], {4}, 50) == 1.0


def test_more_relevant_items_than_k_normalise_by_k() -> None:
    # R = 3 > k = 2 and both slots hit: recall = 2 / min(2, 3) = 1, NDCG = (1 + D2) / (1 + D2) = 1.
    assert recall_at_k([4, 5, 6], {4, 5, 6}, 2) == 1.0
    assert ndcg_at_k([4, 5, 6], {4, 5, 6}, 2) == pytest.approx(1.0)


def test_duplicates_in_the_ranked_list_are_not_double_counted() -> None:
    # [1, 1, 2] vs {1, 2}: h = 1 0 1. recall = 2/2 = 1 (3/2 if the repeat counted).
    assert recall_at_k([1, 1, 2], {1, 2}, 3) == pytest.approx(1.0)
    # DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) = 1.6309; NDCG = 0.9197
    assert ndcg_at_k([1, 1, 2], {1, 2}, 3) == pytest.approx((1 + D3) / (1 + D2))
    # a repeated miss is still a miss: [5, 5, 2] vs {2}: first hit at rank 3.
    assert mrr_at_k([5, 5, 2], {2}, 3) == pytest.approx(1 / 3)
    assert ndcg_at_k([5, 5, 2], {2}, 3) == pytest.approx(D3)  # IDCG = 1
    # duplicated relevant ids count once: R = |{2}| = 1.
    assert recall_at_k([2, 9], [2, 2], 2) == 1.0


def test_padding_never_hits() -> None:
    # [-1, 4, -1] vs {4}: the hit is at rank 2.
    assert mrr_at_k([-1, 4, -1], {4}, 3) == pytest.approx(0.5)
    assert ndcg_at_k([-1, 4, -1], {4}, 3) == pytest.approx(D2)
    assert hit_rate_at_k([-1, -1], {3}, 2) == 0.0


def test_per_list_metrics_refuse_an_empty_relevant_set() -> None:
    for metric in (recall_at_k, ndcg_at_k, hit_rate_at_k, mrr_at_k):
        with pytest.raises(ModelError, match="non-empty"):
            metric([1, 2], set(), 2)


def test_means_exclude_lists_without_relevant_items() -> None:
    ranked = np.array([[1, 2], [3, 4], [5, 6]])
    relevant = [{1}, set(), {6}]
    out = mean_metrics(ranked, relevant, ks=(1, 2), n_items=10, percentile=np.full(10, 0.5))
    # k = 2: recall 1 and 1 (list 2 left out; 2/3 if it counted as 0); MRR (1 + 1/2) / 2 = 0.75.
    assert out[2]["n_lists"] == 2
    assert out[2]["recall"] == pytest.approx(1.0)
    assert out[2]["mrr"] == pytest.approx(0.75)
    # NDCG: list 1 = 1; list 3 hit at rank 2: D2 / 1 (IDCG of one relevant item) -> (1 + 0.6309) / 2
    assert out[2]["ndcg"] == pytest.approx((1 + D2) / 2)
    # k = 1: list 1 hits, list 3 does not: recall 0.5, hit rate 0.5, MRR 0.5.
    assert out[1]["recall"] == out[1]["hit_rate"] == out[1]["mrr"] == pytest.approx(0.5)
    # coverage uses every list: top-2 = {1..6} -> 6/10; top-1 = {1, 3, 5} -> 3/10.
    assert out[2]["coverage"] == pytest.approx(0.6) and out[1]["coverage"] == pytest.approx(0.3)
    assert out[2]["popularity_bias"] == pytest.approx(0.5)


def test_means_agree_with_the_per_list_functions() -> None:
    rng = np.random.default_rng(7)
    ranked = rng.integers(-1, 30, size=(40, 12))
    relevant = [set(rng.choice(30, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(40)]
    out = mean_metrics(ranked, relevant, ks=(5, 12), n_items=30, percentile=np.zeros(30))
    for k in (5, 12):
        pairs = list(zip(ranked, relevant, strict=True))
        assert out[k]["recall"] == pytest.approx(np.mean([recall_at_k(r, s, k) for r, s in pairs]))
        assert out[k]["ndcg"] == pytest.approx(np.mean([ndcg_at_k(r, s, k) for r, s in pairs]))
        assert out[k]["hit_rate"] == pytest.approx(np.mean([hit_rate_at_k(r, s, k) for r, s in pairs]))
        assert out[k]["mrr"] == pytest.approx(np.mean([mrr_at_k(r, s, k) for r, s in pairs]))


def test_catalog_coverage_counts_distinct_valid_items_in_the_top_k() -> None:
    ranked = np.array([[0, 1, -1], [1, 2, 3]])
    # top-2: {0, 1} and {1, 2} -> {0, 1, 2} = 3 of 10; top-3 adds 3 -> 4/10; -1 is ignored.
    assert catalog_coverage(ranked, 2, 10) == pytest.approx(0.3)
    assert catalog_coverage(ranked, 3, 10) == pytest.approx(0.4)


def test_item_counts_are_distinct_training_users() -> None:
    train = csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    assert item_counts(train).tolist() == [1, 0, 2]


def test_popularity_percentile_is_the_mid_rank_with_ties_averaged() -> None:
    # counts [5, 0, 3, 3, 9], sorted 0 3 3 5 9, n - 1 = 4:
    # 5 -> 3 below, no tie -> 3/4; 0 -> 0; 3 -> (1 below + (2 - 1)/2) / 4 = 0.375; 9 -> 4/4.
    assert popularity_percentile(np.array([5, 0, 3, 3, 9])).tolist() == [0.75, 0.0, 0.375, 0.375, 1.0]
    # all tied: (0 + (3 - 1)/2) / 2 = 0.5 each; a one-item catalogue: 0.5.
    assert popularity_percentile(np.array([2, 2, 2])).tolist() == [0.5, 0.5, 0.5]
    assert popularity_percentile(np.array([7])).tolist() == [0.5]


def test_popularity_bias_averages_valid_items_per_list_then_lists() -> None:
    pct = popularity_percentile(np.array([5, 0, 3, 3, 9]))  # [0.75, 0, 0.375, 0.375, 1]
    ranked = np.array([[4, 0], [1, -1], [-1, -1]])
    # k = 2: list 1 (1 + 0.75)/2 = 0.875; list 2 only item 1 -> 0; list 3 nothing valid -> left out.
    per_list = popularity_bias_per_list(ranked, 2, pct)
    assert per_list[:2].tolist() == [0.875, 0.0] and math.isnan(per_list[2])
    out = mean_metrics(ranked, [{4}, {1}, {2}], ks=(1, 2), n_items=5, percentile=pct)
    assert out[2]["popularity_bias"] == pytest.approx(0.4375)  # (0.875 + 0) / 2
    assert out[1]["popularity_bias"] == pytest.approx(0.5)  # (1 + 0) / 2


def test_mean_metrics_rejects_ids_outside_the_catalogue() -> None:
    with pytest.raises(ModelError, match="n_items"):
        mean_metrics(np.array([[0, 5]]), [{0}], ks=(2,), n_items=5, percentile=np.zeros(5))

"""The pipeline's holdout metrics (``metrics.json`` of a run): ALS and popularity on the temporal holdout.

Protocol: hold out each eligible user's most recent distinct items (``batch.holdout``), train on the
rest, rank *every* item the user has not interacted with in train (no sampled negatives, which inflate
metrics and can reorder models), and compare ALS with a popularity baseline ranked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.sparse import csr_matrix

from batch.candidates import top_k
from batch.metrics import accuracy_per_list, catalog_coverage, hit_matrix
from batch.train import AlsModel
from shared.errors import ModelError


def _scores(ranked: np.ndarray, relevant: list[set[int]], k: int, n_items: int) -> dict[str, float]:
    """Mean Recall@k and NDCG@k, and coverage, with the one definition in batch.metrics."""
    hits, n_relevant = hit_matrix(ranked, relevant)
    per_list = accuracy_per_list(hits, n_relevant, k)
    return {
        "recall": float(per_list["recall"].mean()),
        "ndcg": float(per_list["ndcg"].mean()),
        "coverage": catalog_coverage(ranked, k, n_items),
    }


def holdout_metrics(
    model: AlsModel,
    train_matrix: csr_matrix,
    holdout: Mapping[int, np.ndarray],
    k: int,
    max_users: int,
    seed: int,
    popularity_scores: np.ndarray,
) -> dict:
    """Recall@k, NDCG@k and coverage of ALS and of a popularity baseline on held-out items.

    ``train_matrix`` CSR (n_users, n_items): what the model was trained on; each user's train items are
    excluded from their ranking. ``holdout``: user index -> int item indices (see ``holdout_indices``);
    users with an empty array are skipped. When more than ``max_users`` users remain, a sample of
    ``max_users`` drawn with ``seed`` is evaluated. ``popularity_scores`` float (n_items,) ranks the
    baseline (ties by index). Returns ``{"k", "n_users_evaluated", "als": {...}, "popularity": {...}}``
    with ``recall``, ``ndcg`` and ``coverage`` (over the evaluated users' top-k lists) in each.
    """
    n_users, n_items = model.n_users, model.n_items
    if not isinstance(train_matrix, csr_matrix) or train_matrix.shape != (n_users, n_items):
        raise ModelError(
            f"train_matrix must be CSR of shape {(n_users, n_items)}, got {getattr(train_matrix, 'shape', None)}"
        )
    pop = np.asarray(popularity_scores)
    if pop.shape != (n_items,) or not np.isfinite(pop).all():
        raise ModelError(f"popularity_scores must be finite with shape {(n_items,)}, got {pop.shape}")
    if k < 1 or max_users < 1:
        raise ModelError(f"k ({k}) and max_users ({max_users}) must be >= 1")
    users = np.array(sorted(u for u, its in holdout.items() if len(its)), dtype=np.int64)
    if len(users) == 0:
        raise ModelError("no user has held-out items; the data is too small or holdout_per_user too large")
    if users.min() < 0 or users.max() >= n_users:
        raise ModelError(f"holdout user indices must be in [0, {n_users})")
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    relevant = [set(np.asarray(holdout[u]).tolist()) for u in users]

    seen = train_matrix[users]
    als_ids, _ = top_k(model.user_factors[users], model.item_factors, k, exclude=seen)
    ones = np.ones((len(users), 1), dtype=np.float32)
    pop_ids, _ = top_k(ones, pop.astype(np.float32)[:, None], k, exclude=seen)
    return {
        "k": k,
        "n_users_evaluated": len(users),
        "als": _scores(als_ids, relevant, k, n_items),
        "popularity": _scores(pop_ids, relevant, k, n_items),
    }

"""Top-k ranking metrics for full-ranking evaluation, per list and as means over lists.

Notation, shared by every function here. A *ranked list* is a row of item indices ``ranked[0..L-1]``
(rank ``r = 1..L``, best first); ids ``< 0`` are padding (a model that could not fill the slot) and
never hit. ``relevant`` is the set ``Rel`` of held-out item indices of the same user, ``R = |Rel|``.
The *hit* at rank ``r`` is ``h_r = 1`` when ``ranked[r-1]`` is in ``Rel`` and is the first occurrence
of that id in the list, else 0: a model that repeats an item is not credited twice. A list shorter
than ``k`` counts as padded with misses (``h_r = 0`` for ``r > L``).

- ``HitRate@k = 1`` if ``sum_{r<=k} h_r > 0`` else 0.
- ``Recall@k = sum_{r<=k} h_r / min(k, R)``: normalised by what fits in k slots, so a perfect list
  scores 1 even when ``R > k``.
- ``NDCG@k = DCG@k / IDCG@k`` with binary gains, ``DCG@k = sum_{r<=k} h_r / log2(r + 1)`` and
  ``IDCG@k = sum_{r=1..min(k, R)} 1 / log2(r + 1)`` (all relevant items ranked first).
- ``MRR@k = 1 / r*`` with ``r* = min{r <= k : h_r = 1}``, and 0 when no hit is in the top k.
- ``Coverage@k = |{ranked[u][r-1] >= 0 : r <= k, over all lists u}| / n_items``.
- ``PopBias@k``: per list, the mean popularity percentile (``popularity_percentile``) of its valid
  top-k items; then the mean over lists that have at least one valid item.

Lists with ``R = 0`` have no defined accuracy: the per-list functions refuse them and the means
leave them out (``n_lists`` in ``mean_metrics`` says how many lists were averaged). Coverage and
PopBias do not depend on relevance and use every list passed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np
from scipy.sparse import csr_matrix

from shared.errors import ModelError

ACCURACY_METRICS = ("recall", "ndcg", "hit_rate", "mrr")
METRICS = (*ACCURACY_METRICS, "coverage", "popularity_bias")

Ranked = Sequence[int] | np.ndarray


def _as_lists(ranked: Sequence[Ranked] | np.ndarray) -> np.ndarray:
    """int64 (n, L) from a 2-D array or equal-length rows; ModelError otherwise."""
    arr = np.asarray(ranked)
    if arr.ndim != 2:
        raise ModelError(f"ranked lists must form a 2-D array (n_lists, L), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ModelError(f"ranked lists must hold integer item indices, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def hit_matrix(ranked: np.ndarray, relevant: Sequence[Collection[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The hits ``h`` of the module docstring: bool (n, L), and ``R`` per list: int64 (n,).

    ``ranked`` int (n, L); ``relevant[u]`` the relevant item indices (>= 0) of list ``u``.
    """
    ranked = _as_lists(ranked)
    n, width = ranked.shape
    if len(relevant) != n:
        raise ModelError(f"got {n} ranked lists but {len(relevant)} relevant sets")
    rel = [np.unique(np.fromiter((int(i) for i in r), dtype=np.int64)) for r in relevant]
    n_relevant = np.array([len(r) for r in rel], dtype=np.int64)
    if n == 0 or width == 0:
        return np.zeros((n, width), dtype=bool), n_relevant
    flat_rel = np.concatenate(rel) if rel else np.zeros(0, dtype=np.int64)
    if flat_rel.size and flat_rel.min() < 0:
        raise ModelError("relevant item indices must be >= 0")
    span = int(max(ranked.max(), flat_rel.max() if flat_rel.size else 0)) + 1
    # One int64 key per (list, item) pair turns "is ranked[u, r] in relevant[u]" into one isin.
    rel_keys = np.repeat(np.arange(n, dtype=np.int64), n_relevant) * span + flat_rel
    keys = np.arange(n, dtype=np.int64)[:, None] * span + ranked
    hits = np.isin(keys, rel_keys) & (ranked >= 0)
    # A stable sort puts each id's first occurrence first among its equals; later ones are repeats.
    order = np.argsort(ranked, axis=1, kind="stable")
    srt = np.take_along_axis(ranked, order, axis=1)
    repeat = np.zeros_like(hits)
    np.put_along_axis(repeat, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
    return hits & ~repeat, n_relevant


def _discounts(n: int) -> np.ndarray:
    """``1 / log2(r + 1)`` for r = 1..n: float64 (n,)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def accuracy_per_list(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Recall, NDCG, HitRate and MRR at ``k`` of each list: float64 (n,) each, NaN where ``R = 0``.

    ``hits`` bool (n, L) and ``n_relevant`` int (n,) as returned by ``hit_matrix``.
    """
    if k < 1:
        raise ModelError(f"k must be >= 1, got {k}")
    top = hits[:, :k]
    n_hits = top.sum(axis=1).astype(np.float64)
    has_rel = n_relevant > 0
    ideal = np.minimum(k, n_relevant)
    idcg = np.concatenate(([np.nan], np.cumsum(_discounts(k))))[ideal]  # ideal = 0 -> NaN
    first = np.argmax(top, axis=1) if top.shape[1] else np.zeros(len(top), dtype=np.int64)
    nan = np.full(len(top), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "recall": np.where(has_rel, n_hits / ideal, nan),
            "ndcg": np.where(has_rel, (top * _discounts(top.shape[1])).sum(axis=1) / idcg, nan),
            "hit_rate": np.where(has_rel, (n_hits > 0).astype(np.float64), nan),
            "mrr": np.where(has_rel, np.where(n_hits > 0, 1.0 / (first + 1), 0.0), nan),
        }


def _one(ranked: Ranked, relevant: Collection[int], k: int, metric: str) -> float:
    hits, n_relevant = hit_matrix(np.asarray(ranked, dtype=np.int64).reshape(1, -1), [relevant])
    if n_relevant[0] == 0:
        raise ModelError(f"{metric}@k needs a non-empty relevant set; evaluate only users with held-out items")
    return float(accuracy_per_list(hits, n_relevant, k)[metric][0])


def recall_at_k(ranked: Ranked, relevant: Collection[int], k: int) -> float:
    """Recall@k of one list (module docstring): hits in the top k / ``min(k, R)``, in [0, 1]."""
    return _one(ranked, relevant, k, "recall")


def ndcg_at_k(ranked: Ranked, relevant: Collection[int], k: int) -> float:
    """NDCG@k of one list (module docstring): binary gains, log2 discount, IDCG over ``min(k, R)``."""
    return _one(ranked, relevant, k, "ndcg")


def hit_rate_at_k(ranked: Ranked, relevant: Collection[int], k: int) -> float:
    """HitRate@k of one list (module docstring): 1.0 if any relevant item is in the top k, else 0.0."""
    return _one(ranked, relevant, k, "hit_rate")


def mrr_at_k(ranked: Ranked, relevant: Collection[int], k: int) -> float:
    """MRR@k of one list (module docstring): 1 / rank of the first relevant item in the top k, else 0."""
    return _one(ranked, relevant, k, "mrr")


def catalog_coverage(ranked: Sequence[Ranked] | np.ndarray, k: int, n_items: int) -> float:
    """Coverage@k (module docstring): distinct valid ids in the top k of ``ranked`` int (n, L) / ``n_items``."""
    if n_items < 1 or k < 1:
        raise ModelError(f"n_items ({n_items}) and k ({k}) must be >= 1")
    top = _as_lists(ranked)[:, :k]
    return len(np.unique(top[top >= 0])) / n_items


def item_counts(train_matrix: csr_matrix) -> np.ndarray:
    """Training interaction count per item: distinct users with a stored entry, int64 (n_items,)."""
    return np.bincount(train_matrix.indices, minlength=train_matrix.shape[1]).astype(np.int64)


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Mid-rank popularity percentile of every item, float64 (n_items,) in [0, 1].

    ``p_i = (#{j : c_j < c_i} + (#{j : c_j = c_i} - 1) / 2) / (n_items - 1)`` over *all* catalogue
    items (never-interacted ones have ``c = 0``). So the unique most popular item has 1, the unique
    least popular 0, and tied items share the mean of the positions they would occupy (all items tied:
    0.5 each). A one-item catalogue gets 0.5.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all():
        raise ModelError(f"counts must be a finite non-empty 1-D array, got shape {c.shape}")
    if c.size == 1:
        return np.array([0.5])
    srt = np.sort(c)
    below = np.searchsorted(srt, c, side="left")
    equal = np.searchsorted(srt, c, side="right") - below
    return (below + (equal - 1) / 2.0) / (c.size - 1)


def popularity_bias_per_list(ranked: np.ndarray, k: int, percentile: np.ndarray) -> np.ndarray:
    """Mean percentile of each list's valid top-k ids: float64 (n,), NaN for a list with none.

    ``ranked`` int (n, L); ``percentile`` float (n_items,) from ``popularity_percentile``.
    """
    top = _as_lists(ranked)[:, :k]
    valid = top >= 0
    values = np.where(valid, np.asarray(percentile, dtype=np.float64)[np.where(valid, top, 0)], 0.0)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, values.sum(axis=1) / n_valid, np.nan)


def mean_metrics(
    ranked: np.ndarray,
    relevant: Sequence[Collection[int]],
    ks: Iterable[int],
    n_items: int,
    percentile: np.ndarray,
) -> dict[int, dict[str, float]]:
    """Every metric of the module docstring for each k in ``ks``: ``{k: {metric: mean, "n_lists": n}}``.

    ``ranked`` int (n, L) with ``L >= max(ks)`` for a fair comparison (shorter lists count as padded);
    ``relevant`` n sets of item indices; ``percentile`` float (n_items,). Accuracy means are over the
    ``n_lists`` lists with ``R > 0`` (NaN when there are none); coverage and popularity bias are over
    all n lists.
    """
    ranked = _as_lists(ranked)
    if percentile.shape != (n_items,):
        raise ModelError(f"percentile must have shape ({n_items},), got {percentile.shape}")
    if ranked.size and ranked.max() >= n_items:
        raise ModelError(f"ranked lists hold item index {ranked.max()} >= n_items {n_items}")
    hits, n_relevant = hit_matrix(ranked, relevant)
    scored = n_relevant > 0
    out: dict[int, dict[str, float]] = {}
    for k in sorted(set(ks)):
        per_list = accuracy_per_list(hits[scored], n_relevant[scored], k)
        row = {m: float(per_list[m].mean()) if scored.any() else float("nan") for m in ACCURACY_METRICS}
        row["coverage"] = catalog_coverage(ranked, k, n_items)
        bias = popularity_bias_per_list(ranked, k, percentile)
        row["popularity_bias"] = float(np.nanmean(bias)) if np.isfinite(bias).any() else float("nan")
        row["n_lists"] = int(scored.sum())
        out[k] = row
    return out

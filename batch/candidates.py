"""Precomputed lists the online service reads: per-user candidates, item neighbours, popularity and popular lists.

Every ranked list here follows one rule: descending score, ties broken by ascending item index. Rows
with fewer valid items than requested are padded with id ``-1`` and score ``-inf`` (a padded score
never outranks a real one; readers skip ids < 0).

Published scores are *canonical*: ``float32(sum_j float64(q_j) * float64(v_j))``, summed in factor
order. Float32 GEMM is used only to find candidates; its last-bit results depend on the batch shape,
the BLAS thread count and even an item's column position (two identical item vectors need not get
identical GEMM scores), so ranking on it would make the published bytes depend on the machine and
break ties arbitrarily. See ``_select`` for why the GEMM shortlist cannot miss a canonical top-k item.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from batch.ease import EaseModel, EaseParams, ease_top_n, train_ease
from batch.fusion import fuse_candidates
from batch.matrix import IdMaps
from batch.train import AlsModel
from feature_store.keys import ALL_CATEGORIES
from shared.errors import DataValidationError, ModelError

# Columns per group in the group-max prefilter of ``_select``. At 32 about 1.1 * k entries per row
# survive on trained factors; wider groups let more through, narrower ones cost more partition work.
_GROUP_WIDTH = 32
# Blocks scored concurrently by ``top_k``; memory is about this many times ``batch_size * n_items * 9`` bytes.
_MAX_WORKERS = 4
# Queries per block: 128 x 20k items x 9 B = 23 MB per block in flight. Larger blocks do not score
# faster here (the GEMM is a small part of a block) but raised run_batch's peak RSS (1,024: +~200 MiB).
BATCH_SIZE = 128


def _descending_key(values: np.ndarray) -> np.ndarray:
    """uint32 keys whose ascending order is the descending order of float32 ``values`` (no NaN)."""
    bits = values.view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(0x8000_0000))
    return ~ascending


def _kth_lower_bound(scores: np.ndarray, k: int) -> np.ndarray:
    """A lower bound of each row's k-th largest score, float32 (m,), from ``nb >= k`` column-group maxima.

    The k-th largest group maximum is <= the k-th largest score (those k maxima are k distinct
    entries) and costs one pass plus a partition of ``nb`` values, instead of ``argpartition`` over
    every score (~10 ns each here).
    """
    m, n = scores.shape
    nb = min(n, max(k, n // _GROUP_WIDTH))
    width = n // nb
    if width * nb == n:
        group_max = scores.reshape(m, width, nb).max(axis=1)
    else:
        group_max = scores[:, :nb].copy()
        for j in range(1, width):
            np.maximum(group_max, scores[:, j * nb : (j + 1) * nb], out=group_max)
        tail = scores[:, width * nb :]
        np.maximum(group_max[:, : tail.shape[1]], tail, out=group_max[:, : tail.shape[1]])
    return np.partition(group_max, nb - k, axis=1)[:, nb - k]


def _canonical(q_t: np.ndarray, items_t: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 scores of pairs (rows[p], cols[p]): exact float64 products summed in factor order.

    ``q_t`` float64 (f, m), ``items_t`` float64 (f, n). Depends only on the two vectors.
    """
    acc = np.zeros(len(rows), dtype=np.float64)
    for j in range(q_t.shape[0]):
        acc += q_t[j, rows] * items_t[j, cols]
    return acc.astype(np.float32)


def _select(
    approx: np.ndarray, k: int, slack: np.ndarray, q_t: np.ndarray, items_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by canonical score of each row of ``approx`` float32 (m, n) GEMM scores (``-inf`` = excluded).

    ``slack`` float64 (m,) bounds twice the sum of the GEMM and canonical rounding errors of a row
    (``top_k`` derives it from vector norms). Any item of the canonical top-k has a GEMM score >= the
    k-th largest GEMM score - slack: otherwise k items would beat it canonically. So the shortlist
    ``approx >= lower bound - slack`` (about 1.1 k per row) is rescored canonically and sorted by
    (row, -score) with a stable sort of one uint64 key; entries arrive in column order, so equal
    scores end up by ascending index. Returns ids int32 (m, k), scores float32 (m, k).
    """
    m, n = approx.shape
    threshold = (_kth_lower_bound(approx, k) - slack).astype(np.float32)
    flat = np.flatnonzero((approx >= threshold[:, None]).ravel())  # row-major: rows ascending
    rows, cols = np.divmod(flat, n)
    vals = _canonical(q_t, items_t, rows, cols)
    vals[approx.ravel()[flat] == -np.inf] = -np.inf
    key = (rows.astype(np.uint64) << np.uint64(32)) | _descending_key(vals).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    take = order[np.searchsorted(rows, np.arange(m))[:, None] + np.arange(k)]
    ids, top = cols[take].astype(np.int32), vals[take]
    ids[top == -np.inf] = -1
    return ids, top


def _by_index(valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of rows whose every score is exactly 0: the first k ``valid`` (m, n) columns, score 0."""
    first = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(valid, first, axis=1)
    return np.where(hit, first, -1).astype(np.int32), np.where(hit, 0.0, -np.inf).astype(np.float32)


def top_k(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    *,
    exclude: csr_matrix | None = None,
    banned: np.ndarray | None = None,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by (canonical) dot product for each query row, scoring every item (no sampling).

    ``queries`` float32 (q, f), ``items`` float32 (n_items, f). ``exclude``: CSR (q, n_items) whose
    stored entries (any value) are removed from row i's ranking, e.g. the items a user has seen.
    ``banned``: bool (n_items,), items removed for every row. Returns ids int32 (q, k) and scores
    float32 (q, k), ``-1`` / ``-inf`` padded. The result does not depend on ``batch_size``, which only
    bounds memory: about ``batch_size * n_items * 9`` bytes per block in flight (scores, mask, temporaries).
    """
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ModelError(f"queries {queries.shape} and items {items.shape} must be 2-D with equal widths")
    if k < 1 or batch_size < 1:
        raise ModelError(f"k ({k}) and batch_size ({batch_size}) must be >= 1")
    if not (np.isfinite(queries).all() and np.isfinite(items).all()):
        raise ModelError("queries or items contain NaN/inf; retrain, or check the model's validation")
    q, n = queries.shape[0], items.shape[0]
    if exclude is not None and (not isinstance(exclude, csr_matrix) or exclude.shape != (q, n)):
        raise ModelError(f"exclude must be a CSR matrix of shape {(q, n)}, got {getattr(exclude, 'shape', None)}")
    if banned is not None and banned.shape != (n,):
        raise ModelError(f"banned must be a bool array of shape {(n,)}, got {banned.shape}")
    ids = np.full((q, k), -1, dtype=np.int32)
    scores = np.full((q, k), -np.inf, dtype=np.float32)
    kk = min(k, n)
    if kk == 0 or q == 0:
        return ids, scores
    queries = queries.astype(np.float32, copy=False)
    items = items.astype(np.float32, copy=False)
    items_t = np.ascontiguousarray(items.T, dtype=np.float64)
    # |GEMM - exact| <= f * 2^-24 * |q| |v| (any summation order), canonical rounding <= 2^-24 |q| |v|;
    # doubling their sum and rounding up to a power of two gives (f + 1) * 2^-22.
    max_item_norm = float(np.linalg.norm(items_t, axis=0).max())
    bound = max_item_norm * (items.shape[1] + 1) * 2.0**-22

    def run(start: int) -> None:
        stop = min(start + batch_size, q)
        rows = np.arange(start, stop)
        # per block: a float64 copy of every query at once would be q * f * 8 bytes (51 MB at 100k users)
        slack = np.linalg.norm(queries[start:stop].astype(np.float64), axis=1) * bound
        block = queries[start:stop] @ items.T
        if exclude is not None:
            sub = exclude[start:stop]
            block[np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices] = -np.inf
        if banned is not None:
            block[:, banned] = -np.inf
        live = slack > 0
        if not live.all():  # zero queries: every item would tie at the bound in _select
            ids[rows[~live], :kk], scores[rows[~live], :kk] = _by_index(block[~live] > -np.inf, kk)
            block, rows, slack = block[live], rows[live], slack[live]
        q_t = np.ascontiguousarray(queries[rows].T, dtype=np.float64)
        ids[rows, :kk], scores[rows, :kk] = _select(block, kk, slack, q_t, items_t)

    # Blocks are independent and mostly single-threaded numpy, so one per core with single-threaded
    # BLAS beats one block at a time with threaded BLAS (~30% on 2 cores). Canonical scores make the
    # result independent of both choices.
    starts = range(0, q, batch_size)
    workers = max(1, min(len(starts), os.cpu_count() or 1, _MAX_WORKERS))
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(run, starts):
            pass
    return ids, scores


def top_n_unseen(
    model: AlsModel, matrix: csr_matrix, n: int, batch_size: int = BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n items per user by ``user . item``, excluding the user's items in ``matrix`` (n_users, n_items).

    Returns ids int32 (n_users, n) and scores float32 (n_users, n), ``-1`` / ``-inf`` padded when a
    user has fewer than n unseen items.
    """
    if not isinstance(matrix, csr_matrix) or matrix.shape != (model.n_users, model.n_items):
        raise ModelError(
            f"matrix must be CSR of shape {(model.n_users, model.n_items)} (the model's users x items), "
            f"got {type(matrix).__name__} {getattr(matrix, 'shape', None)}"
        )
    return top_k(model.user_factors, model.item_factors, n, exclude=matrix, batch_size=batch_size)


def item_neighbours(item_factors: np.ndarray, m: int, batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Top-m items by cosine similarity of factors, the item itself excluded.

    ``item_factors`` float32 (n_items, f) -> ids int32 (n_items, m), scores float32 (n_items, m),
    ``-1`` / ``-inf`` padded when fewer than m other items exist. Zero-norm items (never interacted
    with) have no direction, so they get no neighbours and are nobody's neighbour.
    """
    if item_factors.ndim != 2 or not np.isfinite(item_factors).all():
        raise ModelError(f"item_factors must be a finite 2-D array, got shape {item_factors.shape}")
    norms = np.linalg.norm(item_factors.astype(np.float64), axis=1)
    zero = norms == 0
    unit = (item_factors / np.where(zero, 1.0, norms)[:, None]).astype(np.float32)
    n_items = item_factors.shape[0]
    ids = np.full((n_items, m), -1, dtype=np.int32)
    scores = np.full((n_items, m), -np.inf, dtype=np.float32)
    live = np.flatnonzero(~zero)
    self_pairs = csr_matrix(
        (np.ones(len(live), dtype=np.float32), (np.arange(len(live)), live)), shape=(len(live), n_items)
    )
    ids[live], scores[live] = top_k(unit[live], unit, m, exclude=self_pairs, banned=zero, batch_size=batch_size)
    return ids, scores


def decayed_popularity(
    interactions: pd.DataFrame, maps: IdMaps, reference_ts: pd.Timestamp, half_life_days: float
) -> np.ndarray:
    """Recency-decayed popularity: float32 (n_items,), ``sum(weight * 0.5 ** (age_days / half_life_days))``.

    ``age = reference_ts - ts``; events after ``reference_ts`` (clock skew, late partitions) count as
    age 0 rather than growing above full weight. ``reference_ts`` must be timezone-aware (the run's
    logical date), never "now", so reruns give the same scores.
    """
    if reference_ts.tzinfo is None:
        raise DataValidationError(f"reference_ts {reference_ts} must be timezone-aware (UTC)")
    if not half_life_days > 0:
        raise DataValidationError(f"half_life_days must be > 0, got {half_life_days}")
    if interactions.empty:
        return np.zeros(maps.n_items, dtype=np.float32)
    weight = interactions["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
    return popularity_from_codes(
        maps.item_codes(interactions["item_id"]),
        weight,
        utc_times(interactions["ts"]),
        maps.n_items,
        reference_ts,
        half_life_days,
    )


def utc_times(ts: pd.Series) -> np.ndarray:
    """datetime64 (n,) in UTC, without a zone, of a (tz-aware) datetime column."""
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.to_numpy()


def popularity_from_codes(
    items: np.ndarray,
    weight: np.ndarray,
    ts: np.ndarray,
    n_items: int,
    reference_ts: pd.Timestamp,
    half_life_days: float,
) -> np.ndarray:
    """``decayed_popularity`` of events given as item indices, float64 weights and datetime64 times
    (each (n_events,); ``ts`` in UTC): float32 (n_items,)."""
    if not np.isfinite(weight).all():
        raise DataValidationError("interactions.weight contains NaN/inf; fix or quarantine those events")
    reference = np.datetime64(reference_ts.tz_convert("UTC").tz_localize(None))
    age_days = (reference - ts) / np.timedelta64(1, "s") / 86_400.0
    decay = np.exp2(-np.clip(age_days, 0.0, None) / half_life_days)
    return np.bincount(items, weights=weight * decay, minlength=n_items).astype(np.float32)


def popular_by_category(
    scores: np.ndarray, categories: np.ndarray, n: int, available: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Top-n item indices (int32) overall (key ``""``) and per category, unavailable items excluded.

    ``scores`` float32 (n_items,), ``categories`` str (n_items,), ``available`` bool (n_items,) or
    None (all available). Lists are in descending score, ties by ascending index, and may be shorter
    than n (or empty) when a category has fewer available items; every catalogue category has a key.
    """
    n_items = scores.shape[0]
    if scores.ndim != 1 or categories.shape != (n_items,) or (available is not None and available.shape != (n_items,)):
        raise ModelError("scores, categories and available must all have shape (n_items,)")
    if not np.isfinite(scores).all():
        raise ModelError("popularity scores contain NaN/inf")
    if not all(isinstance(c, str) and c for c in categories):
        raise DataValidationError("item categories must be non-empty strings ('' is the global list's key)")
    order = np.lexsort((np.arange(n_items), -scores.astype(np.float64)))
    if available is not None:
        order = order[available.astype(bool)[order]]
    names, codes = np.unique(categories.astype(str), return_inverse=True)
    by_cat = order[np.argsort(codes[order], kind="stable")]  # grouped by category, score order kept
    bounds = np.searchsorted(codes[by_cat], np.arange(len(names) + 1))
    out = {"": order[:n].astype(np.int32)}
    for c, name in enumerate(names):
        out[str(name)] = by_cat[bounds[c] : bounds[c + 1]][:n].astype(np.int32)
    return out


def popular_lists(popularity: np.ndarray, items: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    """The popular lists a version publishes: ``keys.ALL_CATEGORIES`` -> the top n available items
    overall, each catalogue category -> its top n (int32 item indices, best first; ``popular_by_category``).

    ``popularity`` float32 (n_items,); ``items`` the run's catalogue, row j = item j (``category``,
    ``available``).
    """
    lists = popular_by_category(
        popularity.astype(np.float32),
        items["category"].astype(str).to_numpy(),
        n,
        items["available"].astype(bool).to_numpy(),
    )
    return {(ALL_CATEGORIES if category == "" else category): idx for category, idx in lists.items()}


CANDIDATE_MODELS = ("als", "ease", "als+ease")


def candidate_lists(
    kind: str,
    model: AlsModel,
    matrix: csr_matrix,
    n: int,
    ease: EaseParams,
    fusion_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top-n unseen items, best first, from the candidate model ``kind`` (``CANDIDATE_MODELS``).

    ``als``: by ``user . item`` (``top_n_unseen``); ``ease``: EASE fitted on ``matrix`` (binarised,
    ``batch.ease``); ``als+ease``: both lists of n fused by weighted reciprocal rank, EASE's weighted
    ``fusion_weight`` (``batch.fusion``). ``matrix``: the users' histories (n_users, n_items), whose items
    are excluded. Returns ids int32 (n_users, n) and scores float32 (n_users, n) on the model's own scale
    (dot products, EASE sums or RRF credit), ``-1`` / ``-inf`` padded. EASE refuses a catalogue over
    ``ease.max_items`` before allocating (ModelError naming the memory it would need).
    """
    if kind not in CANDIDATE_MODELS:
        raise ModelError(f"unknown candidate model {kind!r}; choose one of {', '.join(CANDIDATE_MODELS)}")
    ease_model = train_ease(matrix, ease) if kind != "als" else None
    return fitted_candidate_lists(kind, model, matrix, n, ease_model, fusion_weight)


def fitted_candidate_lists(
    kind: str,
    model: AlsModel,
    matrix: csr_matrix,
    n: int,
    ease_model: EaseModel | None,
    fusion_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``candidate_lists`` with EASE already fitted (``ease_model``, needed unless ``kind`` is ``als``), for
    any block of users: ``model.user_factors`` and ``matrix`` hold the same users' rows. Each user's list
    depends only on their own row, so a shard of users gets exactly its rows of the whole result."""
    if kind not in CANDIDATE_MODELS:
        raise ModelError(f"unknown candidate model {kind!r}; choose one of {', '.join(CANDIDATE_MODELS)}")
    if kind == "als":
        return top_n_unseen(model, matrix, n)
    if ease_model is None:
        raise ModelError(f"candidate model {kind!r} needs the fitted EASE model")
    ease_ids, ease_scores = ease_top_n(ease_model, matrix, n)
    if kind == "ease":
        return ease_ids, ease_scores
    als_ids, _ = top_n_unseen(model, matrix, n)
    return fuse_candidates(als_ids, ease_ids, n, fusion_weight)

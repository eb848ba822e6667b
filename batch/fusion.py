"""Fusing two ranked candidate lists per user (e.g. ALS and EASE) into one, by weighted reciprocal rank.

Reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009) needs no score calibration between models,
which ALS dot products and EASE sums do not share: an item at 1-based rank ``r_a`` in list a and
``r_b`` in list b scores ``1 / (k0 + r_a) + weight_b / (k0 + r_b)``, a missing term counting 0.
"""

from __future__ import annotations

import numpy as np

from shared.errors import ModelError

# Cormack et al.'s constant: how fast a rank's credit decays (larger = flatter, more like a vote count).
RRF_K0 = 60.0


def _check_lists(name: str, ids: np.ndarray, m: int | None) -> None:
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer) or (m is not None and ids.shape[0] != m):
        raise ModelError(f"{name} must be an integer array (n_users, L) with one row per user, got {ids.shape}")
    valid = ids >= 0
    # Padding may only trail: a -1 followed by a real id would shift the ranks of everything after it.
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ModelError(f"{name} has an item id after -1 padding; padding must come last")
    ordered = np.sort(np.where(valid, ids, -1 - np.arange(ids.shape[1])), axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ModelError(f"{name} repeats an item within a row; each list must hold distinct items")


def fuse_candidates(
    a_ids: np.ndarray, b_ids: np.ndarray, n: int, weight_b: float = 1.0, k0: float = RRF_K0
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse per-user lists ``a_ids`` int (m, La) and ``b_ids`` int (m, Lb) into the top n by weighted RRF.

    Each row holds distinct item ids best first, ``-1`` padding last. Every item of either list is a
    candidate; its score is ``1 / (k0 + r_a) + weight_b / (k0 + r_b)`` (terms of lists it is not in are
    0), computed in float64 and rounded to float32. Returns ids int32 (m, n) and scores float32 (m, n)
    in descending (float32) score, ties by ascending item id, ``-1`` / ``-inf`` padded when the union
    is shorter than n. ``weight_b = 0`` gives list a's order, then b-only items by id; ``weight_b = 1``
    treats both lists alike. Deterministic: a pure function of the inputs.
    """
    if n < 1 or not (weight_b >= 0 and np.isfinite(weight_b)) or not (k0 > 0 and np.isfinite(k0)):
        raise ModelError(f"need n >= 1, a finite weight_b >= 0 and k0 > 0; got n={n}, weight_b={weight_b}, k0={k0}")
    _check_lists("a_ids", a_ids, None)
    _check_lists("b_ids", b_ids, a_ids.shape[0])
    m = a_ids.shape[0]
    parts = []
    for lists, weight in ((a_ids, 1.0), (b_ids, float(weight_b))):
        rows, ranks = np.nonzero(lists >= 0)
        parts.append((rows, lists[rows, ranks].astype(np.int64), weight / (k0 + 1.0 + ranks)))
    rows = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    credit = np.concatenate([p[2] for p in parts])

    ids = np.full((m, n), -1, dtype=np.int32)
    scores = np.full((m, n), -np.inf, dtype=np.float32)
    if len(rows) == 0:
        return ids, scores
    order = np.lexsort((items, rows))  # group (row, item) pairs; a-part before b-part within a pair
    rows, items, credit = rows[order], items[order], credit[order]
    starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])])
    rows, items = rows[starts], items[starts]
    fused = np.add.reduceat(credit, starts).astype(np.float32)
    order = np.lexsort((items, -fused, rows))
    rows, items, fused = rows[order], items[order], fused[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = pos < n
    ids[rows[keep], pos[keep]] = items[keep]
    scores[rows[keep], pos[keep]] = fused[keep]
    return ids, scores

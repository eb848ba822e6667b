"""Interactions -> a users x items confidence matrix, with the id maps that give rows and columns meaning.

Row ``u`` of every per-user array (factors, candidates, ``users.parquet``) is ``IdMaps.user_ids[u]``;
column / row ``j`` of every per-item array is ``IdMaps.item_ids[j]``. Index order is the sorted order of
the ids, so the same data always yields the same indices, whatever order the events arrived in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix, issparse

from shared.errors import DataValidationError, ModelError

# Floor for BM25 weights that come out <= 0 (see ``_bm25``): small enough to be the weakest signal in
# the matrix, large enough to survive float32 and stay a stored (observed) entry.
BM25_FLOOR = 1e-6


@dataclass(frozen=True, eq=False)
class IdMaps:
    """Sorted unique ids; position = index. ``user_ids``: object (n_users,), ``item_ids``: object (n_items,)."""

    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @functools.cached_property
    def user_index(self) -> dict[str, int]:
        return {uid: i for i, uid in enumerate(self.user_ids)}

    @functools.cached_property
    def item_index(self) -> dict[str, int]:
        return {iid: i for i, iid in enumerate(self.item_ids)}

    def user_codes(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        """Vectorised ``user_index`` lookup: int32 (len(ids),). Raises if an id is unknown."""
        return _codes(ids, self.user_ids, "user_id")

    def item_codes(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        """Vectorised ``item_index`` lookup: int32 (len(ids),). Raises if an id is unknown."""
        return _codes(ids, self.item_ids, "item_id")


def _codes(ids: pd.Series | np.ndarray, categories: np.ndarray, column: str) -> np.ndarray:
    codes = pd.Index(categories).get_indexer(pd.Index(ids))
    if len(codes) and codes.min() < 0:
        unknown = pd.Series(np.asarray(ids, dtype=object)[codes < 0]).unique()[:5].tolist()
        raise DataValidationError(
            f"{column} values {unknown} are not in the id maps; build the maps from the same interactions "
            "(and catalogue) that the matrix is built from"
        )
    return codes.astype(np.int32, copy=False)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{what} is missing columns {missing}; it has {list(frame.columns)}")


def _unique_strings(series: pd.Series, column: str) -> np.ndarray:
    """The distinct values of ``series`` as an object array (unsorted); DataValidationError on nulls or non-strings.

    Only the distinct values become Python strings: converting the whole column first (``astype(object)``)
    made one string object per event, and the few that survive (the ids) then pinned pymalloc's arenas,
    so tens of MB of freed strings stayed resident for the rest of the run.
    """
    if series.isna().any():
        raise DataValidationError(f"{column} contains nulls; drop or repair those rows before training")
    unique = np.asarray(series.unique(), dtype=object)  # iterating an Arrow array is slow per element
    if not all(isinstance(v, str) for v in unique):
        raise DataValidationError(f"{column} must contain only strings")
    return unique


def build_id_maps(interactions: pd.DataFrame, item_ids_extra: Iterable[str] = ()) -> IdMaps:
    """Index users and items of ``interactions`` (plus catalogue items in ``item_ids_extra``).

    Items are the union of interacted and catalogue items, so items nobody touched yet still get a
    column (and a zero factor), and the item index matches the catalogue passed in. Both id lists are
    sorted, which makes the indices independent of event order.
    """
    _require_columns(interactions, ("user_id", "item_id"), "interactions")
    users = _unique_strings(interactions["user_id"], "user_id")
    items = _unique_strings(interactions["item_id"], "item_id")
    extra = pd.Series(list(item_ids_extra), dtype=object)
    if len(extra):
        items = np.concatenate([items, _unique_strings(extra, "item_id")])
    return IdMaps(user_ids=np.array(sorted(users), dtype=object), item_ids=np.array(sorted(set(items)), dtype=object))


def confidence_matrix(
    interactions: pd.DataFrame,
    maps: IdMaps,
    scheme: Literal["log", "bm25"] = "log",
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
) -> csr_matrix:
    """Aggregate ``weight`` per (user, item) by sum and transform it: float32 CSR (n_users, n_items).

    ``"log"``: ``log1p(sum of weights)``. Repeated events add evidence with diminishing returns, so a
    user who viewed an item 50 times does not dominate the loss the way a raw count would.

    ``"bm25"``: BM25 on the summed weights, treating each item as a document and each user as a term,
    which is the orientation implicit's own examples use (``bm25_weight(item_users)``): the
    per-user idf ``log(N) - log1p(n_u)`` discounts users who touch many items (weak evidence, like a
    stop word), the length norm ``(1 - b) + b * len_i / avg_len`` discounts interactions with very
    popular items, and ``k1`` saturates repeated events. ``N`` and ``avg_len`` are taken over items
    that have at least one interaction, which is the only difference from
    ``implicit.nearest_neighbours.bm25_weight``: adding never-touched catalogue items must not change
    anybody's weights. Weights that come out <= 0 (a user who touched nearly every item) are floored
    at ``BM25_FLOOR`` so the event stays a weak positive rather than vanishing or turning into
    implicit's negative-feedback convention.

    The result is canonical: sorted indices, no duplicates, no stored zeros (events whose weights sum
    to zero carry no signal and are dropped). The ALS confidence ``1 + alpha * value`` is applied
    later, in ``batch.train``.
    """
    _require_columns(interactions, ("user_id", "item_id", "weight"), "interactions")
    weight = interactions["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
    rows = maps.user_codes(interactions["user_id"])
    cols = maps.item_codes(interactions["item_id"])
    return confidence_from_codes(rows, cols, weight, (maps.n_users, maps.n_items), scheme, bm25_k1, bm25_b)


def confidence_from_codes(
    rows: np.ndarray,
    cols: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    scheme: Literal["log", "bm25"] = "log",
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
) -> csr_matrix:
    """``confidence_matrix`` of events given as user indices, item indices and float64 weights, each
    (n_events,): for callers that hold the codes already (the pipeline builds two matrices from one
    set of codes instead of copying the events)."""
    if not np.isfinite(weight).all() or (weight < 0).any():
        raise DataValidationError(
            "interactions.weight must be finite and >= 0; fix or quarantine the offending events first"
        )
    summed = coo_matrix((weight, (rows, cols)), shape=shape).tocsr()
    summed.sum_duplicates()
    summed.eliminate_zeros()
    if scheme == "log":
        summed.data = np.log1p(summed.data)
    elif scheme == "bm25":
        summed = _bm25(summed, bm25_k1, bm25_b)
    else:
        raise DataValidationError(f"unknown confidence scheme {scheme!r}; expected 'log' or 'bm25'")
    out = summed.astype(np.float32)
    out.eliminate_zeros()  # a weight too small for float32 would otherwise become a stored zero
    out.sort_indices()
    return out


def _bm25(user_items: csr_matrix, k1: float, b: float) -> csr_matrix:
    """BM25 weights of a canonical float64 CSR (n_users, n_items) with positive data (see above)."""
    if k1 <= 0 or not 0 <= b <= 1:
        raise DataValidationError(f"bm25 needs k1 > 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    coo = user_items.tocoo()
    item_len = np.bincount(coo.col, weights=coo.data, minlength=user_items.shape[1])
    active = item_len > 0
    n_docs = max(int(active.sum()), 1)
    avg_len = item_len[active].mean() if active.any() else 1.0
    idf = np.log(n_docs) - np.log1p(np.bincount(coo.row, minlength=user_items.shape[0]))
    length_norm = (1.0 - b) + b * item_len / avg_len
    data = coo.data * (k1 + 1.0) / (k1 * length_norm[coo.col] + coo.data) * idf[coo.row]
    out = csr_matrix((np.maximum(data, BM25_FLOOR), (coo.row, coo.col)), shape=user_items.shape)
    out.sum_duplicates()
    return out


def check_user_items(matrix: object, name: str = "matrix") -> csr_matrix:
    """Edge check for a users x items matrix: CSR, 2-D, at least one entry, finite, non-negative."""
    if not isinstance(matrix, csr_matrix):
        kind = f"{matrix.format} sparse" if issparse(matrix) else type(matrix).__name__
        raise ModelError(f"{name} must be a scipy.sparse.csr_matrix, got {kind}; convert with csr_matrix(x)")
    if matrix.nnz == 0:
        raise ModelError(f"{name} is empty (shape {matrix.shape}, nnz {matrix.nnz}); there is nothing to learn from")
    if not np.isfinite(matrix.data).all():
        raise ModelError(f"{name} contains NaN/inf values; check the weight column and the confidence scheme")
    if (matrix.data < 0).any():
        raise ModelError(f"{name} contains negative values; confidences must be >= 0")
    return matrix

"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

With ``X`` the binary users x items matrix (1 where a user has any positive strength), EASE solves
``min_B |X - X B|^2 + l2 |B|^2`` subject to ``diag(B) = 0``, whose solution is::

    G = X^T X + l2 I,   P = G^-1,   B_ij = -P_ij / P_jj (i != j),   B_jj = 0

and scores user u's items as ``s_u = x_u B``.

Why binary ``X`` and not the log-confidence strengths of ``batch.matrix.confidence_matrix``: on the
synthetic event logs binary scored higher on the test split (NDCG@10 0.163 vs 0.154, paired 95% CI
of log - binary [-0.015, -0.002]); on Last.fm play counts log was a little higher (0.238 vs 0.232),
but its best ``l2`` moves with the weight scale (200 on events, 5000 on plays, against 100-200 for
binary on both), so no default would carry over. Repeated events already shape ALS's confidences.

Memory. ``B`` is dense: n_items^2 float32. Fitting holds a float64 Gram matrix, factorised and
inverted in place, and the float32 ``B`` at the same time, so the peak is about
``EASE_BYTES_PER_PAIR * n_items^2`` bytes (12 = 8 + 4) plus ~4 KB per item of row-block temporaries
and the input (measured: 4,656 MiB at 20k items against 4,578 MiB for 12 * n^2; 1,184 vs 1,144 at
10k). ``train_ease`` refuses ``n_items > max_items`` before allocating anything.

Numerics. The inverse is float64 (Cholesky ``potrf`` + ``potri``): Gram entries are exact co-occurrence
counts and small ``l2`` makes ``G`` ill-conditioned; float32 was ~1.7x faster but changed 1.2% of
Last.fm top-20 lists. BLAS is pinned to one thread: on 2 cores OpenBLAS's threaded
Cholesky was slower (12 s vs 21 s at 8k items) and crashed (SIGSEGV) at 17.6k items, and a fixed
thread count keeps the weights bit-reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from batch.matrix import check_user_items
from shared.errors import ConfigError, ModelError

# Bytes per (item, item) pair at the fitting peak: float64 Gram/inverse (8) + float32 weights (4).
EASE_BYTES_PER_PAIR = 12
# Rows per block when building the Gram matrix and the weights: temporaries ~ this * n_items * 24 bytes.
_BLOCK_ROWS = 256


@dataclass(frozen=True)
class EaseParams:
    """``l2``: ridge penalty on ``B`` (> 0; larger = smoother, more popularity-like). ``max_items``: the
    largest catalogue ``train_ease`` accepts, i.e. a memory budget of ``12 * max_items^2`` bytes."""

    l2: float
    max_items: int

    def __post_init__(self) -> None:
        if not (self.l2 > 0 and np.isfinite(self.l2)) or self.max_items < 1:
            raise ConfigError(f"invalid EASE params {self}: need a finite l2 > 0 and max_items >= 1")


@dataclass(frozen=True, eq=False)
class EaseModel:
    """``weights`` float32 (n_items, n_items), zero diagonal: item i's contribution to item j's score is
    ``weights[i, j]``. Construction checks dtype, shape, finiteness and the diagonal."""

    weights: np.ndarray

    def __post_init__(self) -> None:
        w = self.weights
        if not isinstance(w, np.ndarray) or w.dtype != np.float32 or w.ndim != 2 or w.shape[0] != w.shape[1]:
            got = f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
            raise ModelError(f"EASE weights must be a square float32 array, got {got}")
        # A float64 sum of float32 values cannot overflow, so it is finite iff every weight is, and it
        # avoids np.isfinite's n_items^2 bool temporary (a quarter of the weights' own size).
        with np.errstate(invalid="ignore"):  # inf + -inf is the NaN we are looking for
            finite = np.isfinite(w.sum(dtype=np.float64))
        if not finite:
            raise ModelError("EASE weights contain NaN/inf; refit with a larger l2")
        if np.diagonal(w).any():
            raise ModelError("EASE weights must have a zero diagonal (an item may not predict itself)")

    @property
    def n_items(self) -> int:
        return self.weights.shape[0]


def ease_memory_bytes(n_items: int) -> int:
    """Peak bytes of ``train_ease``'s dense part on ``n_items`` items (block temporaries add ~4 KB per item)."""
    return EASE_BYTES_PER_PAIR * n_items * n_items


def binary_design(matrix: csr_matrix) -> csr_matrix:
    """float32 CSR of the same shape: 1 where ``matrix`` stores a positive value; sorted indices."""
    out = csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.data = (out.data > 0).astype(np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _gram(x: csr_matrix, l2: float) -> np.ndarray:
    """``X^T X + l2 I`` as float64 (n, n), built in row blocks so no sparse n x n product is ever held."""
    n = x.shape[1]
    x64 = x.astype(np.float64)
    xt = x64.T.tocsr()
    gram = np.zeros((n, n), dtype=np.float64)
    for r0 in range(0, n, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, n)
        (xt[r0:r1] @ x64).toarray(out=gram[r0:r1])  # out is zero here, and csr toarray adds into it
    gram.flat[:: n + 1] += l2
    return gram


def _invert_in_place(gram: np.ndarray) -> np.ndarray:
    """Overwrite SPD ``gram`` (n, n) C-order so its lower triangle (row >= col) holds ``gram^-1``.

    LAPACK works on the Fortran view ``gram.T``; for a symmetric matrix that is the same matrix, and
    its upper triangle is our lower one. ``overwrite`` on a Fortran-contiguous float64 view means no copy.
    """
    view = gram.T
    with threadpool_limits(1, "blas"):
        factor, info = lapack.dpotrf(view, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            raise ModelError(f"EASE Gram matrix is not positive definite (potrf info {info}); raise l2")
        inverse, info = lapack.dpotri(factor, lower=0, overwrite_c=1)
        if info != 0:
            raise ModelError(f"EASE inverse failed (potri info {info}); raise l2")
    if not np.shares_memory(inverse, gram):  # LAPACK copied after all: hand its result back
        gram[...] = inverse.T
    return gram


def _weights_from_inverse(lower: np.ndarray) -> np.ndarray:
    """float32 ``B`` (n, n) from an inverse ``P`` stored in the lower triangle of ``lower`` (row blocks)."""
    n = lower.shape[0]
    diag = np.diagonal(lower).copy()
    weights = np.empty((n, n), dtype=np.float32)
    for r0 in range(0, n, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, n)
        rows = np.empty((r1 - r0, n), dtype=np.float64)  # full rows r0:r1 of the symmetric P
        rows[:, :r0] = lower[r0:r1, :r0]
        block = lower[r0:r1, r0:r1]
        rows[:, r0:r1] = np.tril(block) + np.tril(block, -1).T
        rows[:, r1:] = lower[r1:, r0:r1].T
        np.divide(rows, -diag, out=rows)
        weights[r0:r1] = rows
        weights[np.arange(r0, r1), np.arange(r0, r1)] = 0.0
    return weights


def train_ease(matrix: csr_matrix, params: EaseParams) -> EaseModel:
    """Fit EASE on ``matrix`` float CSR (n_users, n_items) of strengths ``w >= 0`` (binarised, see above).

    Returns ``EaseModel`` with float32 weights (n_items, n_items). Raises ModelError before allocating
    when ``n_items > params.max_items``: the fit needs about ``12 * n_items^2`` bytes (float64 Gram
    inverted in place + float32 weights). Items nobody used get all-zero rows and columns. Same
    matrix and params give bit-identical weights on the same machine (BLAS pinned to one thread).
    """
    check_user_items(matrix, "EASE training matrix")
    n_items = matrix.shape[1]
    if n_items > params.max_items:
        need = ease_memory_bytes(n_items)
        raise ModelError(
            f"EASE on {n_items} items needs about {need / 2**30:.1f} GiB ({need} bytes: {EASE_BYTES_PER_PAIR} "
            f"bytes per item pair, a float64 Gram matrix inverted in place plus float32 weights), over the "
            f"limit of max_items={params.max_items}. Raise max_items if the machine has that memory, or use "
            "ALS, whose memory grows linearly with the catalogue"
        )
    gram = _gram(binary_design(matrix), params.l2)
    weights = _weights_from_inverse(_invert_in_place(gram))
    del gram
    return EaseModel(weights=weights)


def _top_n_dense(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n of float32 ``scores`` (m, n_items), ``-inf`` = excluded: ids int32 (m, n), scores float32 (m, n).

    Descending score, ties by ascending index, ``-1`` / ``-inf`` padded (``batch.candidates.top_k``'s rules).
    """
    m, n_items = scores.shape
    ids = np.full((m, n), -1, dtype=np.int32)
    top = np.full((m, n), -np.inf, dtype=np.float32)
    kk = min(n, n_items)
    if m == 0 or kk == 0:
        return ids, top
    kth = np.partition(scores, n_items - kk, axis=1)[:, n_items - kk]
    # Everything tied with the k-th score is kept, so the index tie-break below is exact.
    rows, cols = np.nonzero((scores >= kth[:, None]) & (scores > -np.inf))
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = pos < kk
    ids[rows[keep], pos[keep]] = cols[keep]
    top[rows[keep], pos[keep]] = vals[keep]
    return ids, top


def ease_top_n(
    model: EaseModel,
    matrix: csr_matrix,
    n: int,
    banned: np.ndarray | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n unseen items per user by ``s_u = x_u B``, with ``x_u`` the user's binarised row of ``matrix``.

    ``matrix``: CSR (n_users, n_items), the users' histories; every stored entry (any value) is also
    excluded from that user's list. ``banned``: bool (n_items,), excluded for everyone. Returns ids
    int32 (n_users, n) and scores float32 (n_users, n): descending score, ties by ascending item index,
    ``-1`` / ``-inf`` padded when fewer than n items remain. A user with an empty row scores 0 on every
    item, so their list is by index (as ``top_k`` does for a zero user vector). Each row is summed in
    ascending item order (scipy's CSR x dense product), so results do not depend on ``batch_size``,
    which only bounds memory: about ``batch_size * n_items * 14`` bytes per block.
    """
    n_items = model.n_items
    if not isinstance(matrix, csr_matrix) or matrix.ndim != 2 or matrix.shape[1] != n_items:
        raise ModelError(
            f"matrix must be CSR (n_users, {n_items}) with the model's item columns, "
            f"got {type(matrix).__name__} {getattr(matrix, 'shape', None)}"
        )
    if n < 1 or batch_size < 1:
        raise ModelError(f"n ({n}) and batch_size ({batch_size}) must be >= 1")
    if banned is not None and (banned.shape != (n_items,) or banned.dtype != np.bool_):
        raise ModelError(f"banned must be a bool array of shape {(n_items,)}, got {banned.dtype} {banned.shape}")
    n_users = matrix.shape[0]
    design = binary_design(matrix)
    ids = np.empty((n_users, n), dtype=np.int32)
    scores = np.empty((n_users, n), dtype=np.float32)
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        block = np.asarray(design[start:stop] @ model.weights, dtype=np.float32)
        seen = matrix[start:stop]
        block[np.repeat(np.arange(stop - start), np.diff(seen.indptr)), seen.indices] = -np.inf
        if banned is not None:
            block[:, banned] = -np.inf
        ids[start:stop], scores[start:stop] = _top_n_dense(block, n)
    return ids, scores


def ease_item_neighbours(model: EaseModel, n: int, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-n items j by ``B[i, j]`` for each item i (the EASE score of a one-item history), i excluded.

    Returns ids int32 (n_items, n), scores float32 (n_items, n), ``-1`` / ``-inf`` padded. An item whose
    row of B is all zero predicts nothing and gets no neighbours; one whose column is all zero (never
    co-consumed) is nobody's neighbour. Memory: about ``batch_size * n_items * 14`` bytes per block.
    """
    if n < 1 or batch_size < 1:
        raise ModelError(f"n ({n}) and batch_size ({batch_size}) must be >= 1")
    weights, n_items = model.weights, model.n_items
    row_live = np.zeros(n_items, dtype=bool)
    col_live = np.zeros(n_items, dtype=bool)
    for r0 in range(0, n_items, batch_size):
        nonzero = weights[r0 : r0 + batch_size] != 0
        row_live[r0 : r0 + batch_size] = nonzero.any(axis=1)
        col_live |= nonzero.any(axis=0)
    ids = np.empty((n_items, n), dtype=np.int32)
    scores = np.empty((n_items, n), dtype=np.float32)
    for r0 in range(0, n_items, batch_size):
        r1 = min(r0 + batch_size, n_items)
        block = weights[r0:r1].copy()
        block[np.arange(r1 - r0), np.arange(r0, r1)] = -np.inf
        block[:, ~col_live] = -np.inf
        block[~row_live[r0:r1]] = -np.inf
        ids[r0:r1], scores[r0:r1] = _top_n_dense(block, n)
    return ids, scores

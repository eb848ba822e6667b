"""Static evaluation protocols: seeded train/holdout splits, and full ranking with seen items excluded.

A split returns ``(train, holdout)``: ``train`` the interaction rows a model may learn from (input
columns and row order kept) and ``holdout`` user_id -> the set of item_ids to be recovered, the same
shape as ``batch.holdout.temporal_split`` returns. Ranking is always over the whole catalogue (no
sampled negatives, which inflate metrics and can reorder models) with each user's train items removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from batch.candidates import top_k
from batch.holdout import temporal_split
from shared.errors import DataValidationError, ModelError

Holdout = dict[str, set[str]]
# users int64 (m,) -> scores float32 (m, n_items); -inf marks items the model cannot score (never shown).
ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TemporalHoldout:
    """Each user's last ``holdout_per_user`` distinct items, exactly as ``batch.holdout.temporal_split``.

    Needs a datetime ``ts`` column; data without real timestamps (Last.fm ``user_artists.dat``) is
    refused with DataValidationError rather than split on made-up times. Deterministic: the seed is
    accepted for a uniform interface and unused.
    """

    holdout_per_user: int = 1
    name: ClassVar[str] = "temporal"

    def split(self, interactions: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, Holdout]:
        return temporal_split(interactions, self.holdout_per_user)


@dataclass(frozen=True)
class RandomHoldout:
    """A seeded random ``test_fraction`` of each user's distinct items (see ``random_split``)."""

    test_fraction: float = 0.2
    name: ClassVar[str] = "random"

    def split(self, interactions: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, Holdout]:
        return random_split(interactions, self.test_fraction, seed)


SplitProtocol = TemporalHoldout | RandomHoldout


def random_split(interactions: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, Holdout]:
    """Hold out a random ``test_fraction`` of each user's distinct (user, item) pairs.

    A user with ``n >= 2`` distinct items holds out ``n_test = min(n - 1, max(1, floor(f * n + 0.5)))``
    of them (f = ``test_fraction``; so everyone keeps >= 1 item to learn from and tests on >= 1); users
    with one item only train. The held-out pairs are a uniformly random subset: pairs are put in
    (user_id, item_id) sorted order, ``numpy.random.default_rng(seed).random`` draws one key per pair in
    that order, and each user's ``n_test`` smallest keys are held out. So the same pairs and seed give
    the same split whatever the row order, and different seeds give independent splits.

    Every event of a held-out pair leaves train (repeat events of a test pair would leak it). Returns
    train (the remaining rows, input columns and order) and user_id -> held-out item_ids; each pair of
    the input is in exactly one of the two.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataValidationError(f"test_fraction must be in (0, 1), got {test_fraction}")
    missing = {"user_id", "item_id"} - set(interactions.columns)
    if missing:
        raise DataValidationError(f"interactions is missing columns {sorted(missing)}")
    if interactions.empty:
        return interactions.copy(), {}
    users, user_names = pd.factorize(interactions["user_id"], sort=True)
    items, item_names = pd.factorize(interactions["item_id"], sort=True)
    if (users < 0).any() or (items < 0).any():
        raise DataValidationError("interactions has null user_id/item_id values; drop or repair them first")

    pair_codes, row_pair = np.unique(users.astype(np.int64) * len(item_names) + items, return_inverse=True)
    pair_user = pair_codes // len(item_names)
    n_per_user = np.bincount(pair_user, minlength=len(user_names))
    n_test = np.minimum(n_per_user - 1, np.maximum(1, np.floor(test_fraction * n_per_user + 0.5).astype(np.int64)))

    keys = np.random.default_rng(seed).random(len(pair_codes))
    order = np.lexsort((np.arange(len(pair_codes)), keys, pair_user))  # by user, then key
    rank = np.empty(len(pair_codes), dtype=np.int64)
    user_start = np.concatenate(([0], np.cumsum(n_per_user)[:-1]))
    rank[order] = np.arange(len(order)) - user_start[pair_user[order]]
    held = rank < n_test[pair_user]

    holdout: Holdout = {}
    for code in pair_codes[held]:
        u, i = divmod(int(code), len(item_names))
        holdout.setdefault(str(user_names[u]), set()).add(str(item_names[i]))
    return interactions[~held[row_pair.ravel()]].copy(), holdout


@dataclass(frozen=True, eq=False)
class Factors:
    """A model whose score is a dot product: ``user_vectors`` (n_users, f), ``item_vectors`` (n_items, f)."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray


def rank_all(
    scorer: Factors | ScoreFn, train_matrix: csr_matrix, users: np.ndarray, k: int, batch_size: int = 1024
) -> np.ndarray:
    """Top-k item indices for ``users`` int (m,) over every item, each user's train items excluded.

    ``train_matrix`` CSR (n_users, n_items): a stored entry (any value) removes that item from that
    user's ranking. ``scorer`` is either ``Factors`` (ranked by ``batch.candidates.top_k``, the code
    path that publishes candidates, so factor models are measured on exactly what they would serve)
    or a ``ScoreFn`` returning dense float scores (m, n_items) for a block of at most ``batch_size``
    users (for models with no factor form, e.g. item-kNN). Either way a list is in descending score,
    ties by ascending item index, and ends in ``-1`` padding where fewer than k items are scorable
    (unseen and not ``-inf``). Returns int32 (m, k).
    """
    if not isinstance(train_matrix, csr_matrix):
        raise ModelError(f"train_matrix must be a scipy.sparse.csr_matrix, got {type(train_matrix).__name__}")
    if k < 1 or batch_size < 1:
        raise ModelError(f"k ({k}) and batch_size ({batch_size}) must be >= 1")
    users = np.asarray(users, dtype=np.int64)
    n_users, n_items = train_matrix.shape
    if users.ndim != 1 or (users.size and (users.min() < 0 or users.max() >= n_users)):
        raise ModelError(f"users must be a 1-D array of row indices in [0, {n_users})")
    if isinstance(scorer, Factors):
        if scorer.user_vectors.shape[0] != n_users or scorer.item_vectors.shape[0] != n_items:
            raise ModelError(
                f"factors cover {scorer.user_vectors.shape[0]} users x {scorer.item_vectors.shape[0]} items, "
                f"the train matrix {n_users} x {n_items}; build both from the same IdMaps"
            )
        ids, _ = top_k(
            scorer.user_vectors[users], scorer.item_vectors, k, exclude=train_matrix[users], batch_size=batch_size
        )
        return ids
    out = np.full((len(users), k), -1, dtype=np.int32)
    for start in range(0, len(users), batch_size):
        block = users[start : start + batch_size]
        scores = np.array(scorer(block), dtype=np.float32)  # a copy: exclusion writes into it
        if scores.shape != (len(block), n_items) or np.isnan(scores).any():
            raise ModelError(f"scorer must return NaN-free scores of shape {(len(block), n_items)}, got {scores.shape}")
        seen = train_matrix[block]
        scores[np.repeat(np.arange(len(block)), np.diff(seen.indptr)), seen.indices] = -np.inf
        out[start : start + len(block)] = _top_k_dense(scores, k)
    return out


def _top_k_dense(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k ids int32 (m, k) of float32 ``scores`` (m, n): descending, ties by index, ``-inf`` -> ``-1``."""
    m, n = scores.shape
    kk = min(k, n)
    ids = np.full((m, k), -1, dtype=np.int32)
    if m == 0 or kk == 0:
        return ids
    kth = np.partition(scores, n - kk, axis=1)[:, n - kk]
    # Everything tied with the k-th score is a candidate, so the index tie-break is exact.
    rows, cols = np.nonzero((scores >= kth[:, None]) & (scores > -np.inf))
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols = rows[order], cols[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = pos < kk
    ids[rows[keep], pos[keep]] = cols[keep]
    return ids

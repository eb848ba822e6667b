"""The temporal holdout: each user's latest distinct items, split off so a model can be measured on them.

Used by the pipeline (``batch.holdout_metrics``), the quality gate and the lab's static protocols. It
defines WHICH items are held out; ``batch.metrics`` defines how a ranking of them is scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from shared.errors import DataValidationError, ModelError


def temporal_split(interactions: pd.DataFrame, holdout_per_user: int) -> tuple[pd.DataFrame, dict[str, set[str]]]:
    """Split off each user's last ``holdout_per_user`` distinct items: (train interactions, user_id -> item_ids).

    The rows of :func:`temporal_holdout`'s mask, as a frame (which copies them: the pipeline uses the mask).
    """
    removed, holdout = temporal_holdout(interactions, holdout_per_user)
    return interactions[~removed].copy(), holdout


def temporal_holdout(interactions: pd.DataFrame, holdout_per_user: int) -> tuple[np.ndarray, dict[str, set[str]]]:
    """Each user's last ``holdout_per_user`` distinct items: (bool (n_rows,) rows removed from train,
    user_id -> held-out item_ids).

    Per user, events are ordered by ``ts`` (input order breaks ties). Walking back from the last event,
    the first ``holdout_per_user`` distinct items met are the candidates; the holdout point ``T`` is the
    time of the latest event of the last candidate found. Only users with at least
    ``holdout_per_user + 2`` distinct items take part, so everyone keeps >= 2 items to learn from.

    Train = all events except those of candidate items at or after ``T``: nothing of a candidate from
    the holdout point on leaks into training. A candidate the user also interacted with before ``T``
    is not a fair target (predicting a re-interaction is a different, easier task); it is dropped from
    the holdout, and its earlier events stay in train. Users left with no fair target are absent from
    the returned dict. Train is the rows not removed, in the input's order.
    """
    if holdout_per_user < 1:
        raise DataValidationError(f"holdout_per_user must be >= 1, got {holdout_per_user}")
    missing = {"user_id", "item_id", "ts"} - set(interactions.columns)
    if missing:
        raise DataValidationError(f"interactions is missing columns {sorted(missing)}")
    if interactions.empty:
        return np.zeros(0, dtype=bool), {}

    if not pd.api.types.is_datetime64_any_dtype(interactions["ts"]):
        raise DataValidationError(f"interactions.ts must be a datetime column, got {interactions['ts'].dtype}")

    users, user_names = pd.factorize(interactions["user_id"])
    items, item_names = pd.factorize(interactions["item_id"])
    if (users < 0).any() or (items < 0).any():
        raise DataValidationError("interactions has null user_id/item_id values; drop or repair them first")
    ts = interactions["ts"].astype("int64").to_numpy()
    order = np.lexsort((np.arange(len(users)), ts, users))  # by user, then time, then input order
    u, t = users[order].astype(np.int64), ts[order]  # position p in this order is an event's "pos"
    del ts
    n_i = len(item_names)
    key = u * n_i + items[order]

    # Per (user, item) pair, in numpy (pandas' groupby held the events ~twice more at the peak): a stable
    # sort of the pair keys keeps each pair's events in pos order, so a run's first entry is its earliest
    # event (first_t) and its last entry its latest (last_pos).
    by_pair = np.argsort(key, kind="stable")
    sorted_keys = key[by_pair]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(sorted_keys)] - 1
    pair_key, last_pos, first_t = sorted_keys[starts], by_pair[ends], t[by_pair[starts]]
    del by_pair, sorted_keys, starts, ends
    pair_u = pair_key // n_i
    # each user's pairs by last_pos descending: rank 0 is the item met first walking back from the end
    ranked = np.lexsort((-last_pos, pair_u))
    pair_key, pair_u, last_pos, first_t = pair_key[ranked], pair_u[ranked], last_pos[ranked], first_t[ranked]
    n_pairs = np.bincount(pair_u, minlength=int(u.max()) + 1)
    user_start = np.r_[0, np.cumsum(n_pairs)[:-1]]
    rank = np.arange(len(pair_u)) - user_start[pair_u]
    is_cand = (rank < holdout_per_user) & (n_pairs[pair_u] >= holdout_per_user + 2)
    c_key, c_u, c_last, c_first = pair_key[is_cand], pair_u[is_cand], last_pos[is_cand], first_t[is_cand]
    del pair_key, pair_u, last_pos, first_t, ranked, rank, is_cand

    # T per user: the time of the event at the smallest last_pos among the user's candidates.
    min_last = np.full(len(n_pairs), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(min_last, c_u, c_last)
    c_t_hold = t[min_last[c_u]]

    hit = pd.Index(c_key).get_indexer(key)
    t_hold = np.full(len(key), np.iinfo(np.int64).max, dtype=np.int64)
    t_hold[hit >= 0] = c_t_hold[hit[hit >= 0]]
    removed = np.zeros(len(order), dtype=bool)
    removed[order] = t >= t_hold
    del key, hit, t_hold, t, u, order

    cand = pd.DataFrame({"u": c_u, "i": c_key % n_i, "first_t": c_first, "t_hold": c_t_hold})
    fair = cand[cand["first_t"] >= cand["t_hold"]]
    holdout: dict[str, set[str]] = {}
    # numpy object arrays: element lookups on Arrow-backed pandas Indexes cost ~13x more per call
    user_arr, item_arr = np.asarray(user_names, dtype=object), np.asarray(item_names, dtype=object)
    for u, i in zip(fair["u"].to_numpy(), fair["i"].to_numpy(), strict=True):
        holdout.setdefault(str(user_arr[u]), set()).add(str(item_arr[i]))
    return removed, holdout


def holdout_indices(
    holdout: Mapping[str, Iterable[str]], user_index: Mapping[str, int], item_index: Mapping[str, int]
) -> dict[int, np.ndarray]:
    """``temporal_split``'s user_id -> item_ids as user index -> sorted int32 item indices (``IdMaps`` dicts)."""
    try:
        return {
            user_index[u]: np.array(sorted(item_index[i] for i in its), dtype=np.int32) for u, its in holdout.items()
        }
    except KeyError as exc:
        raise ModelError(f"held-out id {exc} is not in the id maps; build the maps from train + holdout") from exc

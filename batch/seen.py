"""Each user's seen set: the items of their training window, published so no tier re-recommends them.

Published with the version as the ragged user array ``seen`` (``feature_store.layout``): per user the
sorted item indices they interacted with in the run's window, at most ``cap`` of them (the most
recently touched ones when a user has more). The API removes these from every tier unless
``exclude_seen`` is off (repeat-purchase domains).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from batch.matrix import IdMaps
from feature_store.layout import Ragged
from shared.errors import ConfigError


def seen_items(interactions: pd.DataFrame, maps: IdMaps, cap: int) -> Ragged:
    """Ragged rows (n_users,) of sorted int32 item indices; ``cap`` per user, the most recent kept.

    ``interactions``: user_id, item_id, ts (any comparable ts dtype). Ties in the last-touch time of a
    user's items (only matters at the cap) go to the lower item index. Deterministic.
    """
    if cap < 0:
        raise ConfigError(f"the seen-set cap must be >= 0, got {cap}")
    if cap == 0 or interactions.empty:
        return Ragged.empty(maps.n_users, "int32")
    return seen_from_touches(last_touches(interactions, maps), cap, range(maps.n_users))


def last_touches(interactions: pd.DataFrame, maps: IdMaps) -> dict[str, np.ndarray]:
    """Each (user, item) pair once, with its last touch: ``users``, ``items`` int64 and ``ts`` int64 (ns),
    each (n_pairs,), sorted by user then item. All a seen set needs of the events, so a sharded run
    (``batch.shards``) saves this and builds each user range's seen sets from its slice."""
    users = maps.user_codes(interactions["user_id"]).astype(np.int64)
    items = maps.item_codes(interactions["item_id"]).astype(np.int64)
    ts = pd.to_datetime(interactions["ts"]).astype("int64").to_numpy()
    pair = users * maps.n_items + items
    # last touch per (user, item): sort by pair then time, keep each pair's last row
    order = np.lexsort((ts, pair))
    last = np.r_[pair[order][1:] != pair[order][:-1], True]
    return {"users": users[order][last], "items": items[order][last], "ts": ts[order][last]}


def seen_from_touches(touches: dict[str, np.ndarray], cap: int, rows: range) -> Ragged:
    """The seen sets of users ``rows`` (a contiguous range of user indices) from ``last_touches``: ragged
    rows (len(rows),), row r for user ``rows.start + r``. The same rows ``seen_items`` gives those users."""
    if cap < 0:
        raise ConfigError(f"the seen-set cap must be >= 0, got {cap}")
    n_users = len(rows)
    lo, hi = np.searchsorted(touches["users"], [rows.start, rows.stop])
    if cap == 0 or hi == lo:
        return Ragged.empty(n_users, "int32")
    pair_u = np.asarray(touches["users"][lo:hi]) - rows.start
    pair_i, pair_t = np.asarray(touches["items"][lo:hi]), np.asarray(touches["ts"][lo:hi])
    # per user, newest first (ties: lower item first), then the first ``cap`` of each user
    order = np.lexsort((pair_i, -pair_t, pair_u))
    pair_u, pair_i = pair_u[order], pair_i[order]
    starts = np.searchsorted(pair_u, np.arange(n_users))
    rank = np.arange(len(pair_u)) - starts[pair_u]
    keep = rank < cap
    pair_u, pair_i = pair_u[keep], pair_i[keep]
    order = np.lexsort((pair_i, pair_u))  # rows by user, items ascending inside a row
    counts = np.bincount(pair_u, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Ragged(indptr, pair_i[order].astype(np.int32))

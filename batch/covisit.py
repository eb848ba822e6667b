"""Co-visitation neighbours: items that follow each other within sessions.

ALS neighbours say "liked by similar people"; co-visitation says "looked at next, in the same visit",
which is what a "customers also viewed" strip and next-item prediction want. Computed from the raw
event sequence, without the model.

Steps, all vectorised (numpy / scipy.sparse, no Python loop over events):

1. **Sessions.** A row with a ``session_id`` belongs to that session (the id alone defines it; one
   visit may span any time). Rows without one (the column is optional, and may be null) are
   sessionised per user: sorted by time, a gap longer than ``session_gap_s`` starts a new session.
2. **Order.** Within a session events are ordered by ``ts``; ties by ``event_id`` when that column
   exists, then by row order (a stable sort), so the same input always gives the same sequence.
3. **Steps.** Consecutive repeats of one item collapse into one step (a view, then a click, then an
   add-to-cart of the same item is one step, not three).
4. **Pairs.** For steps i < j with ``d = j - i <= window`` and different items, the session gives the
   directed pair ``item_i -> item_j`` the weight ``1/d`` and, at half that weight, the reverse pair
   ``item_j -> item_i``. A session counts a pair at most once, with the largest weight it earns there,
   so one long session cannot dominate. Why the reverse at half weight: seeing b shortly before a is
   still evidence that the two belong together (and without it, items that end sessions, such as
   purchases, would get no neighbours at all), but the forward order is what "what comes next" asks,
   so it counts double.
5. **Score.** With ``C(a->b)`` the sum over sessions of those weights and ``N(x)`` the number of
   sessions containing item x::

       score(a -> b) = C(a -> b) / sqrt(N(a) * N(b))

   a cosine-style normalisation: dividing by ``sqrt(N(b))`` stops the most popular items from
   topping every list, and since a session adds at most 1 to ``C``, ``C <= min(N(a), N(b))`` and the
   score lies in (0, 1]; it is 1 only when a and b always occur together, b right after a.

Weights are summed as exact integers (in units of ``1 / (2 * lcm(1..window))``), so the sums, and
therefore the published bytes, do not depend on the order rows or sessions arrive in (only equal
timestamps without an ``event_id`` fall back to row order, step 2). Each item keeps its
top ``n`` by descending score, ties by ascending item index (the rule of ``batch.candidates``); an
item is never its own neighbour. Rows are padded with id ``-1`` and score ``-inf``, as in
``batch.candidates``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix

from batch.matrix import IdMaps
from shared.errors import ConfigError, DataValidationError, ModelError

# lcm(1..20) * 2 ~ 4.7e8 units per full weight: integer sums stay far below 2**63 for any data set
# that fits in memory.
MAX_WINDOW = 20
REVERSE_DIVISOR = 2  # the reverse pair weighs 1 / (REVERSE_DIVISOR * d)


def covisit_neighbours(
    interactions: pd.DataFrame,
    maps: IdMaps,
    n: int,
    window: int,
    session_gap_s: float = 1800.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` co-visited items per item (see the module docstring for the exact definition).

    ``interactions``: rows with ``user_id``, ``item_id``, ``ts`` (datetime64, naive or tz-aware) and
    optionally ``session_id`` (str, may be null) and ``event_id`` (tie-break for equal ``ts``). Every
    item must be in ``maps`` (and every user of a row without a session id).
    Returns ids int32 (n_items, n) and scores float32 (n_items, n), ``-1`` / ``-inf`` padded.
    """
    _check_params(n, window, session_gap_s)
    ids = np.full((maps.n_items, n), -1, dtype=np.int32)
    scores = np.full((maps.n_items, n), -np.inf, dtype=np.float32)
    ts = _validated_ts_ns(interactions)
    if len(interactions) == 0:
        return ids, scores
    items = maps.item_codes(interactions["item_id"]).astype(np.int64)
    tiebreak = _event_rank(interactions)
    sessions = _session_codes(interactions, maps, ts, tiebreak, session_gap_s)
    keys = (ts, sessions) if tiebreak is None else (tiebreak, ts, sessions)
    order = np.lexsort(keys)  # stable: equal keys keep row order
    del keys, ts, tiebreak
    sess, seq = sessions[order], items[order]
    del sessions, items, order
    step = np.ones(len(seq), dtype=bool)
    step[1:] = (sess[1:] != sess[:-1]) | (seq[1:] != seq[:-1])
    sess, seq = sess[step], seq[step]

    distinct = _distinct_steps(sess, seq, maps.n_items)
    counts = _pair_counts(sess, seq, distinct, maps.n_items, window)
    top_ids, top_scores = _top_n(counts, _sessions_per_item(distinct, maps.n_items), _unit(window), n)
    ids[:, : top_ids.shape[1]], scores[:, : top_scores.shape[1]] = top_ids, top_scores
    return ids, scores


def _check_params(n: int, window: int, session_gap_s: float) -> None:
    if n < 1:
        raise ConfigError(f"n (co-visitation neighbours per item) must be >= 1, got {n}")
    if not 1 <= window <= MAX_WINDOW:
        raise ConfigError(f"window must be between 1 and {MAX_WINDOW} steps, got {window}")
    if not (math.isfinite(session_gap_s) and session_gap_s > 0):
        raise ConfigError(f"session_gap_s must be a positive number of seconds, got {session_gap_s}")


def _validated_ts_ns(interactions: pd.DataFrame) -> np.ndarray:
    """``ts`` as int64 nanoseconds (n_rows,); DataValidationError for missing columns or bad times."""
    if not isinstance(interactions, pd.DataFrame):
        raise DataValidationError(f"interactions must be a pandas DataFrame, got {type(interactions).__name__}")
    missing = [c for c in ("user_id", "item_id", "ts") if c not in interactions.columns]
    if missing:
        raise DataValidationError(f"interactions is missing columns {missing}; it has {list(interactions.columns)}")
    ts = interactions["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise DataValidationError(f"interactions.ts must be a datetime column, got {ts.dtype}; parse it first")
    if ts.isna().any():
        raise DataValidationError(f"interactions.ts has {int(ts.isna().sum())} missing values; drop those events")
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


def _event_rank(interactions: pd.DataFrame) -> np.ndarray | None:
    """Rank of each row's ``event_id`` in sorted order (int64, -1 for null), or None without the column."""
    if "event_id" not in interactions.columns:
        return None
    codes, _ = pd.factorize(interactions["event_id"], sort=True)
    return codes.astype(np.int64)


def _session_codes(
    interactions: pd.DataFrame, maps: IdMaps, ts: np.ndarray, tiebreak: np.ndarray | None, gap_s: float
) -> np.ndarray:
    """Session number of every row, int64 (n_rows,): explicit ids first, then gaps per user."""
    n_rows = len(interactions)
    codes = np.empty(n_rows, dtype=np.int64)
    if "session_id" in interactions.columns:
        explicit, _ = pd.factorize(interactions["session_id"])
    else:
        explicit = np.full(n_rows, -1, dtype=np.int64)
    has_id = explicit >= 0
    codes[has_id] = explicit[has_id]
    rows = np.flatnonzero(~has_id)
    if len(rows) == 0:
        return codes
    users = maps.user_codes(interactions["user_id"].iloc[rows]).astype(np.int64)
    keys = (ts[rows], users) if tiebreak is None else (tiebreak[rows], ts[rows], users)
    order = np.lexsort(keys)
    u, t = users[order], ts[rows][order]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (np.diff(t) > round(gap_s * 1e9))
    codes[rows[order]] = int(explicit.max(initial=-1)) + np.cumsum(new)
    return codes


def _run_starts(x: np.ndarray) -> np.ndarray:
    """bool (len(x),): True where a run of equal values starts."""
    starts = np.ones(len(x), dtype=bool)
    starts[1:] = x[1:] != x[:-1]
    return starts


def _unit(window: int) -> int:
    """Integer weight of one full co-visit: every weight ``1 / (REVERSE_DIVISOR^rev * d)`` is a whole multiple."""
    return REVERSE_DIVISOR * math.lcm(*range(1, window + 1))


def _weight(unit: int, reverse: bool, distance: int) -> int:
    return unit // (distance * (REVERSE_DIVISOR if reverse else 1))


def _distinct_steps(sess: np.ndarray, seq: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted distinct ``session * n_items + item`` codes, int64: one per (session, item) occurrence."""
    codes = np.sort(sess * n_items + seq)  # np.sort beats np.unique's hashing here by 30x
    return codes[_run_starts(codes)]


# Steps per chunk of whole sessions in ``_pair_counts``: its temporaries are ~50 bytes per step and
# pair, so chunks bound them (unchunked, 1M events took ~250 MB at once); the sums do not depend on it.
CHUNK_STEPS = 100_000


def _pair_counts(sess: np.ndarray, seq: np.ndarray, distinct: np.ndarray, n_items: int, window: int) -> csr_matrix:
    """``C`` in integer units: int64 CSR (n_items, n_items), row a, column b = ``C(a -> b) * unit``.

    ``sess``/``seq`` (n_steps,): session and item of every step, each session contiguous, in order;
    ``distinct``: their :func:`_distinct_steps`. ``unit = REVERSE_DIVISOR * lcm(1..window)``. Sessions
    are taken ``CHUNK_STEPS`` steps at a time (never split); integer sums make the result the same for
    any chunk size.
    """
    if len(distinct) * n_items * 2 * window >= 2**62:
        raise ModelError(f"too many sessions x items ({len(distinct):,} x {n_items:,}) for co-visitation codes")
    counts = csr_matrix((n_items, n_items), dtype=np.int64)
    starts = np.flatnonzero(_run_starts(sess))  # first step of each session
    cut = np.searchsorted(starts, np.arange(0, len(sess), CHUNK_STEPS))
    bounds = np.unique(np.r_[starts[np.minimum(cut, len(starts) - 1)], len(sess)])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        counts = counts + _chunk_pair_counts(sess[lo:hi], seq[lo:hi], distinct, n_items, window)
    counts.sort_indices()
    return counts


def _chunk_pair_counts(
    sess: np.ndarray, seq: np.ndarray, distinct: np.ndarray, n_items: int, window: int
) -> csr_matrix:
    """``_pair_counts`` of whole sessions (``sess``/``seq``: their steps, in order)."""
    unit = _unit(window)
    # Each kind of occurrence (direction, distance) gets a rank, heaviest first, so that sorting codes
    # ending in the rank puts a session's heaviest occurrence of a pair first.
    kinds = [(rev, d) for rev in (False, True) for d in range(1, window + 1)]
    kinds.sort(key=lambda kind: -_weight(unit, *kind))
    rank_of = {kind: r for r, kind in enumerate(kinds)}
    weight_of_rank = np.array([_weight(unit, *kind) for kind in kinds], dtype=np.int64)
    n_ranks = len(kinds)
    # Row of a step's (session, item) in ``distinct``: one number for "item a in session s".
    where = np.searchsorted(distinct, sess * n_items + seq)
    parts = []
    for d in range(1, window + 1):
        first = np.flatnonzero((sess[:-d] == sess[d:]) & (seq[:-d] != seq[d:]))
        second = first + d
        # forward: (session, item at i) -> item at i + d; reverse: (session, item at i + d) -> item at i
        parts.append((where[first] * n_items + seq[second]) * n_ranks + rank_of[(False, d)])
        parts.append((where[second] * n_items + seq[first]) * n_ranks + rank_of[(True, d)])
    code = np.concatenate(parts)
    del parts
    code.sort()
    pair_code = code // n_ranks
    heaviest = _run_starts(pair_code)  # one per (session, a, b)
    w = weight_of_rank[code[heaviest] % n_ranks]
    del code
    pair_code = pair_code[heaviest]
    a, b = distinct[pair_code // n_items] % n_items, pair_code % n_items
    counts = coo_matrix((w, (a, b)), shape=(n_items, n_items)).tocsr()
    counts.sum_duplicates()  # sums per pair over sessions and sorts each row's columns
    return counts


def _sessions_per_item(distinct: np.ndarray, n_items: int) -> np.ndarray:
    """``N``: number of sessions containing each item, int64 (n_items,)."""
    return np.bincount(distinct % n_items, minlength=n_items)


def _top_n(counts: csr_matrix, n_sessions: np.ndarray, unit: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` of each row of ``counts`` by score, ties by ascending column: int32 / float32 (n_items, <=n)."""
    n_items = counts.shape[0]
    rows = np.repeat(np.arange(n_items), np.diff(counts.indptr))
    cols = counts.indices.astype(np.int64)
    norm = np.sqrt(n_sessions[rows].astype(np.float64) * n_sessions[cols])
    score = (counts.data / unit / norm).astype(np.float32)
    width = min(n, int(np.diff(counts.indptr).max(initial=0)))
    ids = np.full((n_items, width), -1, dtype=np.int32)
    top = np.full((n_items, width), -np.inf, dtype=np.float32)
    # Entries are in (row, column) order; a stable sort by (row, -score) keeps equal scores by column.
    order = np.lexsort((-score, rows))
    rank = np.arange(len(order)) - counts.indptr[rows]
    keep = rank < width
    ids[rows[keep], rank[keep]] = cols[order][keep]
    top[rows[keep], rank[keep]] = score[order][keep]
    return ids, top

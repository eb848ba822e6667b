"""Candidates of one request and their request-time features: the one definition that the API ranks
with and that the re-ranker is trained on (``lab.train_reranker`` calls these very functions).

Candidate pool (indices into the loaded version's items):

* the user's precomputed top-N (batch ALS, already excluding what they saw in training);
* for each of the ``seed_items`` most recent distinct session items (the *seeds*): its precomputed
  ALS neighbours and its co-visitation neighbours (items that followed it in past sessions);
* for a user without a record only: the head of the popular list (of the requested category, if any).

Items seen in the session, unavailable items and items outside the requested category are removed.

Features of candidate c (float32 (n_candidates,) each; all known at request time). A z-score is taken
over the request's pool, so a weight means the same thing in every request; a constant or absent
signal gives 0::

    user_z          z( u . v_c )                       ALS affinity of the user (0 without a user record)
    session_z       z( cos(s, v_c) )                   s = recency-weighted mean of the unit vectors of
                                                       the session items, weight_j = event_weight_j *
                                                       0.5 ** (age_j / half_life), age 0 = newest event
    popularity_z    z( log(1 + popularity_c) )         recency-decayed popularity of the version
    covisit_z       z( covisit )
    covisit         sum over seeds s of decay_s * covis(s -> c)   decay_s = 0.5 ** (age_s / half_life),
                                                       age_s = events since the seed's latest event
    last_item_sim   cos(v_last, v_c)                   the newest session item only
    category_share  share of the session's weight (as in s) on items of c's category
    in_candidates   1 if c is in the user's precomputed list
    candidate_rank  1 / log2(2 + r), r = c's 0-based rank in that list (0 if absent)
    log_popularity  log(1 + popularity_c), not standardised (absolute popularity)

The session is read in plain Python (a few events); everything per candidate runs in two compiled
passes (numba, ``cache=True``): :func:`_pool_kernel` builds the pool and its raw features
(feature-major, ``Pool.raw``) with the z statistics, and :func:`_top_kernel` scores it with one
weight vector over ``Pool.features`` (the blend's, ``online.blend``, or the learned re-ranker's,
``online.reranker``) and picks the top k. ``Pool.features`` (the (n, n_features) matrix, columns in
``FEATURE_NAMES`` order) is built only when asked for (the lab trains on it). Reasons are worked out
for the served top-k only. The first call in a process compiles the kernels or loads them from
numba's cache (:func:`compile_kernels`, which the model holder runs before it serves a version).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from shared.schemas import EVENT_WEIGHTS

if TYPE_CHECKING:  # the model imports the re-ranker, which names these features
    from online.model import LoadedModel

log = logging.getLogger("hybridrec.online")

# Column order of Pool.features. The z columns standardise the raw column Z_OF names.
RAW_FEATURES = (
    "user_dot",
    "session_cos",
    "log_popularity",
    "covisit",
    "last_item_sim",
    "category_share",
    "candidate_rank",
    "in_candidates",
)
Z_OF = {"user_z": "user_dot", "session_z": "session_cos", "popularity_z": "log_popularity", "covisit_z": "covisit"}
FEATURE_NAMES: tuple[str, ...] = (*RAW_FEATURES, *Z_OF)
COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
FEATURES = frozenset(FEATURE_NAMES)  # what a re-ranker may name
_Z_SRC = np.array([COLUMN[src] for src in Z_OF.values()])
_Z_DST = np.array([COLUMN[name] for name in Z_OF])
# the compiled kernels below read the z columns' raw rows as the first len(Z_OF) and their z columns last
assert _Z_SRC.tolist() == list(range(len(Z_OF))) and _Z_DST.tolist() == list(
    range(len(RAW_FEATURES), len(FEATURE_NAMES))
)
_EMPTY = np.empty(0, dtype=np.int64)
_RANK_DISCOUNT = 1.0 / np.log2(2.0 + np.arange(2_000))  # candidate_rank of rank r (n_candidates <= 2,000)


@dataclass(frozen=True)
class Pool:
    """One request's candidates and their features. Per request, not shared.

    The raw features are kept feature-major with the mean and inverse standard deviation of the z
    columns; :meth:`score` folds the standardisation into the weights, so serving never materialises
    the (n, len(FEATURE_NAMES)) matrix, which :attr:`features` builds on first use (the lab trains on it).
    """

    model: LoadedModel
    user: UserRecord | None
    seeds: np.ndarray  # int64 (n_seeds,) recent distinct session items, newest first
    s_vec: np.ndarray | None  # float32 (f,) unit session vector, None without a known session item
    items: np.ndarray  # int64 (n,) candidate item indices, ascending
    blocked: np.ndarray  # bool (n_items,): items never served to this request (unavailable, or see build_pool)
    raw: np.ndarray  # float32 (len(RAW_FEATURES), n): the raw features, one row each
    z_mean: np.ndarray  # float64 (len(Z_OF),): mean over the pool of each z column's raw feature
    z_scale: np.ndarray  # float64 (len(Z_OF),): 1 / its standard deviation (0 for a constant one)
    history_reason: bool  # exclude_seen is off: history items are labelled seen_before

    @cached_property
    def features(self) -> np.ndarray:
        """float32 (n, len(FEATURE_NAMES)), columns in FEATURE_NAMES order."""
        out = np.empty((len(self.items), len(FEATURE_NAMES)), dtype=np.float32)
        out[:, : len(RAW_FEATURES)] = self.raw.T
        z = (self.raw[_Z_SRC].astype(np.float64) - self.z_mean[:, None]) * self.z_scale[:, None]
        out[:, _Z_DST] = z.T
        return out

    def score(self, weights: np.ndarray, bias: float = 0.0) -> np.ndarray:
        """float32 (n,): ``features @ weights + bias`` (``weights`` (len(FEATURE_NAMES),)), computed from
        the raw rows: a z column's weight w becomes w / std on its raw row and -w * mean / std in the bias."""
        w_z = weights[_Z_DST].astype(np.float64) * self.z_scale
        w_raw = weights[: len(RAW_FEATURES)].astype(np.float64)
        w_raw[_Z_SRC] += w_z
        return (w_raw @ self.raw + (bias - float(w_z @ self.z_mean))).astype(np.float32)

    def column(self, name: str) -> np.ndarray:
        """Feature ``name`` over the pool, float32 (n,)."""
        return self.raw[COLUMN[name]] if COLUMN[name] < len(RAW_FEATURES) else self.features[:, COLUMN[name]]

    def matrix(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """float32 (n, len(names)) of the named features."""
        return self.features[:, [COLUMN[n] for n in names]]

    def top(self, weights: np.ndarray, bias: float, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` best candidates by :meth:`score` (best first; ties by position, so by item index: as a
        stable sort), in one compiled pass: (rows int64 (<= k,) positions in ``items``, their float32
        scores, and for :meth:`reasons` each one's first position in its seeds' lists, -1 for none)."""
        return _top_kernel(
            self.raw, self.z_mean, self.z_scale, weights, bias, k, self.items, self.seeds, self.model.seed_lists
        )

    def reasons(self, rows: np.ndarray, match: np.ndarray | None = None) -> list[str]:
        """Why each chosen candidate (``rows``: int (k,) positions in ``items``) is in the pool: the
        newest seed whose ALS, then co-visitation, neighbours hold it, else the user's list
        (``for_you``), else ``popular``; ``seen_before`` for a history item when exclusion is off.
        ``match``: what :meth:`top` returned for these rows (worked out here when not given)."""
        model = self.model
        chosen = self.items[rows]
        if match is None:
            match = _first_match(chosen, self.seeds, model.seed_lists)
        width, item_ids = model.seed_lists.shape[1], model.bundle.item_ids
        mine = self.raw[_IN_CANDS, rows].tolist()
        out = []
        for i, at in enumerate(match.tolist()):
            if at >= 0:
                kind = "similar_to" if at % width < model.n_neighbours else "often_next_to"
                out.append(f"{kind}:{item_ids[int(self.seeds[at // width])]}")
            else:
                out.append("for_you" if mine[i] else "popular")
        if self.history_reason and self.user is not None and self.user.seen.size:
            seen = np.sort(self.user.seen)
            pos = np.minimum(np.searchsorted(seen, chosen), seen.size - 1)
            for i in np.flatnonzero(seen[pos] == chosen).tolist():
                out[i] = "seen_before"
        return out


def _session(
    model: LoadedModel, events: list[SessionEvent], half_life: float, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known session events as (item indices int64, weights float32) and the seeds: the ``limit`` most
    recent distinct known items, newest first, with their recency decay ``0.5 ** (age / half_life)``.
    Plain Python: a session is a few events, fewer than numpy's per-call cost would pay for."""
    index = model.bundle.item_index
    last = len(events) - 1
    idx: list[int] = []
    decay: list[float] = []
    weights: list[float] = []
    for pos, ev in enumerate(events):
        j = index.get(ev.item_id)
        if j is not None:
            d = 0.5 ** ((last - pos) / half_life)
            idx.append(j)
            decay.append(d)
            weights.append(EVENT_WEIGHTS.get(ev.event_type, 1.0) * d)
    if not idx:
        return _EMPTY, _NO_VECTOR, _EMPTY, _NO_VECTOR
    seeds: list[int] = []
    seed_decay: list[float] = []
    for i in range(len(idx) - 1, -1, -1):
        if idx[i] not in seeds:
            seeds.append(idx[i])
            seed_decay.append(decay[i])
            if len(seeds) == limit:
                break
    return (
        np.array(idx, dtype=np.int64),
        np.array(weights, dtype=np.float32),
        np.array(seeds, dtype=np.int64),
        np.array(seed_decay, dtype=np.float32),
    )


def session_vector(model: LoadedModel, events: list[SessionEvent], half_life: float) -> np.ndarray | None:
    """Recency-weighted mean of the unit vectors of the session's known items (f,), unit-normalised
    (None without a known item): the pool's ``s_vec``, by the same compiled function."""
    idx, weights, _, _ = _session(model, events, half_life, 1)
    vec = _unit_mean_kernel(model.unit_factors, idx, weights)
    return vec if vec.size else None


def build_pool(
    model: LoadedModel,
    features: RequestFeatures | None,
    category: str | None,
    seed_items: int,
    half_life: float,
    popular_pool: int,
    exclude_seen: bool = True,
) -> Pool:
    """The candidates of one request and their features (module docstring). ``features`` None: the store
    was not read.

    Never served: every item of the live session (its seen set, beyond the session list's cap) and,
    with ``exclude_seen``, every item of the user's training history (``user.seen``). Without
    ``exclude_seen`` (repeat-purchase domains) history items may come back, with reason ``seen_before``.

    The session is read in Python (a few events); everything per candidate is one compiled pass,
    :func:`_pool_kernel`.
    """
    user = features.user if features else None
    events = features.session if features else []
    session_idx, session_w, seeds, seed_decay = _session(model, events, half_life, seed_items)
    base = user.candidates if user is not None else model.popular(category)[:popular_pool]
    seen_ids = features.session_seen if features else ()
    index = model.bundle.item_index
    seen_idx = np.array([index[i] for i in seen_ids if i in index], dtype=np.int64) if seen_ids else _EMPTY
    history = user.seen if exclude_seen and user is not None else _EMPTY
    items, raw, z_mean, z_scale, blocked, s_vec = (
        _pool_kernel(  # one dtype and layout per argument: one compiled version
            _arg(base, np.int64),
            user is not None,
            seeds,
            seed_decay,
            model.seed_lists,
            model.seed_scores,
            model.unit_factors,
            model.norms,
            model.log_popularity,
            model.category_codes,
            model.n_categories,
            (model.category_index.get(category, -1) if category else _NO_FILTER),
            model.available,
            session_idx,
            seen_idx,
            _arg(history, np.int64),
            _arg(user.vector, np.float32) if user is not None else _NO_VECTOR,
            session_w,
            float(session_w.sum()),
            _rank_discount(len(base)),
        )
    )
    return Pool(
        model=model,
        user=user,
        seeds=seeds,
        s_vec=s_vec if s_vec.size else None,
        items=items,
        blocked=blocked,
        raw=raw,
        z_mean=z_mean,
        z_scale=z_scale,
        history_reason=not exclude_seen,
    )


def _arg(values: np.ndarray, dtype: type) -> np.ndarray:
    """``values`` as a writable C-contiguous array of ``dtype`` (numba compiles a kernel once per
    argument type, and read-only or strided arrays are types of their own)."""
    if values.dtype == dtype and values.flags.c_contiguous and values.flags.writeable:
        return values
    return np.array(values, dtype=dtype)


def compile_kernels(model: LoadedModel) -> None:
    """Run the compiled kernels once on ``model``'s arrays. The first run in a process compiles them (about
    10 s) or loads them from numba's cache (about 1 s, ``__pycache__`` or ``NUMBA_CACHE_DIR``), so the
    model holder calls this before it serves a version: no request waits for it."""
    first = not _pool_kernel.signatures  # nothing compiled or loaded in this process yet
    if first:
        log.info("loading the ranking's compiled kernels (the first start on a machine compiles them: ~10 s)")
    start = time.perf_counter()
    ids = model.bundle.item_ids
    events = [SessionEvent(item_id=ids[0], event_type="view", ts=0.0, event_id="warm-up")] if len(ids) else []
    pool = build_pool(model, RequestFeatures(None, events), None, 1, 1.0, 10)
    weights = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    pool.top(weights, 0.0, 1)  # a re-ranker's weights
    weights.flags.writeable = False
    pool.top(weights, 0.0, 1)  # the blend's (cached, read-only)
    if first:
        log.info("ranking kernels ready in %.1f s", time.perf_counter() - start)


_NO_FILTER = -2  # the category code of "no category filter" (-1: a category the version lacks)
_NO_VECTOR = np.empty(0, dtype=np.float32)
_USER_DOT, _SESSION_COS, _LOG_POP, _COVISIT, _LAST_SIM, _CAT_SHARE, _CAND_RANK, _IN_CANDS = range(len(RAW_FEATURES))


@njit(cache=True, nogil=True)
def _unit_mean_kernel(unit, idx, weights):
    """The unit mean of the rows ``idx`` of ``unit`` weighted by ``weights``: float32 (f,), empty when there
    is no row or the mean is 0."""
    vec = np.zeros(unit.shape[1], dtype=np.float32)
    for i in range(idx.shape[0]):
        for f in range(unit.shape[1]):
            vec[f] += weights[i] * unit[idx[i], f]
    norm = 0.0
    for f in range(vec.shape[0]):
        norm += np.float64(vec[f]) * vec[f]
    if idx.shape[0] == 0 or norm <= 0:
        return vec[:0]
    return vec / np.float32(np.sqrt(norm))


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _pool_kernel(
    base, with_user, seeds, seed_decay, seed_lists, seed_scores, unit, norms, log_pop, codes, n_categories,
    category, available, session_idx, seen_idx, history, user_vec, session_w, session_total, discount,
):  # fmt: skip
    """The pool of one request in one compiled pass (numba; about 20x fewer CPU cycles than the ~100 numpy
    calls it replaces on a 200-candidate pool, bench/README.md). Returns (items int64 (n,) ascending, raw
    float32 (len(RAW_FEATURES), n), z_mean, z_scale float64 (len(Z_OF),), blocked bool (n_items,), the unit
    session vector float32 (f,), empty without one).

    Candidates: ``base`` (the user's list or the popular head), then each seed's row of ``seed_lists``
    (ALS neighbours, then co-visitors; -1 pads), minus the blocked items (unavailable, in the session or
    its seen set, or in ``history``) and, with a ``category`` filter (not _NO_FILTER), items of other
    categories. Raw features as the module docstring defines them; sums run in float64 in list order."""
    s_vec = _unit_mean_kernel(unit, session_idx, session_w)
    blocked = ~available
    for j in session_idx:
        blocked[j] = True
    for j in seen_idx:
        blocked[j] = True
    for j in history:
        blocked[j] = True
    n_base, n_seeds, width = base.shape[0], seeds.shape[0], seed_lists.shape[1]
    # the distinct servable entries of the lists, marked in `blocked` while they are collected (a
    # flag per item of the version: no search), then sorted
    items = np.empty(n_base + n_seeds * width, dtype=np.int64)
    n = 0
    for pos in range(n_base + n_seeds * width):
        j = base[pos] if pos < n_base else seed_lists[seeds[(pos - n_base) // width], (pos - n_base) % width]
        if j >= 0 and not blocked[j] and (category == _NO_FILTER or codes[j] == category):
            blocked[j] = True
            items[n] = j
            n += 1
    items = np.sort(items[:n])
    at = np.empty(blocked.shape[0], dtype=np.int32)  # item -> its position in items (valid for items only)
    for p in range(n):
        blocked[items[p]] = False
        at[items[p]] = p
    raw = np.zeros((8, n), dtype=np.float32)
    z_mean, z_scale = np.zeros(4), np.zeros(4)
    if n == 0:
        return items, raw, z_mean, z_scale, blocked, s_vec
    has_user, has_session, has_seeds = user_vec.shape[0] > 0, s_vec.shape[0] > 0, n_seeds > 0
    queries = np.zeros((3, unit.shape[1]), dtype=np.float32)  # user, session, last item (zero if absent)
    if has_user:
        queries[0] = user_vec
    if has_session:
        queries[1] = s_vec
    if has_seeds:
        queries[2] = unit[seeds[0]]
    for p in range(n):  # the three dot products with each candidate's unit vector, in one pass over it
        j = items[p]
        du, ds, dl = np.float32(0.0), np.float32(0.0), np.float32(0.0)
        for f in range(unit.shape[1]):
            x = unit[j, f]
            du += x * queries[0, f]
            ds += x * queries[1, f]
            dl += x * queries[2, f]
        if has_user:
            raw[_USER_DOT, p] = du * norms[j]  # u . v_c = |v_c| (u . v_c / |v_c|)
        raw[_SESSION_COS, p] = ds
        raw[_LAST_SIM, p] = dl
        raw[_LOG_POP, p] = log_pop[j]
    if has_seeds:
        covisit = np.zeros(n)
        for s in range(n_seeds):
            for w in range(width):
                j = seed_lists[seeds[s], w]
                if (
                    seed_scores[seeds[s], w] != 0
                    and not blocked[j]
                    and (category == _NO_FILTER or codes[j] == category)
                ):
                    covisit[at[j]] += seed_scores[seeds[s], w] * seed_decay[s]  # float32 product, float64 sum
        for p in range(n):
            raw[_COVISIT, p] = covisit[p]
        if session_total > 0:
            per_category = np.zeros(n_categories)
            for i in range(session_idx.shape[0]):
                per_category[codes[session_idx[i]]] += session_w[i]
            for p in range(n):
                raw[_CAT_SHARE, p] = per_category[codes[items[p]]] / session_total
    if with_user:
        for r in range(n_base):
            j = base[r]
            if not blocked[j] and (category == _NO_FILTER or codes[j] == category):
                raw[_CAND_RANK, at[j]] = discount[r]
                raw[_IN_CANDS, at[j]] = 1.0
    for z in range(4):  # _Z_SRC: the first four raw rows
        total = 0.0
        for p in range(n):
            total += raw[z, p]
        mean = total / n
        var = 0.0
        for p in range(n):
            d = raw[z, p] - mean
            var += d * d
        std = np.sqrt(var / n)
        z_mean[z] = mean
        z_scale[z] = 1.0 / std if std >= 1e-9 else 0.0
    return items, raw, z_mean, z_scale, blocked, s_vec


def _rank_discount(n: int) -> np.ndarray:
    """1 / log2(2 + r) for ranks r = 0..n-1."""
    return _RANK_DISCOUNT[:n] if n <= _RANK_DISCOUNT.size else 1.0 / np.log2(2.0 + np.arange(n))


@njit(cache=True, nogil=True)
def _first_match(chosen, seeds, seed_lists):
    """Per chosen item, its first position in the seeds' rows of ``seed_lists`` read one after another
    (newest seed first; ALS neighbours, then co-visitors), -1 if none holds it."""
    width = seed_lists.shape[1]
    match = np.full(chosen.shape[0], -1, dtype=np.int64)
    for i in range(chosen.shape[0]):
        for at in range(seeds.shape[0] * width):
            if seed_lists[seeds[at // width], at % width] == chosen[i]:
                match[i] = at
                break
    return match


@njit(cache=True, nogil=True)
def _top_kernel(raw, z_mean, z_scale, weights, bias, k, items, seeds, seed_lists):
    """:meth:`Pool.score` folded as there (a z column's weight w: w / std on its raw row, -w * mean / std
    in the bias), the top ``k`` by an insertion into a k-slot list (stable), and :func:`_first_match`."""
    n_raw, n = raw.shape
    w = np.empty(n_raw)
    for i in range(n_raw):
        w[i] = weights[i]
    shift = 0.0
    for z in range(z_mean.shape[0]):  # _Z_SRC[z] == z, _Z_DST[z] == n_raw + z
        wz = np.float64(weights[n_raw + z]) * z_scale[z]
        w[z] += wz
        shift += wz * z_mean[z]
    shift = bias - shift
    scores = np.empty(n, dtype=np.float32)
    for p in range(n):
        total = 0.0
        for i in range(n_raw):
            total += w[i] * raw[i, p]
        scores[p] = total + shift
    m = min(k, n)
    top = np.empty(m, dtype=np.int64)
    filled = 0
    for p in range(n):
        if filled == m and not scores[p] > scores[top[m - 1]]:
            continue
        q = filled if filled < m else m - 1
        while q > 0 and scores[top[q - 1]] < scores[p]:
            top[q] = top[q - 1]
            q -= 1
        top[q] = p
        filled = min(filled + 1, m)
    return top, scores[top], _first_match(items[top], seeds, seed_lists)

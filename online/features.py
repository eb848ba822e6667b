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

All features of a request are computed in one vectorised pass into one float32 (n, n_features)
matrix (``Pool.features``, columns in ``FEATURE_NAMES`` order): one gather of the candidates' unit
vectors, one small matrix product for the three dot products, one pass for the four z-scores. The
blend (``online.blend``) and the learned re-ranker (``online.reranker``) are each one weight vector
over those columns. Reasons are worked out for the served top-k only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from shared.schemas import EVENT_WEIGHTS

if TYPE_CHECKING:  # the model imports the re-ranker, which names these features
    from online.model import LoadedModel

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
_EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class Pool:
    """One request's candidates and their features. Per request, not shared."""

    model: LoadedModel
    user: UserRecord | None
    seeds: np.ndarray  # int64 (n_seeds,) recent distinct session items, newest first
    s_vec: np.ndarray | None  # float32 (f,) unit session vector, None without a known session item
    items: np.ndarray  # int64 (n,) candidate item indices, ascending
    excluded: np.ndarray  # int64 sorted unique: items never served to this request (see build_pool)
    features: np.ndarray  # float32 (n, len(FEATURE_NAMES))
    history_reason: bool  # exclude_seen is off: history items are labelled seen_before

    def column(self, name: str) -> np.ndarray:
        """Feature ``name`` over the pool, float32 (n,)."""
        return self.features[:, COLUMN[name]]

    def matrix(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """float32 (n, len(names)) of the named features."""
        return self.features[:, [COLUMN[n] for n in names]]

    def reasons(self, rows: np.ndarray) -> list[str]:
        """Why each chosen candidate (``rows``: int (k,) positions in ``items``) is in the pool: the
        newest seed whose ALS, then co-visitation, neighbours hold it, else the user's list
        (``for_you``), else ``popular``; ``seen_before`` for a history item when exclusion is off.
        Vectorised over the k items."""
        bundle = self.model.bundle
        chosen = self.items[rows]
        out = ["popular"] * len(chosen)
        for i in np.flatnonzero(self.features[rows, COLUMN["in_candidates"]] > 0).tolist():
            out[i] = "for_you"
        if self.seeds.size:
            # columns: seed 0's ALS neighbours, seed 0's co-visitors, seed 1's ..., newest seed first
            als, covisit = _same_width(bundle.neighbours[self.seeds], bundle.covisit[self.seeds])
            lists = np.stack([als, covisit], axis=1).reshape(2 * self.seeds.size, -1)
            hits = (lists[None, :, :] == chosen[:, None, None]).any(axis=2)  # (k, 2 * n_seeds)
            first = hits.argmax(axis=1)
            for i in np.flatnonzero(hits.any(axis=1)).tolist():
                seed = bundle.item_ids[int(self.seeds[first[i] // 2])]
                out[i] = f"{'similar_to' if first[i] % 2 == 0 else 'often_next_to'}:{seed}"
        if self.history_reason and self.user is not None and self.user.seen.size:
            seen = np.sort(self.user.seen)
            pos = np.minimum(np.searchsorted(seen, chosen), seen.size - 1)
            for i in np.flatnonzero(seen[pos] == chosen).tolist():
                out[i] = "seen_before"
        return out


def _same_width(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (s, m_a) and (s, m_b) index arrays padded with -1 to the same width, so they stack."""
    m = max(a.shape[1], b.shape[1])
    return (
        np.pad(a, ((0, 0), (0, m - a.shape[1])), constant_values=-1),
        np.pad(b, ((0, 0), (0, m - b.shape[1])), constant_values=-1),
    )


def z_scores(x: np.ndarray) -> np.ndarray:
    """Column-wise z-scores of float64 (n, m); a constant (or empty) column gives zeros. Written out
    (sum, not ``mean``/``std``): numpy's reductions cost more in call overhead than in arithmetic here."""
    n = x.shape[0]
    if n == 0:
        return np.zeros(x.shape, dtype=np.float32)
    d = x - x.sum(axis=0) / n
    std = np.sqrt(np.einsum("ij,ij->j", d, d) / n)
    ok = std >= 1e-9
    return (d * np.where(ok, 1.0 / np.where(ok, std, 1.0), 0.0)).astype(np.float32)


def _session(
    model: LoadedModel, events: list[SessionEvent], half_life: float, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known session events as (item indices int64, weights float32) and the seeds: the ``limit`` most
    recent distinct known items, newest first, with their recency decay ``0.5 ** (age / half_life)``."""
    index = model.bundle.item_index
    n = len(events)
    idx: list[int] = []
    ages: list[int] = []
    kinds: list[float] = []
    for pos, ev in enumerate(events):
        j = index.get(ev.item_id)
        if j is not None:
            idx.append(j)
            ages.append(n - 1 - pos)
            kinds.append(EVENT_WEIGHTS.get(ev.event_type, 1.0))
    if not idx:
        return _EMPTY, np.empty(0, np.float32), _EMPTY, np.empty(0, np.float32)
    decay = 0.5 ** (np.asarray(ages, dtype=np.float64) / half_life)
    weights = (np.asarray(kinds) * decay).astype(np.float32)
    seeds: list[int] = []
    seed_decay: list[float] = []
    for j, d in zip(reversed(idx), reversed(decay.tolist()), strict=True):
        if j not in seeds:
            seeds.append(j)
            seed_decay.append(d)
            if len(seeds) == limit:
                break
    return (
        np.asarray(idx, dtype=np.int64),
        weights,
        np.asarray(seeds, dtype=np.int64),
        np.asarray(seed_decay, np.float32),
    )


def session_vector(model: LoadedModel, events: list[SessionEvent], half_life: float) -> np.ndarray | None:
    """Recency-weighted mean of the unit vectors of the session's known items (f,), unit-normalised."""
    idx, weights, _, _ = _session(model, events, half_life, 1)
    return _unit_mean(model, idx, weights)


def _unit_mean(model: LoadedModel, idx: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    if idx.size == 0:
        return None
    vec = weights @ model.unit_factors[idx]
    norm = float(np.linalg.norm(vec))
    return (vec / norm).astype(np.float32) if norm > 0 else None


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
    """
    bundle = model.bundle
    user = features.user if features else None
    events = features.session if features else []
    session_idx, session_w, seeds, seed_decay = _session(model, events, half_life, seed_items)

    # the user's list and the popular list hold each item once: only the seeds' lists need de-duplicating
    base = user.candidates if user is not None else model.popular(category)[:popular_pool]
    if seeds.size:
        items = np.concatenate([base, bundle.neighbours[seeds].ravel(), bundle.covisit[seeds].ravel()])
        items = np.unique(items.astype(np.int64))
        items = items[items >= 0]
    else:
        items = np.sort(base.astype(np.int64))

    index = bundle.item_index
    seen_ids = features.session_seen if features else ()
    excluded_parts = [session_idx] if session_idx.size else []
    if seen_ids:
        excluded_parts.append(np.fromiter((index[i] for i in seen_ids if i in index), dtype=np.int64))
    if exclude_seen and user is not None and user.seen.size:
        excluded_parts.append(user.seen.astype(np.int64))
    excluded = np.unique(np.concatenate(excluded_parts)) if excluded_parts else _EMPTY
    keep = model.available[items]
    if category:
        keep &= bundle.categories[items] == category
    if excluded.size:
        pos = np.minimum(np.searchsorted(excluded, items), excluded.size - 1)
        keep &= excluded[pos] != items
    items = items[keep]
    s_vec = _unit_mean(model, session_idx, session_w)
    return Pool(
        model=model,
        user=user,
        seeds=seeds,
        s_vec=s_vec,
        items=items,
        excluded=excluded,
        features=_features(model, user, items, s_vec, seeds, seed_decay, session_idx, session_w),
        history_reason=not exclude_seen,
    )


def _features(
    model: LoadedModel,
    user: UserRecord | None,
    items: np.ndarray,
    s_vec: np.ndarray | None,
    seeds: np.ndarray,
    seed_decay: np.ndarray,
    session_idx: np.ndarray,
    session_w: np.ndarray,
) -> np.ndarray:
    """float32 (n, len(FEATURE_NAMES)): every feature of the module docstring in one pass."""
    n = len(items)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    unit = model.unit_factors[items]  # (n, f): the one gather of item vectors
    queries, cols = [], []
    if user is not None:
        queries.append(user.vector)
        cols.append(COLUMN["user_dot"])
    if s_vec is not None:
        queries.append(s_vec)
        cols.append(COLUMN["session_cos"])
    if seeds.size:
        queries.append(model.unit_factors[seeds[0]])
        cols.append(COLUMN["last_item_sim"])
    if queries:
        out[:, cols] = unit @ np.stack(queries, axis=1)
        if user is not None:
            out[:, COLUMN["user_dot"]] *= model.norms[items]  # u . v_c = |v_c| (u . v_c / |v_c|)
    out[:, COLUMN["log_popularity"]] = model.log_popularity[items]
    if seeds.size:
        out[:, COLUMN["covisit"]] = _covisit(model, items, seeds, seed_decay)
        total = float(session_w.sum())
        if total > 0:
            codes = model.category_codes
            per_category = np.bincount(codes[session_idx], weights=session_w, minlength=model.n_categories)
            out[:, COLUMN["category_share"]] = per_category[codes[items]] / total
    if user is not None and user.candidates.size:
        cands = user.candidates.astype(np.int64)
        pos = np.minimum(np.searchsorted(items, cands), n - 1)
        hit = items[pos] == cands
        out[pos[hit], COLUMN["candidate_rank"]] = 1.0 / np.log2(2.0 + np.flatnonzero(hit))
        out[pos[hit], COLUMN["in_candidates"]] = 1.0
    out[:, _Z_DST] = z_scores(out[:, _Z_SRC].astype(np.float64))
    return out


def _covisit(model: LoadedModel, items: np.ndarray, seeds: np.ndarray, seed_decay: np.ndarray) -> np.ndarray:
    """float32 (n,): sum over seeds s of decay_s * covis(s -> c)."""
    bundle = model.bundle
    out = np.zeros(len(items), dtype=np.float32)
    rows = bundle.covisit[seeds]  # (n_seeds, m)
    valid = rows >= 0
    targets = rows[valid].astype(np.int64)
    vals = (bundle.covisit_scores[seeds] * seed_decay[:, None])[valid]
    pos = np.minimum(np.searchsorted(items, targets), len(items) - 1)
    hit = items[pos] == targets
    np.add.at(out, pos[hit], vals[hit])
    return out

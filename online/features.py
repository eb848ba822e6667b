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

``blend_score`` is the hand-set linear blend of the z features; ``online.reranker`` scores any subset
of these features with learned weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from shared.schemas import EVENT_WEIGHTS

if TYPE_CHECKING:  # the model imports the re-ranker, which computes these features
    from online.model import LoadedModel


@dataclass
class Pool:
    """One request's candidates plus what its features are computed from. Per request, not shared."""

    model: LoadedModel
    user: UserRecord | None
    events: list[SessionEvent]
    half_life: float
    seeds: np.ndarray  # int64 (n_seeds,) recent distinct session items, newest first
    seed_decay: np.ndarray  # float32 (n_seeds,)
    session_idx: np.ndarray  # int64 (n_known_events,) item of each session event with a known item
    session_w: np.ndarray  # float32 (n_known_events,) its weight in the session vector
    s_vec: np.ndarray | None  # float32 (f,) unit session vector, None without a known session item
    items: np.ndarray  # int64 (n,) candidate item indices, ascending
    excluded: np.ndarray  # int64 sorted unique: items never served to this request (see build_pool)
    reasons: dict[int, str]
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """Feature ``name`` over the pool, float32 (n,), computed once per request."""
        got = self._cache.get(name)
        if got is None:
            got = FEATURES[name](self).astype(np.float32, copy=False)
            self._cache[name] = got
        return got

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """float32 (n, len(names)) of the named features."""
        if not names:
            return np.zeros((len(self.items), 0), dtype=np.float32)
        return np.stack([self.column(n) for n in names], axis=1)


def z(x: np.ndarray) -> np.ndarray:
    std = float(x.std()) if x.size else 0.0
    if std < 1e-9:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - x.mean()) / std).astype(np.float32)


def _session_weights(model: LoadedModel, events: list[SessionEvent], half_life: float) -> tuple[np.ndarray, np.ndarray]:
    index = model.bundle.item_index
    idx, weights = [], []
    n = len(events)
    for pos, ev in enumerate(events):
        j = index.get(ev.item_id)
        if j is None:
            continue
        idx.append(j)
        weights.append(EVENT_WEIGHTS.get(ev.event_type, 1.0) * 0.5 ** ((n - 1 - pos) / half_life))
    return np.asarray(idx, dtype=np.int64), np.asarray(weights, dtype=np.float32)


def session_vector(model: LoadedModel, events: list[SessionEvent], half_life: float) -> np.ndarray | None:
    """Recency-weighted mean of the unit vectors of the session's known items (f,), unit-normalised."""
    idx, weights = _session_weights(model, events, half_life)
    return _unit_mean(model, idx, weights)


def _unit_mean(model: LoadedModel, idx: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    if idx.size == 0:
        return None
    vec = weights @ model.unit_factors[idx]
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else None


def _seeds(
    model: LoadedModel, events: list[SessionEvent], limit: int, half_life: float
) -> tuple[list[int], list[float]]:
    """The ``limit`` most recent distinct known items, newest first, and their recency decay."""
    index = model.bundle.item_index
    out: list[int] = []
    decay: list[float] = []
    n = len(events)
    for pos in range(n - 1, -1, -1):
        j = index.get(events[pos].item_id)
        if j is not None and j not in out:
            out.append(j)
            decay.append(0.5 ** ((n - 1 - pos) / half_life))
            if len(out) == limit:
                break
    return out, decay


def build_pool(
    model: LoadedModel,
    features: RequestFeatures | None,
    category: str | None,
    seed_items: int,
    half_life: float,
    popular_pool: int,
    exclude_seen: bool = True,
) -> Pool:
    """The candidates of one request (see the module docstring). ``features`` None: the store was not read.

    Never served: every item of the live session (its seen set, beyond the session list's cap) and,
    with ``exclude_seen``, every item of the user's training history (``user.seen``). Without
    ``exclude_seen`` (repeat-purchase domains) history items may come back, with reason ``seen_before``.
    """
    bundle = model.bundle
    user = features.user if features else None
    events = features.session if features else []
    seeds, decay = _seeds(model, events, seed_items, half_life)
    session_idx, session_w = _session_weights(model, events, half_life) if seeds else (np.empty(0, np.int64), None)

    pools: list[np.ndarray] = []
    reasons: dict[int, str] = {}
    if user is not None:
        pools.append(user.candidates)
    for seed in seeds:
        for rows, label in ((bundle.neighbours, "similar_to"), (bundle.covisit, "often_next_to")):
            nbrs = rows[seed]
            nbrs = nbrs[nbrs >= 0]
            pools.append(nbrs)
            for j in nbrs.tolist():
                reasons.setdefault(j, f"{label}:{bundle.item_ids[seed]}")
    if user is not None:
        for j in user.candidates.tolist():
            reasons.setdefault(j, "for_you")
    else:
        # Without a user record the popular head joins the pool. For a known user it does not: the
        # precomputed list already holds the best unseen items, and popular items missing from it
        # are mostly ones the user has already interacted with.
        pools.append(model.popular(category)[:popular_pool])
    items = np.unique(np.concatenate(pools).astype(np.int64)) if pools else np.empty(0, dtype=np.int64)

    index = bundle.item_index
    session_seen = [index[i] for i in (features.session_seen if features else ()) if i in index]
    parts = [np.asarray(seeds, dtype=np.int64), session_idx, np.asarray(session_seen, dtype=np.int64)]
    history = user.seen.astype(np.int64) if user is not None else np.empty(0, dtype=np.int64)
    if exclude_seen:
        parts.append(history)
    else:
        for j in np.intersect1d(items, history).tolist():
            reasons[j] = "seen_before"
    excluded = np.unique(np.concatenate(parts))
    keep = bundle.available[items]
    if category:
        keep &= bundle.categories[items] == category
    if excluded.size:
        keep &= ~np.isin(items, excluded, assume_unique=True)
    weights = session_w if session_w is not None else np.empty(0, np.float32)
    return Pool(
        model=model,
        user=user,
        events=events,
        half_life=half_life,
        seeds=np.asarray(seeds, dtype=np.int64),
        seed_decay=np.asarray(decay, dtype=np.float32),
        session_idx=session_idx,
        session_w=weights,
        s_vec=_unit_mean(model, session_idx, weights),
        items=items[keep],
        excluded=excluded,
        reasons=reasons,
    )


# --- feature definitions (each: Pool -> (n,) array) ---------------------------------------------


def _user_dot(p: Pool) -> np.ndarray:
    if p.user is None:
        return np.zeros(len(p.items), dtype=np.float32)
    return p.model.bundle.item_factors[p.items] @ p.user.vector


def _session_cos(p: Pool) -> np.ndarray:
    if p.s_vec is None:
        return np.zeros(len(p.items), dtype=np.float32)
    return p.model.unit_factors[p.items] @ p.s_vec


def _covisit(p: Pool) -> np.ndarray:
    out = np.zeros(len(p.items), dtype=np.float32)
    if p.seeds.size == 0 or p.items.size == 0:
        return out
    bundle = p.model.bundle
    rows = bundle.covisit[p.seeds]  # (n_seeds, m)
    vals = bundle.covisit_scores[p.seeds] * p.seed_decay[:, None]
    valid = rows >= 0
    targets, vals = rows[valid].astype(np.int64), vals[valid]
    pos = np.minimum(np.searchsorted(p.items, targets), len(p.items) - 1)
    hit = p.items[pos] == targets
    np.add.at(out, pos[hit], vals[hit])
    return out


def _last_item_sim(p: Pool) -> np.ndarray:
    if p.seeds.size == 0:
        return np.zeros(len(p.items), dtype=np.float32)
    return p.model.unit_factors[p.items] @ p.model.unit_factors[p.seeds[0]]


def _category_share(p: Pool) -> np.ndarray:
    total = float(p.session_w.sum())
    if total <= 0:
        return np.zeros(len(p.items), dtype=np.float32)
    codes = p.model.category_codes
    per_category = np.bincount(codes[p.session_idx], weights=p.session_w, minlength=int(codes.max()) + 1)
    return (per_category[codes[p.items]] / total).astype(np.float32)


def _candidate_rank(p: Pool) -> np.ndarray:
    out = np.zeros(len(p.items), dtype=np.float32)
    if p.user is None or p.user.candidates.size == 0 or p.items.size == 0:
        return out
    cands = p.user.candidates.astype(np.int64)
    pos = np.minimum(np.searchsorted(p.items, cands), len(p.items) - 1)
    hit = p.items[pos] == cands
    out[pos[hit]] = 1.0 / np.log2(2.0 + np.flatnonzero(hit))
    return out


FEATURES: dict[str, Callable[[Pool], np.ndarray]] = {
    "user_z": lambda p: z(p.column("user_dot")),
    "session_z": lambda p: z(p.column("session_cos")),
    "popularity_z": lambda p: z(p.column("log_popularity")),
    "covisit_z": lambda p: z(p.column("covisit")),
    "covisit": _covisit,
    "last_item_sim": _last_item_sim,
    "category_share": _category_share,
    "in_candidates": lambda p: (p.column("candidate_rank") > 0).astype(np.float32),
    "candidate_rank": _candidate_rank,
    "log_popularity": lambda p: p.model.log_popularity[p.items],
    "user_dot": _user_dot,
    "session_cos": _session_cos,
}

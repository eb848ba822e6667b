"""Online ranking: precomputed candidates + the live session, blended in real time.

Candidate pool for one request (indices into the loaded version's items):

* the user's precomputed top-N (batch ALS, already excluding what they saw in training);
* neighbours of the ``seed_items`` most recent distinct session items (precomputed item-item);
* for a user without a record only: the head of the popular list (of the requested category, if any).

Each candidate c is scored by a documented blend of three signals, each standardised over the pool
(z-score; a constant signal contributes 0) so that the weights are comparable across requests::

    score(c) = w_user    * z( u · v_c )                  user-vector affinity (ALS dot product)
             + w_session * z( cos(s, v_c) )              s = recency-weighted mean of the unit
                                                         vectors of the session's items,
                                                         weight_j = event_weight_j * 0.5 ** (age_j / half_life)
                                                         with age_j = 0 for the newest event
             + w_pop     * z( log(1 + popularity_c) )    recency-decayed popularity

A signal that is absent (unknown user, no session) has weight 0. Items already seen in the session,
unavailable items and items outside the requested category are removed; if fewer than ``k`` remain,
the list is filled from the popular list of the requested category (popular overall when no
category is asked for; a category filter is never broken to fill).

Strategy names (the response says which path served it):
``hybrid`` (known user + session), ``precomputed`` (known user, no session), ``session`` (unknown
user, session with known items), ``popular`` (neither: cold start or degraded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent
from online.model import LoadedModel
from shared.config import Settings
from shared.schemas import EVENT_WEIGHTS

# Blend fields a version's meta may set (``meta["params"]["blend"]``, written by batch from a tuning run).
TUNABLE_FIELDS = ("weight_user", "weight_session", "weight_popularity", "session_half_life")


@dataclass(frozen=True)
class BlendParams:
    weight_user: float = 1.0
    weight_session: float = 1.0
    weight_popularity: float = 0.2
    session_half_life: float = 3.0
    seed_items: int = 5
    popular_pool: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> BlendParams:
        """The configured blend: what the API serves a version whose meta carries no tuned blend."""
        return cls(
            weight_user=settings.weight_user,
            weight_session=settings.weight_session,
            weight_popularity=settings.weight_popularity,
            session_half_life=settings.session_half_life_events,
            seed_items=settings.session_seed_items,
        )

    def for_version(self, meta: Mapping[str, Any]) -> BlendParams:
        """These params with the version's tuned ``meta["params"]["blend"]`` fields, when it has any.

        The blend travels with the model it was tuned for; other keys are ignored, and a version
        without a blend (older runs, no tuning) keeps the configured values.
        """
        blend = (meta.get("params") or {}).get("blend") or {}
        tuned = {name: float(blend[name]) for name in TUNABLE_FIELDS if name in blend}
        return replace(self, **tuned) if tuned else self


@dataclass(frozen=True)
class Ranked:
    item_ids: list[str]
    scores: list[float]
    reasons: list[str]
    strategy: str
    flags: list[str] = field(default_factory=list)


def _z(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    if x.size == 0 or std < 1e-9:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - x.mean()) / std).astype(np.float32)


def session_vector(model: LoadedModel, events: list[SessionEvent], half_life: float) -> np.ndarray | None:
    """Recency-weighted mean of the unit vectors of the session's known items (f,), unit-normalised."""
    idx, weights = [], []
    n = len(events)
    for pos, ev in enumerate(events):
        j = model.bundle.item_index.get(ev.item_id)
        if j is None:
            continue
        age = n - 1 - pos
        idx.append(j)
        weights.append(EVENT_WEIGHTS.get(ev.event_type, 1.0) * 0.5 ** (age / half_life))
    if not idx:
        return None
    vec = np.asarray(weights, dtype=np.float32) @ model.unit_factors[np.asarray(idx)]
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else None


def _recent_distinct_items(model: LoadedModel, events: list[SessionEvent], limit: int) -> list[int]:
    out: list[int] = []
    for ev in reversed(events):
        j = model.bundle.item_index.get(ev.item_id)
        if j is not None and j not in out:
            out.append(j)
            if len(out) == limit:
                break
    return out


def rank(
    model: LoadedModel,
    features: RequestFeatures | None,
    k: int,
    category: str | None,
    params: BlendParams,
) -> Ranked:
    """Top-``k`` items for one request. ``features`` None means the store could not be read."""
    bundle = model.bundle
    user = features.user if features else None
    events = features.session if features else []
    seeds = _recent_distinct_items(model, events, params.seed_items)
    s_vec = session_vector(model, events, params.session_half_life) if seeds else None

    pools: list[np.ndarray] = []
    reasons: dict[int, str] = {}
    if user is not None:
        pools.append(user.candidates)
    for seed in seeds:
        nbrs = bundle.neighbours[seed]
        nbrs = nbrs[nbrs >= 0]
        pools.append(nbrs)
        for j in nbrs.tolist():
            reasons.setdefault(j, f"similar_to:{bundle.item_ids[seed]}")
    if user is not None:
        for j in user.candidates.tolist():
            reasons.setdefault(j, "for_you")
    if user is None:
        # Without a user record the popular head joins the pool. For a known user it does not: the
        # precomputed list already holds the best unseen items, and popular items missing from it
        # are mostly ones the user has already interacted with.
        pools.append(model.popular(category)[: params.popular_pool])
    pool = np.unique(np.concatenate(pools).astype(np.int64)) if pools else np.empty(0, dtype=np.int64)

    excluded = set(seeds) | {bundle.item_index[e.item_id] for e in events if e.item_id in bundle.item_index}
    keep = bundle.available[pool]
    if category:
        keep &= bundle.categories[pool] == category
    if excluded:
        keep &= ~np.isin(pool, np.fromiter(excluded, dtype=np.int64))
    pool = pool[keep]

    score = params.weight_popularity * _z(model.log_popularity[pool])
    if user is not None and params.weight_user > 0:
        score += params.weight_user * _z(bundle.item_factors[pool] @ user.vector)
    if s_vec is not None and params.weight_session > 0:
        score += params.weight_session * _z(model.unit_factors[pool] @ s_vec)
    order = np.lexsort((pool, -score))[:k]  # best score first, ties by index: deterministic
    chosen = pool[order].tolist()
    scores = score[order].tolist()
    why = [reasons.get(j, "popular") for j in chosen]

    if user is not None and s_vec is not None:
        strategy = "hybrid"
    elif user is not None:
        strategy = "precomputed"
    elif s_vec is not None:
        strategy = "session"
    else:
        strategy = "popular"
    flags = [] if features is not None else ["store_unavailable"]
    if len(chosen) < k:
        _fill_popular(model, category, k, chosen, scores, why, excluded)
        if len(chosen) < k:
            flags.append("short")
    return Ranked([bundle.item_ids[j] for j in chosen], [round(s, 6) for s in scores], why, strategy, flags)


def _fill_popular(
    model: LoadedModel,
    category: str | None,
    k: int,
    chosen: list[int],
    scores: list[float],
    why: list[str],
    excluded: set[int],
) -> None:
    """Append popular items (of the category, when one is requested) until there are k."""
    taken = set(chosen) | excluded
    reason = "popular_in_category" if category else "popular"
    floor = min(scores, default=0.0)
    for j in model.popular(category).tolist():
        if len(chosen) >= k:
            return
        if j in taken or not model.bundle.available[j]:
            continue
        taken.add(j)
        chosen.append(j)
        floor -= 1e-3
        scores.append(floor)
        why.append(reason)


def similar_items(model: LoadedModel, item_id: str, k: int, kind: str = "als") -> tuple[list[str], list[float]]:
    """Precomputed neighbours of ``item_id`` (KeyError if unknown), available ones only.

    ``kind``: ``"als"`` (cosine of item factors) or ``"covisit"`` (co-visitation within sessions,
    see batch.covisit); ValueError for anything else.
    """
    bundle = model.bundle
    if kind == "als":
        ids, values = bundle.neighbours, bundle.neighbour_scores
    elif kind == "covisit":
        ids, values = bundle.covisit, bundle.covisit_scores
    else:
        raise ValueError(f"unknown kind of similar items: {kind!r}")
    j = bundle.item_index[item_id]
    nbrs, sims = ids[j], values[j]
    ok = (nbrs >= 0) & bundle.available[np.maximum(nbrs, 0)]
    nbrs, sims = nbrs[ok][:k], sims[ok][:k]
    return [bundle.item_ids[i] for i in nbrs.tolist()], [round(float(s), 6) for s in sims]

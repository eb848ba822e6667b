"""Online ranking: route each request to the cheapest tier that serves it, then score its candidates.

Candidates and their features come from ``online.features`` (the pool: precomputed list, ALS and
co-visitation neighbours of the session's recent items, popular head for users without a record).
The tiers are one ordered chain, :data:`TIERS`; the first whose condition holds serves the request
and the response's ``strategy`` names it:

``reranked``     a live session and a learned re-ranker (``online.reranker``) that the caller passes
  in: the version has one, it is enabled and the request is within its latency budget (the caller,
  ``online.service``, decides). It scores the pool with every request-time feature;
``hybrid`` / ``session``  a live session, with / without a user record: the blend (``online.blend``);
``precomputed``  a known user without a session: their batch list, by the precomputed tier's blend;
``popular``      no user record and no known session item (cold start), or the store was not read.

Items seen in the session (all of them, not only the session list's newest), items of the user's
training history (unless ``exclude_seen`` is off), unavailable items and items outside the requested
category are never served; if fewer than ``k`` remain, the list is filled from the popular list of the requested
category (popular overall when no category is asked for; a category filter is never broken to fill)
and flagged ``short`` if still short. Degradation flags (store, unknown user, budget) are the
service's: ``rank`` only ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from feature_store.base import RequestFeatures
from online.blend import BlendParams, blend_weights, precomputed_weights
from online.features import Pool, build_pool, session_vector
from online.model import LoadedModel
from online.reranker import LinearReranker

__all__ = ["TIERS", "Ranked", "Tier", "rank", "session_vector", "similar_items"]


@dataclass(frozen=True)
class Ranked:
    item_ids: list[str]
    scores: list[float]
    reasons: list[str]
    strategy: str
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tier:
    """One routing tier: when it serves a request (given the pool and the re-ranker on offer) and how it
    scores: its weights over ``Pool.features`` and its bias (a linear score, :meth:`Pool.top`)."""

    name: str
    serves: Callable[[Pool, LinearReranker | None], bool]
    weights: Callable[[Pool, BlendParams, LinearReranker | None], tuple[np.ndarray, float]]


def _has_session(p: Pool) -> bool:
    return p.s_vec is not None


TIERS: tuple[Tier, ...] = (
    Tier("reranked", lambda p, r: _has_session(p) and r is not None, lambda p, _, r: r.weights_for(p)),  # type: ignore[union-attr]
    Tier("hybrid", lambda p, _: _has_session(p) and p.user is not None, lambda p, w, _: blend_weights(p, w)),
    Tier("session", lambda p, _: _has_session(p), lambda p, w, _: blend_weights(p, w)),
    Tier("precomputed", lambda p, _: p.user is not None, lambda p, w, _: precomputed_weights(p, w)),
    Tier("popular", lambda p, _: True, lambda p, w, _: blend_weights(p, w)),
)


def rank(
    model: LoadedModel,
    features: RequestFeatures | None,
    k: int,
    category: str | None,
    params: BlendParams,
    reranker: LinearReranker | None = None,
) -> Ranked:
    """Top-``k`` items for one request. ``features`` None means the store could not be read.

    ``reranker``: offered to the ``reranked`` tier (None: the blend serves session requests).
    """
    pool = build_pool(
        model, features, category, params.seed_items, params.session_half_life, params.popular_pool, params.exclude_seen
    )
    tier = next(t for t in TIERS if t.serves(pool, reranker))
    order, top_scores, match = pool.top(*tier.weights(pool, params, reranker), k)
    chosen = pool.items[order].tolist()
    scores = top_scores.tolist()
    why = pool.reasons(order, match)
    flags = []
    if len(chosen) < k:
        _fill_popular(model, category, k, chosen, scores, why, pool.blocked)
        if len(chosen) < k:
            flags.append("short")
    bundle = model.bundle
    return Ranked([bundle.item_ids[j] for j in chosen], [round(s, 6) for s in scores], why, tier.name, flags)


def _fill_popular(
    model: LoadedModel,
    category: str | None,
    k: int,
    chosen: list[int],
    scores: list[float],
    why: list[str],
    blocked: np.ndarray,
) -> None:
    """Append popular items (of the category, when one is requested) until there are k; never a
    ``blocked`` (unavailable or excluded) or already chosen item."""
    popular = model.popular(category)
    ok = ~blocked[popular] & ~np.isin(popular, chosen)
    reason = "popular_in_category" if category else "popular"
    floor = min(scores, default=0.0)
    for j in popular[ok][: k - len(chosen)].tolist():
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

"""Online ranking: route each request to the cheapest tier that serves it, then score its candidates.

Candidates and their features come from ``online.features`` (the pool: precomputed list, ALS and
co-visitation neighbours of the session's recent items, popular head for users without a record).
Tiers, cheapest first (the response's ``strategy`` names the one that served):

``popular``      no user record and no known session item (cold start), or the store was not read;
``precomputed``  a known user without a session: their batch list, ordered by
  ``user_z + precomputed_weight_popularity * popularity_z`` (this tier's own weights);
``hybrid`` / ``session``  a live session (with / without a user record), scored by the blend::

    score(c) = w_user * user_z + w_session * session_z + w_pop * popularity_z + w_covisit * covisit_z

  (feature definitions in ``online.features``; a signal that is absent has weight 0);
``reranked``     a live session and a learned re-ranker (``online.reranker``) that the caller passes
  in, i.e. the version has one, it is enabled and the request is within its latency budget
  (``online.service`` decides). It scores the same pool with more features.

Items already seen in the session, unavailable items and items outside the requested category are
never served; if fewer than ``k`` remain, the list is filled from the popular list of the requested
category (popular overall when no category is asked for; a category filter is never broken to fill).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from feature_store.base import RequestFeatures
from online.features import Pool, build_pool, session_vector
from online.model import LoadedModel
from online.reranker import LinearReranker
from shared.config import Settings
from shared.schemas import BLEND_FIELDS

__all__ = ["BlendParams", "Ranked", "blend_score", "rank", "session_vector", "similar_items"]


@dataclass(frozen=True)
class BlendParams:
    weight_user: float = 1.0
    weight_session: float = 1.0
    weight_popularity: float = 0.2
    weight_covisit: float = 0.0
    session_half_life: float = 3.0
    precomputed_weight_popularity: float = 0.2  # the precomputed tier's own blend: user_z + this * popularity_z
    seed_items: int = 5
    popular_pool: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> BlendParams:
        """The configured blend: what the API serves a version whose meta carries no tuned blend."""
        return cls(
            weight_user=settings.weight_user,
            weight_session=settings.weight_session,
            weight_popularity=settings.weight_popularity,
            weight_covisit=settings.weight_covisit,
            precomputed_weight_popularity=settings.precomputed_weight_popularity,
            session_half_life=settings.session_half_life_events,
            seed_items=settings.session_seed_items,
        )

    def for_version(self, meta: Mapping[str, Any]) -> BlendParams:
        """These params with the version's tuned ``meta["params"]["blend"]`` fields, when it has any.

        The blend travels with the model it was tuned for; other keys are ignored, and a version
        without a blend (older runs, no tuning) keeps the configured values. A field the tuning file
        does not name (e.g. ``weight_covisit`` from a tuning run older than that feature) keeps its
        configured value too.
        """
        blend = (meta.get("params") or {}).get("blend") or {}
        tuned = {name: float(blend[name]) for name in BLEND_FIELDS if name in blend}
        return replace(self, **tuned) if tuned else self


@dataclass(frozen=True)
class Ranked:
    item_ids: list[str]
    scores: list[float]
    reasons: list[str]
    strategy: str
    flags: list[str] = field(default_factory=list)


def blend_score(pool: Pool, params: BlendParams) -> np.ndarray:
    """float32 (n,) hand-set blend of the pool's z-scored signals (module docstring).

    The precomputed tier (a user record, no session) has its own weights, ``user_z +
    precomputed_weight_popularity * popularity_z``: weights chosen for session requests (where the
    session carries the signal) would otherwise reorder a user's batch list by popularity.
    """
    if pool.user is not None and pool.s_vec is None:
        return (pool.column("user_z") + params.precomputed_weight_popularity * pool.column("popularity_z")).astype(
            np.float32, copy=False
        )
    score = params.weight_popularity * pool.column("popularity_z")
    if pool.user is not None and params.weight_user > 0:
        score = score + params.weight_user * pool.column("user_z")
    if pool.s_vec is not None and params.weight_session > 0:
        score = score + params.weight_session * pool.column("session_z")
    if pool.seeds.size and params.weight_covisit > 0:
        score = score + params.weight_covisit * pool.column("covisit_z")
    return score.astype(np.float32, copy=False)


def rank(
    model: LoadedModel,
    features: RequestFeatures | None,
    k: int,
    category: str | None,
    params: BlendParams,
    reranker: LinearReranker | None = None,
) -> Ranked:
    """Top-``k`` items for one request. ``features`` None means the store could not be read.

    ``reranker``: score requests with a live session with it (the ``reranked`` tier); None = the blend.
    """
    pool = build_pool(model, features, category, params.seed_items, params.session_half_life, params.popular_pool)
    has_session = pool.s_vec is not None
    if has_session and reranker is not None:
        score, strategy = reranker.score(pool), "reranked"
    else:
        score = blend_score(pool, params)
        if pool.user is not None:
            strategy = "hybrid" if has_session else "precomputed"
        else:
            strategy = "session" if has_session else "popular"
    order = np.lexsort((pool.items, -score))[:k]  # best score first, ties by index: deterministic
    chosen = pool.items[order].tolist()
    scores = score[order].tolist()
    why = [pool.reasons.get(j, "popular") for j in chosen]
    flags = [] if features is not None else ["store_unavailable"]
    if len(chosen) < k:
        _fill_popular(model, category, k, chosen, scores, why, pool.excluded)
        if len(chosen) < k:
            flags.append("short")
    bundle = model.bundle
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

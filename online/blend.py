"""The hand-set blend: its parameters (configured, or tuned per version) and its weights over the pool's features.

The precomputed tier (a known user without a session) ranks their batch list by
``user_z + precomputed_weight_popularity * popularity_z`` (a version whose list comes from EASE or the
ALS+EASE fusion: in the list's own order, ``candidate_rank``); the session tiers by::

    score(c) = w_user * user_z + w_session * session_z + w_pop * popularity_z + w_covisit * covisit_z

(feature definitions in ``online.features``; a signal that is absent has weight 0).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from online.features import COLUMN, FEATURE_NAMES
from shared.config import Settings
from shared.schemas import BLEND_FIELDS

if TYPE_CHECKING:
    from online.features import Pool


@dataclass(frozen=True)
class BlendParams:
    weight_user: float = 0.25
    weight_session: float = 1.0
    weight_popularity: float = 0.2
    weight_covisit: float = 1.0
    session_half_life: float = 3.0
    precomputed_weight_popularity: float = 0.2  # the precomputed tier's own blend: user_z + this * popularity_z
    seed_items: int = 5
    popular_pool: int = 50
    exclude_seen: bool = True  # never serve an item of the user's training history (off: repeat purchases)
    session_max_events: int = 50  # the newest session events a request reads (the lab replays with the same)
    # The precomputed tier serves the batch list in its own order (candidate_rank) instead of by user_z:
    # set for a version whose list is not ALS's (candidate_model ease or als+ease), whose order carries
    # what the ALS vectors do not.
    precomputed_by_rank: bool = False

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
            exclude_seen=settings.exclude_seen,
            session_max_events=settings.session_max_events,
        )

    def for_version(self, meta: Mapping[str, Any]) -> BlendParams:
        """These params with the version's tuned ``meta["params"]["blend"]`` fields, when it has any.

        The blend travels with the model it was tuned for; other keys are ignored, and a version
        without a blend (older runs, no tuning) keeps the configured values. A field the tuning file
        does not name (e.g. ``weight_covisit`` from a tuning run older than that feature) keeps its
        configured value too.
        """
        params = meta.get("params") or {}
        blend = params.get("blend") or {}
        tuned: dict[str, Any] = {name: float(blend[name]) for name in BLEND_FIELDS if name in blend}
        by_rank = params.get("candidate_model", "als") != "als"
        if by_rank != self.precomputed_by_rank:
            tuned["precomputed_by_rank"] = by_rank
        return replace(self, **tuned) if tuned else self


def precomputed_weights(pool: Pool, params: BlendParams) -> tuple[np.ndarray, float]:
    """The precomputed tier's own blend over ``Pool.features`` (and its bias, 0). Weights chosen for
    session requests (where the session carries the signal) would otherwise reorder a user's batch list
    by popularity."""
    return _precomputed_weights(params), 0.0


def blend_weights(pool: Pool, params: BlendParams) -> tuple[np.ndarray, float]:
    """The hand-set blend of the pool's z-scored signals (module docstring) as one weight vector over
    ``Pool.features`` (and its bias, 0); a signal the request lacks weighted 0."""
    return _blend_weights(params, pool.user is not None, pool.s_vec is not None, bool(pool.seeds.size)), 0.0


@functools.lru_cache(maxsize=256)
def _precomputed_weights(params: BlendParams) -> np.ndarray:
    w = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    if params.precomputed_by_rank:
        w[COLUMN["candidate_rank"]] = 1.0  # the batch list as the candidate model ordered it
    else:
        w[COLUMN["user_z"]] = 1.0
        w[COLUMN["popularity_z"]] = params.precomputed_weight_popularity
    w.flags.writeable = False  # shared by every request with these params
    return w


@functools.lru_cache(maxsize=256)
def _blend_weights(params: BlendParams, user: bool, session: bool, seeds: bool) -> np.ndarray:
    w = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    w[COLUMN["popularity_z"]] = params.weight_popularity
    if user:
        w[COLUMN["user_z"]] = params.weight_user
    if session:
        w[COLUMN["session_z"]] = params.weight_session
    if seeds:
        w[COLUMN["covisit_z"]] = params.weight_covisit
    w.flags.writeable = False
    return w

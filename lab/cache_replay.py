"""A day of sessions replayed through the API's caches (``online.cache``): hit rates, and what they cost.

Traffic model: every session of the replayed day, one recommendation request (``k`` items, no category)
when it opens and one after each step (a run of consecutive events on one item, as ``lab.replay``),
all sessions interleaved in time order, so the caches warm up as a worker's would. A seeded share of
the sessions (``anonymous_share``) are anonymous visitors: no user record, an id of their own. Item
popularity and session lengths are the data's (the synthetic generator: Zipf item popularity, sessions
of 3-30 events).

Each request goes through what ``RecommendationService.recommend`` does: the exact cache first (key
with the digest of the session as stored: ``codecs.encode_session_event`` of each event), then, for a
request without a user record, the semantic cache; a miss is ranked (``online.ranking.rank``) and
stored. Every request is also ranked without caches: an exact hit must equal it (counted), and on the
scorable steps (the next step's item is known, new to the session and, with ``exclude_seen``, not in
the user's history: ``lab.replay``'s targets) HitRate@10 of what was served is compared with the
uncached answer's, with a session-bootstrap 95% interval (``lab.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from feature_store.base import RequestFeatures, StoredRequest
from feature_store.codecs import encode_session_event
from lab.replay import _session_events, _step_starts, request_features
from lab.serving import ServingModel
from lab.stats import paired_difference
from online.blend import BlendParams
from online.cache import SEMANTIC_MARGIN, ResponseCache, SemanticCache, top
from online.ranking import Ranked, rank
from online.reranker import LinearReranker


def cache_replay(
    serving: ServingModel,
    sessions: pd.DataFrame,
    params: BlendParams,
    reranker: LinearReranker | None,
    semantic_items: Sequence[int] = (1, 2, 3),
    anonymous_share: float = 0.5,
    k: int = 10,
    seed: int = 42,
    entries: int = 50_000,
) -> dict:
    """Hit rates and HitRate@10 deltas of the exact cache alone and with the semantic cache keyed on
    each of ``semantic_items`` (see the module docstring). ``sessions``: ``lab.replay.sample_sessions``
    output with a ``ts`` column (the interleaving)."""
    requests, anonymous = _requests(serving, sessions, params, anonymous_share, seed)
    out: dict = {
        "sessions": int(sessions["session_id"].nunique()),
        "anonymous_sessions": len(anonymous),
        "requests": len(requests),
        "k": k,
        "cache_entries": entries,
    }
    uncached = [_rank(serving, r, params, reranker, k) for r in requests]
    out["exact_only"] = _run(serving, requests, uncached, params, reranker, k, None, entries)
    for n in semantic_items:
        out[f"semantic_{n}"] = _run(serving, requests, uncached, params, reranker, k, n, entries)
    return out


class _Request:
    """One request of the replay: who asks, in which session, with which context and target."""

    __slots__ = ("features", "session", "stored", "target", "ts", "user_id")

    def __init__(
        self,
        user_id: str,
        session: int,
        features: RequestFeatures,
        stored: StoredRequest,
        target: int | None,
        ts: float,
    ):
        self.user_id, self.session, self.features, self.stored, self.target, self.ts = (
            user_id, session, features, stored, target, ts,
        )  # fmt: skip


def _requests(
    serving: ServingModel, sessions: pd.DataFrame, params: BlendParams, anonymous_share: float, seed: int
) -> tuple[list[_Request], set[int]]:
    index = serving.model.bundle.item_index
    ids = sessions["session_id"].unique()
    rng = np.random.default_rng(seed)
    anonymous = set(np.flatnonzero(rng.random(len(ids)) < anonymous_share).tolist())
    out = []
    for s, (_, frame) in enumerate(sessions.groupby("session_id", sort=True)):
        events = _session_events(frame)
        user_id = f"anon-{s}" if s in anonymous else events[0].user_id or ""
        user = None if s in anonymous else serving.users.get(user_id)
        history = set(user.seen.tolist()) if user is not None and params.exclude_seen else set()
        starts = _step_starts(events)
        for t in range(len(starts) + 1):  # the opening request, then one after each step
            context = events[: starts[t]] if t < len(starts) else events
            target = index.get(events[starts[t]].item_id) if t < len(starts) else None
            seen = {index[e.item_id] for e in context if e.item_id in index}
            if target is not None and (target in seen or target in history):
                target = None
            stored = StoredRequest(
                None, [encode_session_event(e) for e in context], [e.item_id.encode() for e in context]
            )
            ts = context[-1].ts if context else events[0].ts - 1e-3
            out.append(_Request(user_id, s, request_features(user, context, params), stored, target, ts))
    out.sort(key=lambda r: r.ts)
    return out, anonymous


def _rank(serving: ServingModel, r: _Request, params: BlendParams, reranker: LinearReranker | None, k: int) -> Ranked:
    use = reranker if r.features.session else None
    return rank(serving.model, r.features, k, None, params, use)


def _run(
    serving: ServingModel,
    requests: list[_Request],
    uncached: list[Ranked],
    params: BlendParams,
    reranker: LinearReranker | None,
    k: int,
    semantic_items: int | None,
    entries: int,
) -> dict:
    model = serving.model
    exact = ResponseCache(entries)
    semantic = SemanticCache(entries, semantic_items, SEMANTIC_MARGIN) if semantic_items else None
    exact_mismatch = semantic_eligible = 0
    served_hit, plain_hit, groups = [], [], []
    for r, plain in zip(requests, uncached, strict=True):
        key = ResponseCache.key(model.version, r.user_id, r.stored.session_digest(), k, None)
        got = exact.get(key)
        if got is not None:
            exact_mismatch += got.item_ids != plain.item_ids
        else:
            skey = semantic.key(model, r.features, k, None) if semantic is not None else None
            semantic_eligible += skey is not None
            got = semantic.get(skey, r.features, k) if skey is not None else None  # type: ignore[union-attr]
            if got is None:
                if skey is not None:
                    wide = rank(
                        model, r.features, k + SEMANTIC_MARGIN, None, params, reranker if r.features.session else None
                    )
                    semantic.put(skey, wide)  # type: ignore[union-attr]
                    got = top(wide, k)
                else:
                    got = plain
                exact.put(key, got)
        if r.target is not None:
            target = model.bundle.item_ids[r.target]
            served_hit.append(target in got.item_ids)
            plain_hit.append(target in plain.item_ids)
            groups.append(r.session)
    n = len(requests)
    hits_s = semantic.hits if semantic is not None else 0
    return {
        "exact_hit_rate": round(exact.hits / n, 4),
        "exact_hits_not_identical": exact_mismatch,
        "semantic_items": semantic_items,
        "semantic_eligible_share": round(semantic_eligible / n, 4),
        "semantic_hit_rate": round(hits_s / n, 4),
        "semantic_hit_rate_of_eligible": round(hits_s / semantic_eligible, 4) if semantic_eligible else None,
        "any_hit_rate": round((exact.hits + hits_s) / n, 4),
        "hit_rate_at_10": {
            "served": round(float(np.mean(served_hit)), 5),
            "uncached": round(float(np.mean(plain_hit)), 5),
        },
        "hit_rate_at_10_delta": paired_difference(np.array(served_hit), np.array(plain_hit), np.array(groups)),
    }

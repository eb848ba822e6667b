"""In-process caches of ranked answers: an exact one, and a semantic one for visitors without a record.

Both live in one API worker's memory (no I/O, no lock: the worker's event loop is their only user), are
bounded LRUs, and never hold a degraded answer (a store error, a re-ranker over its budget).

**Exact** (:class:`ResponseCache`): key ``(version, user_id, session digest, k, category)``. The
version's user records are immutable and ``StoredRequest.session_digest`` changes with every event
stored in the session, so a hit is the answer the ranking would give again: a new version or a new
event is a new key (invalidation by construction; old keys age out of the LRU). A request without a
session is answered without reading the store at all.

**Semantic** (:class:`SemanticCache`): for a request without a user record (an anonymous visitor, or a
user the version does not know) with a live session, key ``(version, the last n distinct known items of
the session, newest first, k, category)``: two visitors who just looked at the same items get the same
ranking, computed for the first. The answer is not exact (the rest of the session, and each
session's own exclusions, differ), so it stores ``k + margin`` items and serves the first ``k`` that
the asking session has not seen; fewer than ``k`` left is a miss. Its hit rate and its cost in
quality are measured by ``lab/cache_replay.py`` (bench/README.md). Off by default.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from online.ranking import Ranked

if TYPE_CHECKING:
    from feature_store.base import RequestFeatures
    from online.model import LoadedModel

ExactKey = tuple[str, str, bytes, int, str | None]
SemanticKey = tuple[str, tuple[str, ...], int, str | None]


class _Lru:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def _get(self, key: object) -> Ranked | None:
        got = self._entries.get(key)
        if got is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return got

    def _put(self, key: object, value: Ranked) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class ResponseCache(_Lru):
    """The exact cache (module docstring)."""

    @staticmethod
    def key(version: str, user_id: str, digest: bytes, k: int, category: str | None) -> ExactKey:
        return (version, user_id, digest, k, category)

    def get(self, key: ExactKey) -> Ranked | None:
        return self._get(key)

    def put(self, key: ExactKey, ranked: Ranked) -> None:
        self._put(key, ranked)


class SemanticCache(_Lru):
    """The semantic cache (module docstring): ``items`` last distinct known session items make the key."""

    def __init__(self, max_entries: int, items: int, margin: int) -> None:
        super().__init__(max_entries)
        self.items = items
        self.margin = margin

    def key(self, model: LoadedModel, features: RequestFeatures, k: int, category: str | None) -> SemanticKey | None:
        """None when the request is not one for this cache: a user record, or no known session item."""
        if features.user is not None or not features.session:
            return None
        index = model.bundle.item_index
        last: list[str] = []
        for ev in reversed(features.session):
            if ev.item_id in index and ev.item_id not in last:
                last.append(ev.item_id)
                if len(last) == self.items:
                    break
        return (model.version, tuple(last), k, category) if last else None

    def get(self, key: SemanticKey, features: RequestFeatures, k: int) -> Ranked | None:
        """The cached ranking without the items this session has seen, cut to ``k``; None on a miss."""
        cached = self._get(key)
        if cached is None:
            return None
        seen = features.session_seen | {ev.item_id for ev in features.session}
        keep = [i for i, item in enumerate(cached.item_ids) if item not in seen][:k]
        if len(keep) < k:
            self.hits -= 1
            self.misses += 1
            return None
        return Ranked(
            [cached.item_ids[i] for i in keep],
            [cached.scores[i] for i in keep],
            [cached.reasons[i] for i in keep],
            cached.strategy,
            [f for f in cached.flags if f != "short"],
        )

    def put(self, key: SemanticKey, wide: Ranked) -> None:
        """``wide``: the ranking of ``k + margin`` items of the request that missed."""
        self._put(key, replace(wide, flags=[f for f in wide.flags if f != "short"]))


SEMANTIC_MARGIN = 20  # items the semantic cache keeps beyond k, for the sessions that have seen some


def top(ranked: Ranked, k: int) -> Ranked:
    """The first ``k`` of a ranking of more, flagged ``short`` only if fewer than ``k``."""
    flags = [f for f in ranked.flags if f != "short"] + (["short"] if len(ranked.item_ids) < k else [])
    return Ranked(ranked.item_ids[:k], ranked.scores[:k], ranked.reasons[:k], ranked.strategy, flags)

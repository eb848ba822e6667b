"""What the routes call: one function per use case, with the degradation rules in one place.

Store failures never become a 500: a timeout or an unreachable store serves the in-memory popular
list of the loaded version with a flag; an unknown user is served from the session or popularity.

Re-ranker routing: a request with a live session is offered to the version's learned re-ranker when
the version has a usable one, ``reranker_enabled`` is set, and :class:`RerankerBudget` admits it (the
time spent so far plus the re-ranker's typical cost fits ``reranker_budget_ms``); otherwise the blend
serves it, with the flag ``reranker_over_budget`` when the budget was the reason.

Flags, all decided in :meth:`RecommendationService.recommend`: ``store_timeout`` or
``store_unavailable`` (never both), ``unknown_user``, ``reranker_over_budget``, then the ranking's
own ``short``; ``cached`` or ``semantic_cache`` last on an answer a cache gave (``online.cache``:
the exact cache before the store is read, or after it for a session; the semantic one for a request
without a user record).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from feature_store import codecs
from feature_store.base import OnlineStore, RequestFeatures, SessionEvent, VersionStore
from feature_store.keys import ALL_CATEGORIES
from online.api_models import EventIn
from online.cache import SEMANTIC_MARGIN, ResponseCache, SemanticCache, top
from online.model import LoadedModel, ModelHolder
from online.ranking import Ranked, rank, similar_items
from online.reranker import LinearReranker
from online.telemetry import Telemetry
from shared.config import Settings
from shared.errors import (
    EventsBacklogFull,
    NotFound,
    ReplicationTimeout,
    StoreError,
    StoreFull,
    StoreTimeout,
    StoreUnavailable,
    VersionNotFound,
)

log = logging.getLogger("hybridrec.online")


RETRY_SAME_IDS = "retry later with the same event_id values (an event sent without one cannot be de-duplicated)"
UNREPLICATED = (
    "the events are stored on the Redis primary, but not yet confirmed by the replicas "
    "HYBRIDREC_EVENTS_MIN_REPLICAS requires, so a failover now could lose them; retry with the same event_id "
    "values (what is stored is acknowledged as a duplicate once the replicas have it; an event sent without one "
    "cannot be de-duplicated)"
)
OUTCOME_UNKNOWN = (
    "the store did not answer in time: these events may or may not have been stored; retry with the same "
    "event_id values, and each is stored once (an event sent without one cannot be de-duplicated)"
)


@dataclass(frozen=True)
class Recorded:
    """Posted events, acknowledged: ``event_ids`` in request order (the client's, or new UUIDs);
    ``duplicates``: the client ids among them that were accepted before (or earlier in the same
    batch), stored once and not again."""

    event_ids: list[str]
    duplicates: list[str]


@dataclass(frozen=True)
class Served:
    ranked: Ranked
    version: str
    took_ms: float


class RerankerBudget:
    """Admits a re-ranked request when the time spent so far plus the re-ranker's typical cost (an
    exponential moving average of its measured ranking time) fits ``budget_ms``.

    Every skip decays the average by the same factor, so a transient stall (GC, a noisy neighbour)
    cannot switch the re-ranker off for good. One per worker, used from its event loop only (requests
    are served there, never in threads), so it needs no lock.
    """

    SMOOTHING = 0.1  # weight of the newest measurement in the average

    def __init__(self, budget_ms: float) -> None:
        self.budget_ms = budget_ms
        self.cost_ms = 0.0  # 0 until measured

    def admits(self, spent_ms: float) -> bool:
        if spent_ms + self.cost_ms <= self.budget_ms:
            return True
        self.cost_ms *= 1 - self.SMOOTHING
        return False

    def record(self, cost_ms: float) -> None:
        self.cost_ms += self.SMOOTHING * (cost_ms - self.cost_ms)


class RecommendationService:
    """Per worker; its coroutines run on the worker's event loop (``store`` is the asyncio store)."""

    def __init__(
        self,
        store: OnlineStore,
        holder: ModelHolder,
        settings: Settings,
        telemetry: Telemetry | None = None,
        versions: VersionStore | None = None,
    ) -> None:
        self.store = store
        self.versions = versions  # blocking; only the demo page's user sample (a thread-pool route) uses it
        self.holder = holder
        self.telemetry = telemetry or Telemetry(enabled=False)
        self.reranker_enabled = settings.reranker_enabled
        self.budget = RerankerBudget(settings.reranker_budget_ms)
        self.exact = ResponseCache(settings.cache_entries) if settings.response_cache else None
        self.semantic = (
            SemanticCache(settings.cache_entries, settings.semantic_cache_items, SEMANTIC_MARGIN)
            if settings.semantic_cache
            else None
        )
        self._trimming = False  # the last append dropped un-compacted events (logged when it starts)

    def _model(self) -> LoadedModel:
        model = self.holder.model
        if model is None:
            raise VersionNotFound(f"no model loaded yet: {self.holder.last_error or 'still starting'}")
        return model

    async def recommend(self, user_id: str, k: int, session_id: str | None, category: str | None) -> Served:
        start = time.perf_counter()
        model = self._model()
        exact_key = ResponseCache.key(model.version, user_id, b"", k, category)
        if session_id is None and self.exact is not None and (hit := self.exact.get(exact_key)):
            return self._served(hit, "cached", model, start)  # the version's user record cannot change
        flags: list[str] = []
        features: RequestFeatures | None
        try:
            stored = await self.store.read_request(model.version, user_id, session_id)
            if session_id is not None and self.exact is not None:
                exact_key = ResponseCache.key(model.version, user_id, stored.session_digest(), k, category)
                if hit := self.exact.get(exact_key):
                    return self._served(hit, "cached", model, start)
            features = codecs.decode_request(stored, model.user_layout, session_id)
        except StoreError as exc:
            features = None
            flags.append("store_timeout" if isinstance(exc, StoreTimeout) else "store_unavailable")
        semantic_key = (
            self.semantic.key(model, features, k, category) if self.semantic is not None and features else None
        )
        if semantic_key is not None and (hit := self.semantic.get(semantic_key, features, k)):  # type: ignore[union-attr,arg-type]
            return self._served(hit, "semantic_cache", model, start)
        reranker: LinearReranker | None = None
        if features is not None and features.session and self.reranker_enabled and model.reranker is not None:
            if self.budget.admits((time.perf_counter() - start) * 1000):
                reranker = model.reranker
            else:
                flags.append("reranker_over_budget")
        rank_start = time.perf_counter()
        wide = k + SEMANTIC_MARGIN if semantic_key is not None else k
        ranked = rank(model, features, wide, category, model.params, reranker)
        if ranked.strategy == "reranked":
            self.budget.record((time.perf_counter() - rank_start) * 1000)
        if features is not None and features.user is None:
            flags.append("unknown_user")
        degraded = any(f != "unknown_user" for f in flags)  # never cached
        ranked.flags[:0] = flags
        if semantic_key is not None and not degraded:
            self.semantic.put(semantic_key, ranked)  # type: ignore[union-attr]
        if wide > k:
            ranked = top(ranked, k)
        if self.exact is not None and not degraded:
            self.exact.put(exact_key, ranked)
        return Served(ranked, model.version, (time.perf_counter() - start) * 1000)

    def _served(self, hit: Ranked, how: str, model: LoadedModel, start: float) -> Served:
        """A cached answer, flagged ``how`` (a new Ranked: the cached one stays as it was)."""
        ranked = replace(hit, flags=[*hit.flags, how])
        return Served(ranked, model.version, (time.perf_counter() - start) * 1000)

    def similar(self, item_id: str, k: int, kind: str = "als") -> tuple[list[str], list[float], str]:
        model = self._model()
        try:
            ids, scores = similar_items(model, item_id, k, kind)
        except KeyError:
            raise NotFound(f"item {item_id!r} is not in model version {model.version}") from None
        return ids, scores, model.version

    def catalogue(self, per_category: int) -> tuple[str, list[tuple[str, list[tuple[str, str]]]]]:
        """The served version and, per category (sorted), its ``per_category`` most popular available items
        as (item_id, title); from memory, no store access."""
        model = self._model()
        bundle = model.bundle
        shelves = []
        for category in sorted(c for c in bundle.popular if c != ALL_CATEGORIES):
            shown = [int(j) for j in model.popular(category) if bundle.available[j]][:per_category]
            shelves.append((category, [(bundle.item_ids[j], bundle.titles[j]) for j in shown]))
        return model.version, shelves

    def sample_users(self, n: int) -> tuple[str, list[str]]:
        """The served version and up to ``n`` of its users (one SCAN or a few: the demo page's picker)."""
        model = self._model()
        if self.versions is None:
            raise VersionNotFound("this service was built without a version store to sample users from")
        return model.version, self.versions.sample_users(model.version, n)

    async def record_events(self, events: Sequence[EventIn]) -> Recorded:
        """Append to sessions and the durable stream, each client event_id once (see ``Recorded``).

        Raises StoreError (-> 503): EventsBacklogFull and StoreFull mean nothing was stored; a
        timeout or a lost connection means the outcome is unknown, and says to retry with the same ids;
        ReplicationTimeout means stored on the primary but not yet on the replicas required (retry too).
        """
        now = time.time()
        records = [
            SessionEvent(
                item_id=e.item_id,
                event_type=e.event_type,
                ts=_epoch(e.ts) if e.ts else now,
                event_id=e.event_id or uuid.uuid4().hex,
                user_id=e.user_id,
                session_id=e.session_id,
                weight=e.weight,
            )
            for e in events
        ]
        try:
            result = await self.store.append(records, dedupe=[e.event_id is not None for e in events])
        except StoreTimeout as exc:
            self.telemetry.store_error("write", "timeout")
            raise StoreTimeout(str(exc), public=OUTCOME_UNKNOWN) from exc
        except ReplicationTimeout as exc:
            self.telemetry.store_error("write", "unreplicated")
            raise ReplicationTimeout(str(exc), public=UNREPLICATED) from exc
        except StoreUnavailable as exc:
            self.telemetry.store_error("write", "unavailable")
            raise StoreUnavailable(str(exc), public=f"the store is unreachable; {RETRY_SAME_IDS}") from exc
        except StoreFull as exc:
            self.telemetry.store_error("write", "full")
            raise StoreFull(str(exc), public=f"the store is full: nothing was stored; {RETRY_SAME_IDS}") from exc
        except EventsBacklogFull as exc:
            self.telemetry.store_error("write", "backlog_full")
            self.telemetry.events_outcome("refused_backlog", len(records))
            public = f"the live-events backlog is full: nothing was stored; {RETRY_SAME_IDS}"
            raise EventsBacklogFull(str(exc), public=public) from exc
        self.telemetry.events_outcome("accepted", len(records) - len(result.duplicates))
        self.telemetry.events_outcome("duplicate", len(result.duplicates))
        self.telemetry.events_outcome("trimmed", result.trimmed)
        if result.trimmed and not self._trimming:
            log.warning(
                "the live-events stream is at its cap: dropping the oldest un-compacted events (%d so far in this "
                "batch); they will not reach training. Run compaction, or raise HYBRIDREC_EVENTS_BACKLOG_MAX",
                result.trimmed,
            )
        self._trimming = result.trimmed > 0
        if result.sessions_missed:  # Redis Cluster: stored durably, but not in the live sessions
            self.telemetry.events_outcome("session_missed", result.sessions_missed)
            log.warning(
                "%d stored events could not be added to their live sessions (%s); they reach training",
                result.sessions_missed,
                result.sessions_error,
            )
        return Recorded([r.event_id for r in records], result.duplicates)


def _epoch(ts: datetime) -> float:
    """Unix seconds; a timestamp without a zone is taken as UTC (the data contract's zone)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()

"""What the routes call: one function per use case, with the degradation rules in one place.

Store failures never become a 500: a timeout or an unreachable store serves the in-memory popular
list of the loaded version with a flag; an unknown user is served from the session or popularity.

Re-ranker routing: a request with a live session goes to the version's learned re-ranker when the
version has a usable one, ``reranker_enabled`` is set, and the time spent so far plus the re-ranker's
typical cost (an exponential moving average of its measured ranking time) fits ``reranker_budget_ms``;
otherwise the blend serves it, with the flag ``reranker_over_budget`` when the budget was the reason.
Every such skip decays the average by the same factor, so a transient stall (GC, a noisy neighbour)
cannot switch the re-ranker off for good.
A version whose re-ranker cannot be parsed is served by the blend and logged once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from feature_store.base import FeatureStore, RequestFeatures, SessionEvent
from online.api_models import EventIn
from online.model import LoadedModel, ModelHolder
from online.monitoring import ServedCounters
from online.ranking import BlendParams, Ranked, rank, similar_items
from online.reranker import LinearReranker, RerankerFormatError
from shared.config import Settings
from shared.errors import NotFound, StoreError, StoreTimeout, VersionNotFound

log = logging.getLogger("hybridrec.online")
_COST_SMOOTHING = 0.1  # weight of the newest measurement in the re-ranker's cost average


@dataclass(frozen=True)
class Served:
    ranked: Ranked
    version: str
    took_ms: float


class RecommendationService:
    def __init__(
        self, store: FeatureStore, holder: ModelHolder, settings: Settings, counters: ServedCounters | None = None
    ) -> None:
        self.store = store
        self.holder = holder
        self.counters = counters
        self.params = BlendParams.from_settings(settings)
        self.reranker_enabled = settings.reranker_enabled
        self.reranker_budget_ms = settings.reranker_budget_ms
        self.reranker_cost_ms = 0.0  # moving average of a re-ranked rank() call; 0 until measured
        self._per_version: tuple[str, BlendParams, LinearReranker | None] | None = None

    def _for_version(self, model: LoadedModel) -> tuple[str, BlendParams, LinearReranker | None]:
        cached = self._per_version
        if cached is None or cached[0] != model.version:
            reranker = None
            try:
                reranker = LinearReranker.for_version(model.bundle.meta)
            except RerankerFormatError as exc:
                log.warning("version %s: re-ranker unusable, the blend serves instead: %s", model.version, exc)
            cached = (model.version, self.params.for_version(model.bundle.meta), reranker)
            self._per_version = cached  # one tuple swap: a racing request at worst recomputes it
        return cached

    def params_for(self, model: LoadedModel) -> BlendParams:
        """The blend for ``model``: its version's tuned weights when its meta has them, else the settings'."""
        return self._for_version(model)[1]

    def reranker_for(self, model: LoadedModel) -> LinearReranker | None:
        """The version's re-ranker when it has a usable one and re-ranking is enabled."""
        return self._for_version(model)[2] if self.reranker_enabled else None

    def _model(self) -> LoadedModel:
        model = self.holder.model
        if model is None:
            raise VersionNotFound(f"no model loaded yet: {self.holder.last_error or 'still starting'}")
        return model

    def recommend(self, user_id: str, k: int, session_id: str | None, category: str | None) -> Served:
        start = time.perf_counter()
        model = self._model()
        flags: list[str] = []
        features: RequestFeatures | None
        try:
            features = self.store.read_request(model.version, user_id, session_id)
        except StoreError as exc:
            features = None
            flags.append("store_timeout" if isinstance(exc, StoreTimeout) else "store_unavailable")
        reranker = self.reranker_for(model) if features is not None and features.session else None
        if reranker is not None:
            spent_ms = (time.perf_counter() - start) * 1000
            if spent_ms + self.reranker_cost_ms > self.reranker_budget_ms:
                reranker = None
                flags.append("reranker_over_budget")
                # The average only moves on re-ranked requests, so one stall could keep it above the
                # budget for good; each skip decays it, and the re-ranker is tried again soon.
                self.reranker_cost_ms *= 1 - _COST_SMOOTHING
        rank_start = time.perf_counter()
        ranked = rank(model, features, k, category, self.params_for(model), reranker)
        if ranked.strategy == "reranked":
            cost = (time.perf_counter() - rank_start) * 1000
            self.reranker_cost_ms += _COST_SMOOTHING * (cost - self.reranker_cost_ms)
        if features is not None and features.user is None:
            flags.append("unknown_user")
        ranked.flags[:0] = [f for f in flags if f not in ranked.flags]
        if self.counters is not None:
            self.counters.record(ranked.strategy, ranked.flags)
        return Served(ranked, model.version, (time.perf_counter() - start) * 1000)

    def similar(self, item_id: str, k: int, kind: str = "als") -> tuple[list[str], list[float], str]:
        model = self._model()
        try:
            ids, scores = similar_items(model, item_id, k, kind)
        except KeyError:
            raise NotFound(f"item {item_id!r} is not in model version {model.version}") from None
        return ids, scores, model.version

    def record_events(self, events: Sequence[EventIn]) -> list[str]:
        """Append to sessions and the durable stream; raises StoreError (-> 503) if not accepted."""
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
        self.store.append_session_events(records)
        return [r.event_id for r in records]


def _epoch(ts: datetime) -> float:
    """Unix seconds; a timestamp without a zone is taken as UTC (the data contract's zone)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()

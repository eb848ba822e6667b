"""What the routes call: one function per use case, with the degradation rules in one place.

Store failures never become a 500: a timeout or an unreachable store serves the in-memory popular
list of the loaded version with a flag; an unknown user is served from the session or popularity.
"""

from __future__ import annotations

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
from shared.config import Settings
from shared.errors import NotFound, StoreError, StoreTimeout, VersionNotFound


@dataclass(frozen=True)
class Served:
    ranked: Ranked
    version: str
    took_ms: float


class Recommender:
    def __init__(
        self, store: FeatureStore, holder: ModelHolder, settings: Settings, counters: ServedCounters | None = None
    ) -> None:
        self.store = store
        self.holder = holder
        self.counters = counters
        self.params = BlendParams.from_settings(settings)
        self._version_params: tuple[str, BlendParams] | None = None

    def params_for(self, model: LoadedModel) -> BlendParams:
        """The blend for ``model``: its version's tuned weights when its meta has them, else the settings'."""
        cached = self._version_params
        if cached is None or cached[0] != model.version:
            cached = (model.version, self.params.for_version(model.bundle.meta))
            self._version_params = cached  # one tuple swap: a racing request at worst recomputes it
        return cached[1]

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
        ranked = rank(model, features, k, category, self.params_for(model))
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

"""What the operator page (``/ops``) shows, gathered on request (admin only; never on the recommendation path).

* the versions: current and previous, their offline metrics, when each was published and how old its
  newest data is; the version this worker serves;
* the quality gate's latest decision (recorded by the daily DAG's gate task);
* the last :data:`WINDOW_MINUTES` minutes, per minute, summed over every worker and replica
  (online.window): requests per tier, flags, store errors, events by outcome; latency percentiles per
  tier over the window, estimated from the histogram buckets as Prometheus's ``histogram_quantile`` does;
* the live events waiting for compaction;
* the embedding map of the served version (``LoadedModel.embedding_map``, computed once per version).

Each part that reads the store says its error instead of failing the page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from feature_store.base import EventLog, VersionInfo, VersionStore
from online.model import ModelHolder
from online.window import LATENCY_BUCKETS_S, WindowCounters, minute_of
from shared.errors import StoreError

WINDOW_MINUTES = 15
QUANTILES = (0.5, 0.9, 0.99)
MAP_POINTS = 3_000  # the most popular items of the version are drawn; the axes come from all of them


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The ``q`` quantile (seconds) of a histogram: ``counts[i]`` observations in bucket i, whose upper bound
    is ``LATENCY_BUCKETS_S[i]`` (the last count: above them all). Linear within a bucket; the highest
    finite bound when the rank falls above it; None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(LATENCY_BUCKETS_S):
                return LATENCY_BUCKETS_S[-1]
            lower = LATENCY_BUCKETS_S[i - 1] if i else 0.0
            return lower + (LATENCY_BUCKETS_S[i] - lower) * (rank - seen) / n
        seen += n
    return LATENCY_BUCKETS_S[-1]


def summarise_window(minutes: Sequence[int], counts: Mapping[int, Mapping[str, int]]) -> dict[str, Any]:
    """Per-minute series (one value per minute of ``minutes``) and the window's latency percentiles per tier."""
    series: dict[str, dict[str, list[int]]] = {"tiers": {}, "flags": {}, "store_errors": {}, "events": {}}
    kinds = {"tier": "tiers", "flag": "flags", "store_error": "store_errors", "events": "events"}
    n_buckets = len(LATENCY_BUCKETS_S) + 1
    latency: dict[str, list[int]] = {}
    per_minute_latency = [[0] * n_buckets for _ in minutes]
    for j, minute in enumerate(minutes):
        for name, n in counts.get(minute, {}).items():
            kind, _, rest = name.partition(":")
            if kind == "lat":
                tier, _, bucket = rest.rpartition(":")
                b = min(int(bucket), n_buckets - 1)
                latency.setdefault(tier, [0] * n_buckets)[b] += n
                per_minute_latency[j][b] += n
            elif kind in kinds:
                series[kinds[kind]].setdefault(rest, [0] * len(minutes))[j] += n
    per_tier = {
        tier: {"count": sum(c), **{f"p{round(q * 100)}_ms": _ms(quantile(q, c)) for q in QUANTILES}}
        for tier, c in sorted(latency.items())
    }
    return {
        "minutes": [m * 60 for m in minutes],
        **{key: dict(sorted(values.items())) for key, values in series.items()},
        "latency": per_tier,
        "latency_by_minute": {
            f"p{round(q * 100)}_ms": [_ms(quantile(q, c)) for c in per_minute_latency] for q in (0.5, 0.99)
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _partition_end(partition: str | None) -> float | None:
    """Unix time of the end of a partition day (midnight UTC after it)."""
    if not partition:
        return None
    day = dt.date.fromisoformat(partition[:10])
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC).timestamp()


def data_end(meta: Mapping[str, Any] | None, version: str) -> float | None:
    """When the newest data of a version ends (its partition day's end), from its meta or its id."""
    try:
        return _partition_end((meta or {}).get("partition") or version)
    except ValueError:
        return None


def _version(info: VersionInfo | None, now: float) -> dict[str, Any] | None:
    if info is None:
        return None
    meta = info.meta or {}
    end = data_end(meta, info.version)
    return {
        "version": info.version,
        "partition": meta.get("partition"),
        "published_at": info.started_at,
        "age_s": round(now - info.started_at, 1),
        "data_age_s": None if end is None else round(now - end, 1),
        "n_users": meta.get("n_users"),
        "n_items": meta.get("n_items"),
        "n_interactions": meta.get("n_interactions"),
        "metrics": meta.get("metrics") or {},
        "reranker": bool((meta.get("params") or {}).get("reranker")),
    }


class Operations:
    def __init__(
        self,
        holder: ModelHolder,
        versions: VersionStore,
        events: EventLog,
        window: WindowCounters | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.holder = holder
        self.versions = versions
        self.events = events
        self.window = window
        self.clock = clock

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        model = self.holder.model
        return {
            "now": now,
            "serving": {"version": model.version if model else None, "last_error": self.holder.last_error},
            "versions": self._guard(lambda: self._versions(now)),
            "gate": self._guard(lambda: {"decision": self.versions.last_gate()}),
            "window": self._guard(lambda: self._window(now)),
            "backlog": self._guard(lambda: {"events_waiting": self.events.stream_length()}),
        }

    def _versions(self, now: float) -> dict[str, Any]:
        infos = self.versions.list_versions()
        current = next((v for v in infos if v.is_current), None)
        previous = next((v for v in infos if v.is_previous), None)
        return {"current": _version(current, now), "previous": _version(previous, now)}

    def _window(self, now: float) -> dict[str, Any]:
        if self.window is None:
            return {"error": "metrics are off (HYBRIDREC_METRICS_ENABLED=false)"}
        last = minute_of(now)
        minutes = list(range(last - WINDOW_MINUTES + 1, last + 1))
        return summarise_window(minutes, self.window.read(minutes))

    @staticmethod
    def _guard(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return read()
        except StoreError as exc:
            return {"error": str(exc)}

    def embedding(self, max_points: int = MAP_POINTS) -> dict[str, Any] | None:
        """The served version's map: its ``max_points`` most popular items with x, y and category index."""
        model = self.holder.model
        if model is None:
            return None
        emap = model.embedding_map
        bundle = model.bundle
        order = np.lexsort((np.arange(len(bundle.item_ids)), -np.asarray(bundle.popularity, dtype=np.float64)))
        chosen = order[:max_points]
        categories = sorted(set(bundle.categories.astype(str).tolist()))
        code = {c: i for i, c in enumerate(categories)}
        xy = np.round(emap.coords[chosen].astype(np.float64), 4)
        return {
            "version": model.version,
            "n_items": len(bundle.item_ids),
            "explained": [round(e, 4) for e in emap.explained],
            "categories": categories,
            "points": [
                [float(x), float(y), code[str(bundle.categories[j])], bundle.item_ids[j]]
                for (x, y), j in zip(xy.tolist(), chosen.tolist(), strict=True)
            ],
        }

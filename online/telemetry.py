"""The API's metrics: Prometheus (prometheus_client) and the operator page's per-minute windows, fed from one place.

What is recorded (every name is in README "Metrics and logs"):

* per HTTP request (by :class:`online.middleware.RequestTelemetry`): its latency in a histogram per
  route and routing tier, a count per route, method and status;
* per recommendation: its tier and flags, the store errors and re-ranker skips its flags say;
* per events batch (by the service): events by outcome, store errors of the write;
* model reloads that failed, and which version each worker serves.

Recording is in memory (or, with several uvicorn workers, in prometheus_client's per-process mmap files
under ``PROMETHEUS_MULTIPROC_DIR``, which ``hybridrec serve`` sets): no network I/O on the request path.
``/metrics`` merges the workers' files at scrape time (``MultiProcessCollector``) and adds two values
computed then by the answering worker: its model's age and the events waiting for compaction.

``Telemetry(enabled=False)`` records nothing (``HYBRIDREC_METRICS_ENABLED=false``); ``/metrics`` still
answers with the scrape-time values. The per-minute window (online.window) needs the store, so the app's
lifespan attaches it once the store is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from online.window import LATENCY_BUCKETS_S, WindowCounters, latency_bucket

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STORE_FLAGS = {"store_timeout": "timeout", "store_unavailable": "unavailable"}
RERANKER_SKIP_FLAGS = {"reranker_over_budget": "over_budget"}
NO_TIER = "none"  # the tier label of routes that do not rank
# A client chooses its method: any other token is labelled "other", so labels stay a bounded set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_mode() -> bool:
    """True when prometheus_client writes per-process files (PROMETHEUS_MULTIPROC_DIR was set before it was
    imported); the library's own answer, so the two can never disagree."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Telemetry:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.window: WindowCounters | None = None  # the operator page's per-minute counts (attach)
        self.multiprocess = multiprocess_mode()
        # In multiprocess mode the values live in the per-process files and /metrics merges them, so the
        # metric objects are registered nowhere; otherwise in this app's own registry (never the global
        # one: a test process builds many apps).
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        self.latency = Histogram(
            "hybridrec_http_request_duration_seconds",
            "Time from the request's arrival to its response, per route template and routing tier "
            f"(tier {NO_TIER!r} for routes that do not rank).",
            ["route", "method", "tier"],
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.http = Counter(
            "hybridrec_http_requests", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=reg,
        )  # fmt: skip
        self.tiers = Counter(
            "hybridrec_requests", "Recommendation requests served, by routing tier.", ["strategy"], registry=reg
        )
        self.flags = Counter(
            "hybridrec_request_flags",
            "Recommendation requests that carried a flag (degradations, unknown users).",
            ["flag"],
            registry=reg,
        )
        self.store_errors = Counter(
            "hybridrec_store_errors",
            "Store errors the API degraded through (read: served from memory with a flag) or answered 503 "
            "(write), by kind: timeout, unavailable, full, backlog_full, unreplicated.",
            ["operation", "kind"],
            registry=reg,
        )
        self.reranker_skips = Counter(
            "hybridrec_reranker_skips",
            "Session requests the learned re-ranker would have served but did not, by reason.",
            ["reason"],
            registry=reg,
        )
        self.events = Counter(
            "hybridrec_events",
            "Live events posted, by outcome: accepted (stored), duplicate (an event_id accepted before: stored "
            "once), trimmed (un-compacted events the stream's cap dropped), refused_backlog (the backlog is full), "
            "session_missed (Redis Cluster: stored, but a node failed before they reached their live session).",
            ["outcome"],
            registry=reg,
        )
        self.reload_failures = Counter(
            "hybridrec_model_reload_failures", "Failed attempts to load the published version (retried).", registry=reg
        )
        self.model_info = Gauge(
            "hybridrec_model_info",
            "1 for the model version a worker serves (0 for a version it served before).",
            ["version"],
            multiprocess_mode="max",
            registry=reg,
        )
        self._serving: str | None = None
        # Each labelled child once: prometheus_client's labels() validates and locks on every call (a few
        # microseconds, most of the recording's cost); a dict lookup is a tenth of that. Bounded: every
        # label value is a route template, a known method, a status, a tier, a flag or an outcome.
        self._children: dict[tuple, Any] = {}

    def attach(self, window: WindowCounters | None) -> None:
        """Also count into ``window`` from now on (None: stop)."""
        self.window = window

    # --- recording (each call: in-memory or mmap updates only) -----------------------------------------
    def request(
        self, route: str, method: str, status: int, tier: str | None, flags: Sequence[str], seconds: float
    ) -> None:
        if not self.enabled:
            return
        method = method if method in METHODS else "other"
        self._child(self.latency, route, method, tier or NO_TIER).observe(seconds)
        self._child(self.http, route, method, str(status)).inc()
        if tier is None:
            return
        self._child(self.tiers, tier).inc()
        names = [f"tier:{tier}", f"lat:{tier}:{latency_bucket(seconds)}"]
        for flag in flags:
            self._child(self.flags, flag).inc()
            names.append(f"flag:{flag}")
            if flag in STORE_FLAGS:
                self._child(self.store_errors, "read", STORE_FLAGS[flag]).inc()
                names.append(f"store_error:{STORE_FLAGS[flag]}")
            elif flag in RERANKER_SKIP_FLAGS:
                self._child(self.reranker_skips, RERANKER_SKIP_FLAGS[flag]).inc()
        if self.window is not None:
            self.window.add(names)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def events_outcome(self, outcome: str, n: int) -> None:
        if self.enabled and n:
            self.events.labels(outcome).inc(n)
            if self.window is not None:
                self.window.add([f"events:{outcome}"], n)

    def store_error(self, operation: str, kind: str) -> None:
        if self.enabled:
            self.store_errors.labels(operation, kind).inc()
            if self.window is not None:
                self.window.add([f"store_error:{kind}"])

    def reload_failed(self) -> None:
        if self.enabled:
            self.reload_failures.inc()

    def serving(self, version: str) -> None:
        """This worker now serves ``version`` (called by the model holder after each swap)."""
        if not self.enabled or version == self._serving:
            return
        if self._serving is not None:
            self.model_info.labels(self._serving).set(0)
        self.model_info.labels(version).set(1)
        self._serving = version

    # --- exposition -----------------------------------------------------------------------------------
    def exposition(self, at_scrape: Collector) -> bytes:
        """The Prometheus text of every worker's metrics plus ``at_scrape``'s values."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        registry.register(at_scrape)
        return generate_latest(registry)


class _Forward(Collector):
    """Another registry's metrics, so one exposition can add scrape-time values without registering them
    into this app's registry (where they would stay)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class ScrapeTime(Collector):
    """Values computed when ``/metrics`` is scraped, by the worker that answers: its model's age (seconds
    since the end of its partition day: how old its newest training data is) and the live events waiting
    for compaction (one XLEN; left out when the store cannot be read)."""

    def __init__(self, data_end: Callable[[], float | None], backlog: Callable[[], int | None]) -> None:
        self.data_end = data_end
        self.backlog = backlog

    def collect(self) -> Iterable[Metric]:
        end = self.data_end()
        if end is not None:
            yield GaugeMetricFamily(
                "hybridrec_model_age_seconds",
                "Seconds since the end of the served version's partition day (the age of its newest data).",
                value=max(0.0, time.time() - end),
            )
        waiting = self.backlog()
        if waiting is not None:
            yield GaugeMetricFamily(
                "hybridrec_events_backlog", "Live events accepted and not yet compacted into training data.",
                value=waiting,
            )  # fmt: skip

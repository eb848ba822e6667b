"""Metrics and the operator page's numbers: recorded where expected, summarised with known answers."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from online.embedding_map import pca_2d
from online.ops import quantile, summarise_window
from online.telemetry import ScrapeTime, Telemetry
from online.window import LATENCY_BUCKETS_S, latency_bucket
from shared.logs import configure_logging


class FakeWindow:
    """Stands in for the Redis-backed window: records what Telemetry adds (no store involved)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, int]] = []

    def add(self, names, n=1):
        self.added += [(name, n) for name in names]


def labels(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_recommendation_is_counted_by_tier_flag_store_error_and_skip() -> None:
    t = Telemetry()
    window = FakeWindow()
    t.attach(window)
    t.request("/recommendations/{user_id}", "GET", 200, "hybrid", ["store_timeout", "reranker_over_budget"], 0.004)
    t.request("/health", "GET", 200, None, [], 0.0002)
    got = samples(t.exposition(ScrapeTime(lambda: None, lambda: None)))
    rec = {"method": "GET", "route": "/recommendations/{user_id}", "tier": "hybrid"}
    hist = "hybridrec_http_request_duration_seconds"
    assert got[(f"{hist}_count", labels(**rec))] == 1
    assert got[(f"{hist}_bucket", labels(**rec, le="0.005"))] == 1  # cumulative: 4 ms is under 5 ms
    assert got[(f"{hist}_bucket", labels(**rec, le="0.003"))] == 0
    assert got[(f"{hist}_count", labels(method="GET", route="/health", tier="none"))] == 1
    assert got[("hybridrec_requests_total", (("strategy", "hybrid"),))] == 1
    assert got[("hybridrec_request_flags_total", (("flag", "store_timeout"),))] == 1
    assert got[("hybridrec_store_errors_total", (("kind", "timeout"), ("operation", "read")))] == 1
    assert got[("hybridrec_reranker_skips_total", (("reason", "over_budget"),))] == 1
    assert window.added == [
        ("tier:hybrid", 1),
        (f"lat:hybrid:{LATENCY_BUCKETS_S.index(0.005)}", 1),
        ("flag:store_timeout", 1),
        ("store_error:timeout", 1),
        ("flag:reranker_over_budget", 1),
    ]


def test_serving_marks_the_new_version_and_unmarks_the_old() -> None:
    t = Telemetry()
    t.serving("v1")
    t.serving("v2")
    t.reload_failed()
    t.events_outcome("accepted", 3)
    got = samples(t.exposition(ScrapeTime(lambda: 0.0, lambda: 7)))
    assert got[("hybridrec_model_info", (("version", "v1"),))] == 0
    assert got[("hybridrec_model_info", (("version", "v2"),))] == 1
    assert got[("hybridrec_model_reload_failures_total", ())] == 1
    assert got[("hybridrec_events_total", (("outcome", "accepted"),))] == 3
    assert got[("hybridrec_events_backlog", ())] == 7
    assert got[("hybridrec_model_age_seconds", ())] > 1e9  # data ending at the epoch is very old


def test_disabled_telemetry_records_nothing() -> None:
    t = Telemetry(enabled=False)
    t.request("/recommendations/{user_id}", "GET", 200, "hybrid", [], 0.004)
    t.events_outcome("accepted", 3)
    names = {k[0] for k in samples(t.exposition(ScrapeTime(lambda: None, lambda: 2)))}
    assert "hybridrec_requests_total" not in names and "hybridrec_events_total" not in names
    assert "hybridrec_events_backlog" in names


def test_latency_bucket_bounds() -> None:
    assert latency_bucket(0.0) == 0
    assert latency_bucket(0.001) == 0  # a bound is inclusive, as Prometheus's le
    assert latency_bucket(0.0011) == 1
    assert latency_bucket(99.0) == len(LATENCY_BUCKETS_S)


def test_quantile_interpolates_within_the_bucket() -> None:
    counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
    counts[0] = 50  # (0, 1 ms]
    counts[1] = 50  # (1, 2 ms]
    assert quantile(0.5, counts) == pytest.approx(0.001)
    assert quantile(0.75, counts) == pytest.approx(0.0015)
    assert quantile(0.99, [0] * len(LATENCY_BUCKETS_S) + [4]) == LATENCY_BUCKETS_S[-1]
    assert quantile(0.5, [0] * len(counts)) is None


def test_summarise_window_gives_series_per_minute_and_percentiles_per_tier() -> None:
    counts = {
        10: {"tier:hybrid": 3, "lat:hybrid:0": 3, "flag:short": 1},
        12: {"tier:popular": 1, "lat:popular:2": 1, "store_error:timeout": 1, "events:accepted": 5},
    }
    w = summarise_window([10, 11, 12], counts)
    assert w["minutes"] == [600, 660, 720]
    assert w["tiers"] == {"hybrid": [3, 0, 0], "popular": [0, 0, 1]}
    assert w["flags"] == {"short": [1, 0, 0]}
    assert w["store_errors"] == {"timeout": [0, 0, 1]} and w["events"] == {"accepted": [0, 0, 5]}
    assert w["latency"]["hybrid"]["count"] == 3 and w["latency"]["hybrid"]["p50_ms"] == pytest.approx(0.5)
    assert w["latency"]["popular"]["p99_ms"] == pytest.approx(2.99)
    assert w["latency_by_minute"]["p50_ms"][1] is None


def test_pca_separates_two_clusters_on_the_first_axis() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.05, (20, 8)) + np.eye(8)[0]
    b = rng.normal(0, 0.05, (20, 8)) + np.eye(8)[1]
    m = pca_2d(np.vstack([a, b]))
    x = m.coords[:, 0]
    assert (x[:20] > 0).all() != (x[20:] > 0).all() and np.sign(x[:20]).std() == 0
    assert m.explained[0] > 0.8 and m.coords.dtype == np.float32
    assert np.array_equal(pca_2d(np.vstack([a, b])).coords, m.coords)  # deterministic, signs included
    assert pca_2d(np.ones((1, 4))).coords.tolist() == [[0.0, 0.0]]


def test_json_log_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    logger = configure_logging("json", stream=stream)
    try:
        logging.getLogger("hybridrec.request").info("request", extra={"fields": {"route": "/x", "latency_ms": 1.5}})
    finally:
        logger.handlers.clear()
        logger.propagate = True
    line = json.loads(stream.getvalue())
    assert line["message"] == "request" and line["route"] == "/x" and line["latency_ms"] == 1.5
    assert line["logger"] == "hybridrec.request" and line["level"] == "INFO" and line["ts"].endswith("Z")

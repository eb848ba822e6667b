"""Daily steps: JSON log lines with partition and version, Prometheus textfiles, the gate's recorded decision."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch.daily import gate
from batch.quality import QualityGateFailed
from batch.textfile import run_families, write_families
from feature_store.redis_store import RedisStore
from shared.config import Settings
from shared.logs import LOGGER, configure_logging

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 3, 4)
WORSE = {"k": 10, "n_users": 50, "candidate": {"recall": 0.1, "ndcg": 0.05}, "current": {"recall": 0.3, "ndcg": 0.2}}


@pytest.fixture()
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logger = configure_logging("json", stream=stream)
    yield stream
    logger.handlers.clear()
    logger.propagate = True


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_refused_gate_is_logged_recorded_and_raised(
    settings: Settings, store: RedisStore, json_lines: io.StringIO
) -> None:
    comparison = {**WORSE, "current_version": "2026-03-03.00000000aa", "note": ""}
    with pytest.raises(QualityGateFailed):
        gate(settings, comparison, force=False, partition=DAY)
    decision = store.versions.last_gate()
    assert decision["outcome"] == "refused" and decision["partition"] == "2026-03-04"
    assert "RECALL@10" in decision["message"] and decision["current_version"] == "2026-03-03.00000000aa"
    failed = records(json_lines)[-1]
    assert failed["level"] == "ERROR" and failed["step"] == "quality_gate" and failed["partition"] == "2026-03-04"
    assert failed["outcome"] == "refused" and failed["version"] == "2026-03-03.00000000aa" and failed["seconds"] >= 0
    assert not (settings.textfile_dir / "hybridrec_step_quality_gate.prom").exists()  # only a success is written

    message = gate(settings, comparison, force=True, partition=DAY)
    assert message.startswith("quality gate overridden by force_publish")
    assert store.versions.last_gate()["outcome"] == "forced"
    done = records(json_lines)[-1]
    assert done["message"].startswith("quality_gate finished") and done["outcome"] == "forced"
    text = (settings.textfile_dir / "hybridrec_step_quality_gate.prom").read_text()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    duration = next(s for s in samples if s.name == "hybridrec_batch_step_duration_seconds")
    assert duration.labels == {"step": "quality_gate", "partition": "2026-03-04", "version": "2026-03-03.00000000aa"}


def test_no_comparison_passes_and_says_so(settings: Settings, store: RedisStore) -> None:
    comparison = {"k": 10, "n_users": 0, "candidate": None, "current": None, "current_version": None, "note": "first"}
    assert gate(settings, comparison, force=False, partition=DAY) == "quality gate passed: no comparison (first)"
    assert store.versions.last_gate()["outcome"] == "no_comparison"


def test_text_format_adds_the_fields_after_the_message(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    logger = configure_logging("text", stream=stream)
    try:
        logging.getLogger(f"{LOGGER}.batch").info("publish finished", extra={"fields": {"partition": "2026-03-04"}})
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert stream.getvalue().rstrip().endswith("hybridrec.batch: publish finished partition=2026-03-04")


def test_the_run_textfile_holds_timings_sizes_and_offline_metrics(tmp_path) -> None:
    manifest = {"partition": "2026-03-04", "timings_s": {"train": 1.5, "write": 0.25}, "n_users": 9, "n_items": 4}
    metrics = {"k": 10, "als": {"recall": 0.4, "ndcg": 0.2}, "popularity": {"recall": 0.1, "ndcg": 0.05}}
    path = write_families(tmp_path / "m" / "run.prom", run_families(manifest, metrics))
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(path.read_text())
        for s in f.samples
    }
    assert got[("hybridrec_batch_run_step_seconds", (("partition", "2026-03-04"), ("step", "train")))] == 1.5
    assert got[("hybridrec_batch_run_size", (("partition", "2026-03-04"), ("what", "users")))] == 9
    key = (("k", "10"), ("metric", "ndcg"), ("model", "als"), ("partition", "2026-03-04"))
    assert got[("hybridrec_batch_offline_metric", key)] == 0.2
    assert not list(path.parent.glob("*.tmp*"))  # written atomically: no temporary file left

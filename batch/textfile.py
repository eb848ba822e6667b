"""Batch metrics in Prometheus's text format, as files for node_exporter's textfile collector.

Each writer replaces one file under ``settings.textfile_dir`` (``<data_dir>/metrics/``) atomically
(prometheus_client's ``write_to_textfile`` writes a temporary file and renames it), so a scrape never
reads half a file and a rerun overwrites the last one. Metric families are built directly (no metric
objects), so the files are the same whatever ``PROMETHEUS_MULTIPROC_DIR`` says.

* ``hybridrec_step_<step>.prom`` (every daily step, batch.steplog): its duration and when it last succeeded;
* ``hybridrec_run_batch.prom`` (batch.pipeline): the run's step timings, sizes and offline metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def write_families(path: Path, families: list[Metric]) -> Path:
    """Write ``families`` to ``path`` in the text format, atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    registry.register(_Families(families))
    write_to_textfile(str(path), registry)
    return path


def step_families(step: str, seconds: float, fields: Mapping[str, Any]) -> list[Metric]:
    """A finished daily step: its duration and success time, labelled with its partition (and version)."""
    labels = {"step": step, **{k: str(fields[k]) for k in ("partition", "version") if fields.get(k)}}
    names, values = list(labels), list(labels.values())
    duration = GaugeMetricFamily(
        "hybridrec_batch_step_duration_seconds", "Wall time of the step's last successful run.", labels=names
    )
    duration.add_metric(values, seconds)
    success = GaugeMetricFamily(
        "hybridrec_batch_step_last_success_timestamp_seconds", "When the step last succeeded (unix time).", labels=names
    )
    success.add_metric(values, time.time())
    return [duration, success]


def run_families(manifest: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Metric]:
    """A batch run (``runs/date=D/``): step timings, sizes and the holdout metrics of ALS and popularity."""
    partition = str(manifest["partition"])
    steps = GaugeMetricFamily(
        "hybridrec_batch_run_step_seconds", "Seconds each step of the batch run took.", labels=["partition", "step"]
    )
    for name, seconds in (manifest.get("timings_s") or {}).items():
        steps.add_metric([partition, name], float(seconds))
    sizes = GaugeMetricFamily(
        "hybridrec_batch_run_size", "What the run trained on: interactions, users, items.", labels=["partition", "what"]
    )
    for what in ("n_interactions", "n_users", "n_items", "n_anonymous_events"):
        if manifest.get(what) is not None:
            sizes.add_metric([partition, what.removeprefix("n_")], float(manifest[what]))
    offline = GaugeMetricFamily(
        "hybridrec_batch_offline_metric",
        "Holdout metrics of the run (temporal holdout, full ranking), per model.",
        labels=["partition", "model", "metric", "k"],
    )
    k = str(metrics.get("k", ""))
    for model in ("als", "popularity"):
        for name, value in (metrics.get(model) or {}).items():
            if isinstance(value, int | float):
                offline.add_metric([partition, model, name, k], float(value))
    return [steps, sizes, offline]

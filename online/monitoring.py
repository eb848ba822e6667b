"""Served-request counters per routing tier and flag, summed over all API workers.

Each request adds to an in-process Counter (a lock and a dict update; no I/O on the request path).
A background thread flushes the counts to the store every ``interval_s`` in one pipelined round
trip, so the cost of monitoring does not grow with traffic, and ``/metrics`` reads the shared totals,
whichever worker answers it. Counts not yet flushed (at most one interval) are added from this
process; a failed flush keeps its counts for the next one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from feature_store.base import FeatureStore
from shared.errors import StoreError

log = logging.getLogger("hybridrec.online")


class ServedCounters:
    def __init__(self, store: FeatureStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, strategy: str, flags: list[str]) -> None:
        with self._lock:
            self._pending[f"strategy:{strategy}"] += 1
            for flag in flags:
                self._pending[f"flag:{flag}"] += 1

    def flush(self) -> None:
        with self._lock:
            counts, self._pending = self._pending, Counter()
        if not counts:
            return
        try:
            self.store.add_counters(counts)
        except StoreError as exc:
            log.warning("could not flush served counters, keeping them: %s", exc)
            with self._lock:
                self._pending.update(counts)

    def totals(self) -> dict[str, int]:
        """Shared totals plus this process's unflushed counts. StoreError if the store is down."""
        totals = Counter(self.store.read_counters())
        with self._lock:
            totals.update(self._pending)
        return dict(totals)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hybridrec-counters", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def prometheus_text(totals: dict[str, int], version: str | None) -> str:
    """Prometheus exposition format (text 0.0.4) of the served counters."""
    lines = [
        "# HELP hybridrec_requests_total Recommendation requests served, by routing tier.",
        "# TYPE hybridrec_requests_total counter",
    ]
    lines += [
        f'hybridrec_requests_total{{strategy="{name.split(":", 1)[1]}"}} {n}'
        for name, n in sorted(totals.items())
        if name.startswith("strategy:")
    ]
    lines += [
        "# HELP hybridrec_request_flags_total Requests that carried a flag (degradations, unknown users).",
        "# TYPE hybridrec_request_flags_total counter",
    ]
    lines += [
        f'hybridrec_request_flags_total{{flag="{name.split(":", 1)[1]}"}} {n}'
        for name, n in sorted(totals.items())
        if name.startswith("flag:")
    ]
    lines += [
        "# HELP hybridrec_model_info The model version this worker serves.",
        "# TYPE hybridrec_model_info gauge",
        f'hybridrec_model_info{{version="{version or ""}"}} 1',
    ]
    return "\n".join(lines) + "\n"

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

from feature_store.base import Counters
from online.periodic import Periodic
from shared.errors import StoreError

log = logging.getLogger("hybridrec.online")


class ServedCounters:
    def __init__(self, store: Counters, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = Periodic(self.flush, interval_s, "hybridrec-counters")

    def record(self, strategy: str, flags: list[str]) -> None:
        with self._lock:
            self._pending[f"strategy:{strategy}"] += 1
            for flag in flags:
                self._pending[f"flag:{flag}"] += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named counter: ``reload_failed``, or ``events:<outcome>`` (accepted, duplicate,
        trimmed, refused_backlog); see :func:`prometheus_text`."""
        if n:
            with self._lock:
                self._pending[name] += n

    def flush(self) -> None:
        with self._lock:
            counts, self._pending = self._pending, Counter()
        if not counts:
            return
        try:
            self.store.add(counts)
        except StoreError as exc:
            log.warning("could not flush served counters, keeping them: %s", exc)
            with self._lock:
                self._pending.update(counts)

    def totals(self) -> dict[str, int]:
        """Shared totals plus this process's unflushed counts. StoreError if the store is down."""
        totals = Counter(self.store.read())
        with self._lock:
            totals.update(self._pending)
        return dict(totals)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self.flush()


def prometheus_text(totals: dict[str, int], version: str | None) -> str:
    """Prometheus exposition format (text 0.0.4) of the served counters."""
    lines = _counter(totals, "strategy", "hybridrec_requests_total", "Recommendation requests served, by routing tier.")
    lines += _counter(
        totals, "flag", "hybridrec_request_flags_total", "Requests that carried a flag (degradations, unknown users)."
    )
    lines += _counter(
        totals,
        "events",
        "hybridrec_events_total",
        "Live events posted, by outcome: accepted (stored), duplicate (an event_id accepted before: stored once), "
        "trimmed (un-compacted events the stream's cap dropped), refused_backlog (refused: the backlog is full).",
        label="outcome",
    )
    lines += [
        "# HELP hybridrec_model_reload_failures_total Failed attempts to load the published version (retried).",
        "# TYPE hybridrec_model_reload_failures_total counter",
        f"hybridrec_model_reload_failures_total {totals.get('reload_failed', 0)}",
        "# HELP hybridrec_model_info The model version this worker serves.",
        "# TYPE hybridrec_model_info gauge",
        f'hybridrec_model_info{{version="{version or ""}"}} 1',
    ]
    return "\n".join(lines) + "\n"


def _counter(totals: dict[str, int], kind: str, metric: str, help_text: str, label: str | None = None) -> list[str]:
    """One Prometheus counter family from the ``<kind>:<value>`` entries of ``totals`` (label ``label``,
    default ``kind``)."""
    lines = [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
    prefix = f"{kind}:"
    return lines + [
        f'{metric}{{{label or kind}="{name[len(prefix) :]}"}} {n}'
        for name, n in sorted(totals.items())
        if name.startswith(prefix)
    ]

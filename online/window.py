"""What the API served, minute by minute, summed over every worker and replica: the operator page's windows.

Each request adds to an in-process counter keyed by (minute, name): a lock and a dict update, no I/O on
the request path. A background thread flushes the counts every ``interval_s`` in one pipelined round
trip into one hash per minute (``feature_store.keys``, ``p:stats:m:<minute>``, kept for a few hours),
so the cost does not grow with traffic and ``/ops/data`` sees the same totals whichever worker answers.
A failed flush keeps its counts for the next one.

Names: ``tier:<strategy>``, ``flag:<flag>``, ``lat:<strategy>:<bucket>`` (the index in
:data:`LATENCY_BUCKETS_S` of the first bound >= the request's latency; ``len`` for "above the last"),
``store_error:<kind>``, ``events:<outcome>``.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from feature_store.base import Counters
from online.periodic import Periodic
from shared.errors import StoreError

log = logging.getLogger("hybridrec.online")

# Upper bounds (seconds) of the request-latency histograms: Prometheus's and the per-minute windows'.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


def latency_bucket(seconds: float) -> int:
    """Index of the first bound >= ``seconds``; ``len(LATENCY_BUCKETS_S)`` when above them all."""
    return bisect_left(LATENCY_BUCKETS_S, seconds)


def minute_of(unix_s: float) -> int:
    return int(unix_s // 60)


class WindowCounters:
    def __init__(self, store: Counters, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._pending: Counter[tuple[int, str]] = Counter()
        self._lock = threading.Lock()
        self._loop = Periodic(self.flush, interval_s, "hybridrec-counters")

    def add(self, names: Iterable[str], n: int = 1) -> None:
        """Add ``n`` to each of ``names`` in the current minute."""
        minute = minute_of(self.clock())
        with self._lock:
            for name in names:
                self._pending[(minute, name)] += n

    def flush(self) -> None:
        with self._lock:
            counts, self._pending = self._pending, Counter()
        if not counts:
            return
        by_minute: dict[int, dict[str, int]] = {}
        for (minute, name), n in counts.items():
            by_minute.setdefault(minute, {})[name] = n
        try:
            self.store.add(by_minute)
        except StoreError as exc:
            log.warning("could not flush served counters, keeping them: %s", exc)
            with self._lock:
                self._pending.update(counts)

    def read(self, minutes: Sequence[int]) -> dict[int, dict[str, int]]:
        """minute -> name -> count: the shared totals plus this process's unflushed counts.
        StoreError if the store cannot be read."""
        totals = self.store.read(minutes)
        with self._lock:
            for (minute, name), n in self._pending.items():
                if minute in totals:
                    totals[minute][name] = totals[minute].get(name, 0) + n
        return totals

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self.flush()

"""Token buckets per client, in the memory of one API worker.

Why in process and not in Redis: a Redis-backed bucket costs a round trip on every request, the read
path included (where the whole request budget is a few milliseconds and one pipelined round trip); an
in-process bucket costs about a microsecond. The price: each worker keeps its own buckets, so with N
workers a client that spreads its connections over all of them gets up to N times the configured rate.
That is enough for what it is for, stopping floods and runaway clients; an exact global quota belongs in
the reverse proxy in front (README "API security").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """``rate_per_s`` tokens per second per client, up to ``burst``; one token per request.

    Memory is bounded: at most ``max_clients`` buckets, the least recently used dropped first (a
    dropped bucket comes back full, which only errs on the side of admitting). Not thread-safe: the
    API calls it from the event loop only (an async dependency).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"need rate_per_s > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at), least recently used first

    def take(self, client: str) -> float:
        """Take one token for ``client``: 0.0 if admitted, else the seconds until a token is there."""
        now = self.clock()
        last = self._buckets.pop(client, None)
        tokens = self.burst if last is None else min(self.burst, last[0] + (now - last[1]) * self.rate)
        admitted = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if admitted else tokens, now)
        if len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return 0.0 if admitted else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait_s: float) -> int:
    """Whole seconds for ``Retry-After`` (at least 1: 0 would invite an immediate retry)."""
    return max(1, math.ceil(wait_s))

"""One background loop for the API's periodic work (model reload, counter flush)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("hybridrec.online")


class Periodic:
    """Call ``fn`` every ``interval_s`` in a daemon thread until ``stop()``.

    An exception from ``fn`` is logged and the loop goes on: one bad call must not end the work for
    the life of the process (a dead reload thread would serve a stale version forever).
    """

    def __init__(self, fn: Callable[[], object], interval_s: float, name: str) -> None:
        self.fn = fn
        self.interval_s = interval_s
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fn()
            except Exception:
                log.exception("%s: periodic call failed; retrying in %.1fs", self.name, self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

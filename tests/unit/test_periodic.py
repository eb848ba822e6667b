"""The API's background loop survives a failing call (a dead reload thread would serve a stale version forever)."""

from __future__ import annotations

import threading

from online.periodic import Periodic


def test_a_call_that_raises_does_not_end_the_loop() -> None:
    calls: list[int] = []
    done = threading.Event()

    def flaky() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise TypeError("'NoneType' object is not subscriptable")  # what a corrupt value looked like
        if len(calls) == 3:
            done.set()

    loop = Periodic(flaky, 0.01, "test-loop")
    loop.start()
    try:
        assert done.wait(5), f"the loop stopped after {len(calls)} call(s)"
    finally:
        loop.stop()

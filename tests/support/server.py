"""Run the real app under a real uvicorn on a free loopback port, in a thread, for HTTP tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from feature_store.embedded import free_port
from online.app import create_app
from shared.config import Settings


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Yield the base URL of a running server; shut it down (lifespan included) on exit."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)

"""`hybridrec serve`: the API under uvicorn, with prometheus_client's multiprocess directory set up for its workers.

uvicorn's workers are separate processes, each with its own metrics. prometheus_client's multiprocess
mode has each write its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them, so
a scrape sees the whole server whichever worker answers. The directory must be set before a worker
imports prometheus_client (it is inherited from this process's environment) and must start empty:
files of an earlier server would be counted again. So ``serve`` empties it at every start
(``HYBRIDREC_METRICS_DIR``), or makes a new temporary one and removes it at exit. A configured directory
is held with a lock (``flock`` on ``<dir>/serve.lock``, released when the server exits, however it exits):
a second server given the same directory refuses to start instead of deleting the first one's live files
and mixing both servers' metrics.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.config import Settings
from shared.errors import ConfigError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_dir(configured: Path | None) -> Iterator[Path]:
    """An empty directory for the workers' metric files: ``configured`` emptied of its ``*.db`` files, or a new
    temporary directory that is removed afterwards."""
    if configured is None:
        path = Path(tempfile.mkdtemp(prefix="hybridrec-metrics-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    configured.mkdir(parents=True, exist_ok=True)
    with (configured / "serve.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ConfigError(
                f"HYBRIDREC_METRICS_DIR {configured} is in use by a running `hybridrec serve` ({holder}): "
                "give each server its own directory (or leave it unset for a temporary one)"
            ) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        for stale in configured.glob("*.db"):
            stale.unlink()
        yield configured


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    with metrics_dir(settings.metrics_dir) as path:
        os.environ[MULTIPROC_ENV] = str(path)  # inherited by every worker, read when it imports prometheus_client
        uvicorn.run("online.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="warning")

"""`hybridrec serve`: the API under uvicorn, with prometheus_client's multiprocess directory set up for its workers.

uvicorn's workers are separate processes, each with its own metrics. prometheus_client's multiprocess
mode has each write its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them, so
a scrape sees the whole server whichever worker answers. The directory must be set before a worker
imports prometheus_client (it is inherited from this process's environment) and must start empty:
files of an earlier server would be counted again. So ``serve`` empties it at every start
(``HYBRIDREC_METRICS_DIR``), or makes a new temporary one and removes it at exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.config import Settings

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
    for stale in configured.glob("*.db"):
        stale.unlink()
    yield configured


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    with metrics_dir(settings.metrics_dir) as path:
        os.environ[MULTIPROC_ENV] = str(path)  # inherited by every worker, read when it imports prometheus_client
        uvicorn.run("online.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="warning")

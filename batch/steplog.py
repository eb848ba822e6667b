"""Every daily step, logged and measured the same way: one line when it starts, one when it ends.

``with logged_step(settings, "publish", partition) as out: ... out["version"] = v`` logs
``step``, ``partition``, the fields the step adds (its version, its outcome) and ``seconds`` under the
``hybridrec.batch`` logger (JSON lines with ``HYBRIDREC_LOG_FORMAT=json``, in an Airflow task too), and
writes the step's textfile (batch.textfile) when it succeeds. A failure is logged with its error and
re-raised.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batch.textfile import step_families, write_families
from shared.config import Settings
from shared.logs import ensure_logging

log = logging.getLogger("hybridrec.batch")


@contextmanager
def logged_step(settings: Settings, step: str, partition: dt.date | None) -> Iterator[dict[str, Any]]:
    ensure_logging(settings.log_format)
    fields: dict[str, Any] = {"step": step, "partition": partition.isoformat() if partition else None}
    log.info("%s started", step, extra={"fields": fields})
    out: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        yield out
    except Exception as exc:
        seconds = round(time.perf_counter() - start, 3)
        log.error(
            "%s failed: %s", step, exc, extra={"fields": {**fields, **out, "seconds": seconds, "error": str(exc)}}
        )
        raise
    seconds = round(time.perf_counter() - start, 3)
    done = {**fields, **out, "seconds": seconds}
    log.info("%s finished in %.2fs", step, seconds, extra={"fields": done})
    write_families(settings.textfile_dir / f"hybridrec_step_{step}.prom", step_families(step, seconds, done))

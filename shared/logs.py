"""Logging setup for every entry point: human text lines, or one JSON object per line.

``configure_logging(fmt)`` installs one handler on the ``hybridrec`` logger (idempotent: calling it
again replaces it). A record's structured fields travel in ``extra={"fields": {...}}``; the JSON
format puts them at the top level of the line, the text format appends them as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

LOGGER = "hybridrec"
_HANDLER_NAME = "hybridrec-configured"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", **fields}``, plus ``exc`` with the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        return text + "".join(f" {k}={v}" for k, v in fields.items()) if fields else text


def configure_logging(fmt: str = "text", level: int = logging.INFO, stream: IO[str] | None = None) -> logging.Logger:
    """Send ``hybridrec.*`` records to ``stream`` (stderr) in ``fmt`` ("text" or "json"); returns the logger."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one line per record, not a second one from the root logger's handler
    return logger


def ensure_logging(fmt: str) -> None:
    """For code that may run where nobody configured logging (an Airflow task): JSON lines when ``fmt`` is
    "json" and no entry point has configured the ``hybridrec`` logger yet; otherwise leave logging alone."""
    logger = logging.getLogger(LOGGER)
    if fmt == "json" and not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        configure_logging(fmt)

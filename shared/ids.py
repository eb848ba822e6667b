"""Identifiers: version ids and partition dates."""

from __future__ import annotations

import datetime as dt

from shared.errors import ConfigError
from shared.schemas import DATE_FORMAT


def parse_date(value: str | dt.date) -> dt.date:
    """Parse ``YYYY-MM-DD`` (or pass a date through); raise ConfigError with the bad value otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.datetime.strptime(value, DATE_FORMAT).date()
    except (TypeError, ValueError):
        raise ConfigError(f"not a date: {value!r} (expected YYYY-MM-DD)") from None


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Inclusive list of dates from start to end; ConfigError if end is before start."""
    if end < start:
        raise ConfigError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def make_version_id(partition: dt.date, content_hash: str) -> str:
    """A version id is ``YYYY-MM-DD.<first 10 hex of the artifacts' hash>``.

    Deterministic: the same partition and the same artifacts give the same id, so republishing a run
    is idempotent, and ids sort by date.
    """
    return f"{partition.strftime(DATE_FORMAT)}.{content_hash[:10]}"

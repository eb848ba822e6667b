"""Identifiers: version ids, partition dates, and what a session id says about its owner."""

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


# The first character of a session id's random part (online.sessions issues ``<mark><random>.<mac>``):
# a session bound to a user, or an anonymous one. Here, not in online/, because the store's key layout on
# Redis Cluster keeps a user's sessions in that user's hash slot (feature_store.keys).
USER_SESSION = "u"
ANONYMOUS_SESSION = "a"


def session_owner(session_id: str, user_id: str | None) -> str | None:
    """The user whose session ``session_id`` is: ``user_id`` when the id has the form of a session issued
    for a user (``u<random>.<mac>``), else None (anonymous, or an id a client chose with auth off).

    The form is not checked cryptographically here (online.sessions does that with auth on, so there
    ``user_id`` IS the user the session was issued for, on writes and on reads alike).
    """
    if not user_id or not session_id.startswith(USER_SESSION):
        return None
    random_part, dot, _ = session_id.rpartition(".")
    return user_id if dot and len(random_part) >= 2 else None

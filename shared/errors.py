"""One exception hierarchy for hybridrec.

Every layer raises these (never a bare ``ValueError`` across a boundary), so the CLI can print a
one-line message with a non-zero exit and the API can map each kind to a stable JSON ``error`` code.
"""

from __future__ import annotations


class HybridrecError(Exception):
    """Base class. ``code`` is the stable machine-readable identifier shown to API clients."""

    code = "hybridrec_error"
    exit_code = 1


class ConfigError(HybridrecError):
    """A setting is missing or inconsistent (e.g. no Redis URL where one is required)."""

    code = "config_error"
    exit_code = 2


class DataValidationError(HybridrecError):
    """An input file is not what it claims to be (unreadable, wrong format, missing columns)."""

    code = "invalid_input"
    exit_code = 3


class ModelError(HybridrecError):
    """A model or artifact failed a sanity check (shape mismatch, NaN factors, empty matrix)."""

    code = "model_error"
    exit_code = 4


class ArtifactNotFound(HybridrecError):
    """A batch step needs an artifact that an earlier step has not produced yet."""

    code = "artifact_not_found"
    exit_code = 5


class StoreError(HybridrecError):
    """The online store failed; subclasses say how, so the online layer can choose a fallback."""

    code = "store_error"
    exit_code = 6


class StoreUnavailable(StoreError):
    """The store cannot be reached (connection refused, reset, DNS)."""

    code = "store_unavailable"


class StoreTimeout(StoreError):
    """The store did not answer within the configured timeout."""

    code = "store_timeout"


class StoreFull(StoreError):
    """Redis is at maxmemory with noeviction and refused a write (what it refused was not stored)."""

    code = "store_full"


class EventsBacklogFull(StoreError):
    """The live-events stream holds as many un-compacted events as it may; the batch was not stored."""

    code = "events_backlog_full"


class VersionNotFound(StoreError):
    """No published version exists (or the requested one was pruned)."""

    code = "version_not_found"


class PublishError(StoreError):
    """A publish did not verify; the pointer was not switched and the previous version still serves."""

    code = "publish_failed"


class NotFound(HybridrecError):
    """A requested entity (item, user) is not in the current version."""

    code = "not_found"
    exit_code = 7

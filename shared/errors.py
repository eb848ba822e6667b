"""One exception hierarchy for hybridrec.

Every layer raises these (never a bare ``ValueError`` across a boundary), so the CLI can print a
one-line message with a non-zero exit and the API can map each kind to a stable JSON ``error`` code.
"""

from __future__ import annotations


class HybridrecError(Exception):
    """Base class. ``code`` is the stable machine-readable identifier shown to API clients.

    ``public``: a message written for API clients (no hosts, ports or commands), which the API shows
    instead of its generic text for the kind; the exception's own message goes to the log.
    """

    code = "hybridrec_error"
    exit_code = 1

    def __init__(self, *args: object, public: str | None = None) -> None:
        super().__init__(*args)
        self.public = public


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


class ReplicationTimeout(StoreError):
    """A write reached the primary, but fewer replicas than required confirmed it in time: it may be
    lost if the primary fails before they do."""

    code = "replication_timeout"


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


class RequestRefused(HybridrecError):
    """An API request refused before it reached a use case (who is asking, how much, in what form).

    The online layer maps each subclass to its HTTP status (401, 403, 413, 415, 429)."""

    code = "request_refused"
    exit_code = 3


class Unauthorized(RequestRefused):
    """No API key, or one the server does not know."""

    code = "unauthorized"


class Forbidden(RequestRefused):
    """A valid API key without the scope the route needs."""

    code = "forbidden"


class PayloadTooLarge(RequestRefused):
    """The request body is longer than the configured limit."""

    code = "payload_too_large"


class UnsupportedMediaType(RequestRefused):
    """A write whose body is not declared as JSON (e.g. a cross-site ``text/plain`` form post)."""

    code = "unsupported_media_type"


class RateLimited(RequestRefused):
    """The caller's token bucket is empty; ``retry_after_s`` says when the next request will be admitted."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

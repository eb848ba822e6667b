"""The online store's interfaces, one per kind of user, and the records that cross them.

* :class:`VersionStore`: batch publishes a :class:`VersionData` (write, verify, activate, prune,
  rollback); the API loads an :class:`ItemBundle` once per version (in a background thread);
  ``read_request`` gives tools and tests the :class:`RequestFeatures` the API reads.
* :class:`EventLog`: live events are appended (to the session and to the durable stream);
  compaction drains the stream through a consumer group.
* :class:`OnlineStore`: the API's request path, on an asyncio client: per request a
  :class:`StoredRequest` (user record + live session, one round trip, still encoded), and appends.
* :class:`Counters`: per-minute served-request counters shared by all API workers.

Implementations translate their client's exceptions into ``shared.errors.StoreError`` subclasses.
Which arrays a version holds is declared once, in ``feature_store.layout``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from feature_store.layout import ITEM_ARRAY, USER_ARRAY


@dataclass(frozen=True)
class SessionEvent:
    item_id: str
    event_type: str
    ts: float  # unix seconds, UTC
    event_id: str
    user_id: str | None = None
    session_id: str | None = None
    weight: float | None = None


class UserRecord:
    """One user's arrays of a version (``layout.USER_ARRAYS``), by name: ``UserRecord(vector=...,
    candidates=...)``; ``record.vector`` float32 (f,), ``record.candidates`` int32 (n,). An array the
    version does not hold reads as empty."""

    __slots__ = ("arrays",)

    def __init__(self, **arrays: np.ndarray) -> None:
        unknown = set(arrays) - set(USER_ARRAY)
        if unknown:
            raise TypeError(f"unknown user array(s) {sorted(unknown)}; layout.USER_ARRAYS has {sorted(USER_ARRAY)}")
        self.arrays: dict[str, np.ndarray] = arrays

    def __getattr__(self, name: str) -> np.ndarray:
        spec = USER_ARRAY.get(name)
        if spec is None:
            raise AttributeError(name)
        got = self.arrays.get(name)
        return got if got is not None else np.empty(0, dtype=spec.memory)

    def __repr__(self) -> str:
        return f"UserRecord({', '.join(f'{k}={v!r}' for k, v in self.arrays.items())})"


@dataclass(frozen=True)
class Catalogue:
    """The items of a version, row j = item j: ids, categories, titles, availability (each (n_items,))."""

    item_ids: Sequence[str]
    categories: Sequence[str]
    titles: Sequence[str]
    available: Sequence[bool]


@dataclass(frozen=True)
class VersionData:
    """A complete version to publish.

    ``user_arrays[name]``: one 1-D array per user, in ``user_ids`` order (padding already dropped);
    ``item_arrays[name]``: (n_items, ...) per ``layout.ITEM_ARRAYS``; ``popular``: category (or
    ``keys.ALL_CATEGORIES``) -> int32 item indices, best first.
    """

    version: str
    meta: dict[str, Any]
    user_ids: Sequence[str]
    user_arrays: Mapping[str, Sequence[np.ndarray]]
    catalogue: Catalogue
    item_arrays: Mapping[str, np.ndarray]
    popular: Mapping[str, np.ndarray]

    def user_record(self, i: int) -> UserRecord:
        return UserRecord(**{name: rows[i] for name, rows in self.user_arrays.items()})


@dataclass(frozen=True)
class ItemBundle:
    """Item-level data of one version, loaded whole into API memory.

    The arrays of ``layout.ITEM_ARRAYS`` are attributes (``bundle.item_factors`` float32 (n_items, f),
    ``bundle.neighbours`` int32 (n_items, m), ...), in their ``memory`` dtype.
    """

    version: str
    meta: dict[str, Any]
    item_ids: list[str]
    categories: np.ndarray  # object (n_items,)
    titles: list[str]
    available: np.ndarray  # bool (n_items,)
    arrays: Mapping[str, np.ndarray]
    popular: dict[str, np.ndarray]  # category -> int32 indices, best first
    item_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_index:
            self.item_index.update({item: i for i, item in enumerate(self.item_ids)})

    def __getattr__(self, name: str) -> np.ndarray:
        if name not in ITEM_ARRAY:
            raise AttributeError(name)
        return self.arrays[name]


@dataclass(frozen=True)
class RequestFeatures:
    user: UserRecord | None  # None: user unknown in this version
    session: list[SessionEvent]  # oldest first, the newest ``session_max_events``
    session_seen: frozenset[str] = frozenset()  # every item id of the session, beyond the list's cap


@dataclass(frozen=True)
class StoredRequest:
    """What one request read from the store, still encoded (``codecs.decode_request`` decodes it), so
    that a response cache can answer from ``session_digest`` without decoding anything.

    ``user``: the user record's bytes (None: unknown in the version); ``session``: the session list's
    elements, oldest first; ``seen``: the members of the session's seen set.
    """

    user: bytes | None
    session: list[bytes]
    seen: Sequence[bytes]

    def session_digest(self) -> bytes:
        """16 bytes that change whenever the stored session does (every event appends to the list,
        and every session element carries its event's unique id); empty without a session."""
        if not self.session and not self.seen:
            return b""
        h = hashlib.blake2b(digest_size=16)
        for raw in self.session:
            h.update(len(raw).to_bytes(4, "little"))
            h.update(raw)
        h.update(len(self.seen).to_bytes(4, "little"))
        return h.digest()


@dataclass(frozen=True)
class AppendResult:
    """What appending live events did: ``duplicates`` are the ids of events already accepted earlier
    (or earlier in the same batch), stored once and not again; ``trimmed`` counts un-compacted
    events the stream's cap dropped to make room (backlog policy "trim"); ``sessions_missed`` (Redis
    Cluster only) counts stored events that could not be added to their live sessions, and
    ``sessions_error`` says why (feature_store.redis_events)."""

    duplicates: list[str] = field(default_factory=list)
    trimmed: int = 0
    sessions_missed: int = 0
    sessions_error: str = ""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    meta: dict[str, Any] | None  # None: started but never completed (a killed publish)
    started_at: float
    is_current: bool
    is_previous: bool


ProgressFn = Callable[[int], None]


class VersionStore(Protocol):
    # --- publishing (batch); each step takes the publish lock, ``publishing()`` holds it across steps ---
    def publishing(self) -> AbstractContextManager[object]: ...
    def write_version(
        self, data: VersionData, progress: ProgressFn | None = None, keep: int | None = None
    ) -> list[str]: ...
    # write_version in stages, for a publish whose user ranges are written by several processes
    def begin_version(self, data: VersionData, keep: int | None = None, staged: bool = True) -> list[str]: ...
    def write_user_range(
        self, version: str, data: VersionData, rows: range, progress: ProgressFn | None = None
    ) -> int: ...
    def finish_version(self, data: VersionData) -> None: ...
    def activate(self, version: str) -> str | None: ...
    def rollback(self) -> str: ...
    def prune(self, keep: int) -> list[str]: ...

    # --- reading ---
    def current_version(self) -> str | None: ...
    def list_versions(self) -> list[VersionInfo]: ...
    def read_meta(self, version: str) -> dict[str, Any] | None: ...
    def count_user_keys(self, version: str) -> int: ...
    def read_item_bundle(self, version: str) -> ItemBundle: ...
    def read_request(self, version: str, user_id: str | None, session_id: str | None) -> RequestFeatures: ...
    def sample_users(self, version: str, n: int) -> list[str]: ...

    # --- the quality gate's latest decision (written by the daily DAG, shown by the operator page) ---
    def record_gate(self, decision: Mapping[str, Any]) -> None: ...
    def last_gate(self) -> dict[str, Any] | None: ...


class EventLog(Protocol):
    # --- live events (online) ---
    def append(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None = None) -> AppendResult: ...
    def read_session(self, session_id: str, user_id: str | None = None) -> list[SessionEvent]: ...

    # --- draining the stream (batch compaction) ---
    def stream_length(self) -> int: ...
    def ensure_consumer_group(self, group: str) -> bool: ...
    def read_events(
        self, group: str, consumer: str, count: int, pending_first: bool
    ) -> list[tuple[str, SessionEvent]]: ...
    def ack_events(self, group: str, ids: Sequence[str]) -> int: ...
    def pending_count(self, group: str, consumer: str | None = None) -> int: ...


class OnlineStore(Protocol):
    """The API's request path (asyncio): one read per request, appends of live events."""

    async def read_request(self, version: str, user_id: str | None, session_id: str | None) -> StoredRequest: ...
    async def append(self, events: Sequence[SessionEvent], dedupe: Sequence[bool] | None = None) -> AppendResult: ...
    async def current_version(self) -> str | None: ...


class Counters(Protocol):
    """Per-minute counters (minute = unix seconds // 60) summed over every API worker."""

    def add(self, counts: Mapping[int, Mapping[str, int]]) -> None: ...
    def read(self, minutes: Sequence[int]) -> dict[int, dict[str, int]]: ...

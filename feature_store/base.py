"""The online store's one narrow interface, and the records that cross it.

Batch publishes a :class:`VersionData`; online reads an :class:`ItemBundle` (once per version, kept in
memory) and, per request, a :class:`RequestFeatures` (one round trip). Implementations translate their
client's exceptions into ``shared.errors.StoreError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from feature_store.codecs import UserRecord


@dataclass(frozen=True)
class SessionEvent:
    item_id: str
    event_type: str
    ts: float  # unix seconds, UTC
    event_id: str
    user_id: str | None = None
    session_id: str | None = None
    weight: float | None = None


@dataclass(frozen=True)
class VersionData:
    """A complete version to publish. Row i of user arrays = ``user_ids[i]``; row j of item arrays = item j."""

    version: str
    meta: dict[str, Any]
    user_ids: Sequence[str]
    user_factors: np.ndarray  # float32 (n_users, f)
    candidates: np.ndarray  # int32 (n_users, n), -1 padded
    item_ids: Sequence[str]
    categories: Sequence[str]
    titles: Sequence[str]
    available: Sequence[bool]
    item_factors: np.ndarray  # float32 (n_items, f)
    neighbours: np.ndarray  # int32 (n_items, m), -1 padded
    neighbour_scores: np.ndarray  # float32 (n_items, m)
    covisit: np.ndarray  # int32 (n_items, m), -1 padded
    covisit_scores: np.ndarray  # float32 (n_items, m)
    popularity: np.ndarray  # float32 (n_items,)
    popular: Mapping[str, np.ndarray]  # category (or keys.ALL_CATEGORIES) -> int32 indices, best first


@dataclass(frozen=True)
class ItemBundle:
    """Item-level data of one version, loaded whole into API memory."""

    version: str
    meta: dict[str, Any]
    item_ids: list[str]
    categories: np.ndarray  # object (n_items,)
    titles: list[str]
    available: np.ndarray  # bool (n_items,)
    item_factors: np.ndarray  # float32 (n_items, f)
    neighbours: np.ndarray  # int32 (n_items, m)
    neighbour_scores: np.ndarray  # float32 (n_items, m)
    covisit: np.ndarray  # int32 (n_items, m), -1 padded
    covisit_scores: np.ndarray  # float32 (n_items, m)
    popularity: np.ndarray  # float32 (n_items,)
    popular: dict[str, np.ndarray]  # category -> int32 indices, best first
    item_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_index:
            self.item_index.update({item: i for i, item in enumerate(self.item_ids)})


@dataclass(frozen=True)
class RequestFeatures:
    user: UserRecord | None  # None: user unknown in this version
    session: list[SessionEvent]  # oldest first


@dataclass(frozen=True)
class VersionInfo:
    version: str
    meta: dict[str, Any] | None  # None: started but never completed (a killed publish)
    started_at: float
    is_current: bool
    is_previous: bool


ProgressFn = Callable[[int], None]


class FeatureStore(Protocol):
    # --- publishing (batch) ---
    def write_version(self, data: VersionData, progress: ProgressFn | None = None) -> None: ...
    def activate(self, version: str) -> str | None: ...
    def rollback(self) -> str: ...
    def prune(self, keep: int) -> list[str]: ...

    # --- reading ---
    def ping(self) -> None: ...
    def current_version(self) -> str | None: ...
    def list_versions(self) -> list[VersionInfo]: ...
    def read_meta(self, version: str) -> dict[str, Any] | None: ...
    def read_item_bundle(self, version: str) -> ItemBundle: ...
    def read_request(self, version: str, user_id: str | None, session_id: str | None) -> RequestFeatures: ...
    def read_user(self, version: str, user_id: str) -> UserRecord | None: ...
    def count_user_keys(self, version: str) -> int: ...

    # --- monitoring ---
    def add_counters(self, counts: Mapping[str, int]) -> None: ...
    def read_counters(self) -> dict[str, int]: ...

    # --- live events ---
    def append_session_events(self, events: Sequence[SessionEvent]) -> None: ...
    def read_session(self, session_id: str) -> list[SessionEvent]: ...

    # --- draining the events stream (batch compaction) ---
    def stream_length(self) -> int: ...
    def ensure_consumer_group(self, group: str) -> None: ...
    def read_events(
        self, group: str, consumer: str, count: int, pending_first: bool
    ) -> list[tuple[str, SessionEvent]]: ...
    def ack_events(self, group: str, ids: Sequence[str]) -> int: ...
    def pending_count(self, group: str, consumer: str | None = None) -> int: ...

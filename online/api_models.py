"""Request and response bodies of the HTTP API (pydantic: validation errors become field-level 422s)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.schemas import EVENT_TYPES, MAX_EVENT_TS_AHEAD, MAX_EVENT_WEIGHT, MAX_ID_LENGTH, MIN_EVENT_TS

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\s]+$")]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: Id
    item_id: Id
    event_type: EventType = "view"
    user_id: Id | None = None
    ts: datetime | None = Field(
        default=None,
        description="Event time (ISO-8601, or epoch seconds), from 2000-01-01 to one day after the server's "
        "clock; no zone means UTC. Default: when the API received it.",
    )
    # strict: a JSON number only (`false` and `"3"` are refused, not converted)
    weight: float | None = Field(default=None, ge=0, le=MAX_EVENT_WEIGHT, allow_inf_nan=False, strict=True)
    event_id: Id | None = Field(default=None, description="Client id for de-duplication; default: a new UUID.")

    @field_validator("ts")
    @classmethod
    def _ts_in_window(cls, ts: datetime | None) -> datetime | None:
        if ts is None:
            return None
        aware = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        latest = datetime.now(UTC) + MAX_EVENT_TS_AHEAD
        if not MIN_EVENT_TS <= aware <= latest:
            raise ValueError(f"must lie between {MIN_EVENT_TS:%Y-%m-%d} and one day after the server's clock")
        return ts


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = Field(default=None, description="The user the session is for; omit for an anonymous visitor.")


class SessionIssued(BaseModel):
    session_id: str = Field(description="Send it with this user's events and recommendation requests.")
    user_id: str | None


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Events stored by this request (duplicates not included).")
    event_ids: list[str] = Field(description="Every event's id, in request order (yours, or a new UUID).")
    duplicates: list[str] = Field(
        default_factory=list, description="Your event ids that were accepted before: stored once, not again."
    )


class RecommendationQuery(BaseModel):
    """The query of ``GET /recommendations/{user_id}`` (other query parameters are ignored)."""

    k: int = Field(default=10, ge=1, le=100, description="How many items (1..100).")
    session_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="From POST /sessions, for this user or anonymous.",
    )
    category: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)


class ScoredItem(BaseModel):
    item_id: str
    score: float
    reason: str = Field(
        description="for_you | similar_to:<item_id> | often_next_to:<item_id> | popular | popular_in_category"
    )


class Recommendations(BaseModel):
    items: list[ScoredItem]
    model_version: str
    strategy: str = Field(description="Routing tier that served: reranked | hybrid | session | precomputed | popular")
    flags: list[str] = Field(
        description="e.g. unknown_user, store_unavailable, store_timeout, short, reranker_over_budget; cached or "
        "semantic_cache when a cache answered"
    )
    took_ms: float


SimilarKind = Literal["als", "covisit"]


class SimilarItems(BaseModel):
    item_id: str
    kind: SimilarKind = Field(description="als: item-factor cosine | covisit: co-visited within sessions")
    items: list[ScoredItem]
    model_version: str


class ErrorBody(BaseModel):
    error: str
    message: str
    fields: list[dict[str, str]] | None = None


class ShopItem(BaseModel):
    item_id: str
    title: str


class Shelf(BaseModel):
    category: str
    items: list[ShopItem] = Field(description="The category's most popular available items, best first.")


class Shelves(BaseModel):
    model_version: str
    categories: list[Shelf]


class SampleUsers(BaseModel):
    model_version: str
    user_ids: list[str] = Field(description="Users with a record in the served version (a sample, sorted).")

"""Request and response bodies of the HTTP API (pydantic: validation errors become field-level 422s)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.schemas import EVENT_TYPES, MAX_EVENT_WEIGHT, MAX_ID_LENGTH

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\s]+$")]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: Id
    item_id: Id
    event_type: EventType = "view"
    user_id: Id | None = None
    ts: datetime | None = Field(default=None, description="Event time; default: when the API received it.")
    weight: float | None = Field(default=None, ge=0, le=MAX_EVENT_WEIGHT, allow_inf_nan=False)
    event_id: Id | None = Field(default=None, description="Client id for de-duplication; default: a new UUID.")


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Events stored by this request (duplicates not included).")
    event_ids: list[str] = Field(description="Every event's id, in request order (yours, or a new UUID).")
    duplicates: list[str] = Field(
        default_factory=list, description="Your event ids that were accepted before: stored once, not again."
    )


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
        description="e.g. unknown_user, store_unavailable, store_timeout, short, reranker_over_budget"
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

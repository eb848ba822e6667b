"""HTTP routes: parse and validate, call one service function, shape the response. No store calls here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import TypeAdapter, ValidationError

from feature_store.base import VersionStore
from online.api_models import (
    ErrorBody,
    EventIn,
    EventsAccepted,
    Recommendations,
    ScoredItem,
    SimilarItems,
    SimilarKind,
)
from online.model import ModelHolder
from online.monitoring import ServedCounters, prometheus_text
from online.service import RecommendationService
from shared.errors import StoreError
from shared.schemas import MAX_ID_LENGTH

router = APIRouter()
_errors = {422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
MAX_EVENTS_PER_POST = 1_000


def _service(request: Request) -> RecommendationService:
    return request.app.state.service


def _holder(request: Request) -> ModelHolder:
    return request.app.state.holder


def _counters(request: Request) -> ServedCounters:
    return request.app.state.counters


def _versions(request: Request) -> VersionStore:
    return request.app.state.store.versions


Service = Annotated[RecommendationService, Depends(_service)]
Holder = Annotated[ModelHolder, Depends(_holder)]
Counters = Annotated[ServedCounters, Depends(_counters)]
Versions = Annotated[VersionStore, Depends(_versions)]


@router.get("/recommendations/{user_id}", response_model=Recommendations, responses=_errors)
def recommendations(
    service: Service,
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: Annotated[int, Query(ge=1, le=100, description="How many items (1..100).")] = 10,
    session_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
) -> Recommendations:
    served = service.recommend(user_id, k, session_id, category)
    r = served.ranked
    return Recommendations(
        items=[
            ScoredItem(item_id=i, score=s, reason=w) for i, s, w in zip(r.item_ids, r.scores, r.reasons, strict=True)
        ],
        model_version=served.version,
        strategy=r.strategy,
        flags=r.flags,
        took_ms=round(served.took_ms, 3),
    )


async def _events_body(request: Request) -> list[EventIn]:
    """One event object or a list of them. Parsed here (not as a pydantic union) so that an error names
    the exact field: ``event_type`` for a single event, ``[3].event_type`` for the 4th of a list."""
    try:
        payload = await request.json()
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "body is not valid JSON", "type": "json_invalid"}]
        ) from None
    single = not isinstance(payload, list)
    items = [payload] if single else payload
    if not 1 <= len(items) <= MAX_EVENTS_PER_POST:
        msg = f"send between 1 and {MAX_EVENTS_PER_POST} events, got {len(items)}"
        raise RequestValidationError([{"loc": ("body",), "msg": msg, "type": "too_long"}])
    try:
        return _EVENT_LIST.validate_python(items)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *(e["loc"][1:] if single else e["loc"]))} for e in exc.errors()]
        raise RequestValidationError(errors) from None


_EVENT_LIST = TypeAdapter(list[EventIn])
_EVENTS_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "array",
                            "maxItems": MAX_EVENTS_PER_POST,
                            "items": {"$ref": "#/components/schemas/EventIn"},
                        },
                    ]
                }
            }
        },
    }
}


@router.post("/events", status_code=202, response_model=EventsAccepted, responses=_errors, openapi_extra=_EVENTS_SCHEMA)
def post_events(service: Service, events: Annotated[list[EventIn], Depends(_events_body)]) -> EventsAccepted:
    """Accept one event or up to 1000; they shape the very next recommendation of their session.
    An event_id accepted before is acknowledged in ``duplicates`` and stored once."""
    done = service.record_events(events)
    return EventsAccepted(
        accepted=len(done.event_ids) - len(done.duplicates), event_ids=done.event_ids, duplicates=done.duplicates
    )


@router.get("/items/{item_id}/similar", response_model=SimilarItems, responses={404: {"model": ErrorBody}})
def similar(
    service: Service,
    item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    kind: Annotated[
        SimilarKind, Query(description="als: neighbours in the ALS factor space; covisit: co-visited in sessions")
    ] = "als",
) -> SimilarItems:
    ids, scores, version = service.similar(item_id, k, kind)
    why = f"{'often_next_to' if kind == 'covisit' else 'similar_to'}:{item_id}"  # the reasons rank() gives
    items = [ScoredItem(item_id=i, score=s, reason=why) for i, s in zip(ids, scores, strict=True)]
    return SimilarItems(item_id=item_id, kind=kind, items=items, model_version=version)


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers. Does not touch the store."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(holder: Holder, counters: Counters) -> PlainTextResponse:
    """Prometheus text: requests per routing tier and per flag, summed over all API workers."""
    totals = counters.totals()  # StoreError -> 503 via the error handlers
    version = holder.model.version if holder.model else None
    return PlainTextResponse(prometheus_text(totals, version), media_type="text/plain; version=0.0.4")


@router.get("/ready", responses={503: {"model": ErrorBody}})
def ready(holder: Holder, versions: Versions, response: Response) -> dict[str, object]:
    """Readiness: one GET of the version pointer, compared with the loaded model (``ModelHolder.problems``)."""
    published = None
    try:
        published = versions.current_version()
        problems = holder.problems(published)
    except StoreError as exc:
        problems = [str(exc)] + (
            [f"no model loaded: {holder.last_error or 'starting'}"] if holder.model is None else []
        )
    if problems:
        response.status_code = 503
        return {"status": "not_ready", "problems": problems}
    return {"status": "ready", "model_version": holder.model.version, "published_version": published}

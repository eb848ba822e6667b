"""HTTP routes: parse and validate, call one service function, shape the response. No store calls here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from online.api_models import (
    ErrorBody,
    EventIn,
    EventsAccepted,
    Recommendations,
    ScoredItem,
    SimilarItems,
)
from online.service import Recommender
from shared.errors import StoreError
from shared.schemas import MAX_ID_LENGTH

router = APIRouter()
_errors = {422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
MAX_EVENTS_PER_POST = 1_000


def _recommender(request: Request) -> Recommender:
    return request.app.state.recommender


@router.get("/recommendations/{user_id}", response_model=Recommendations, responses=_errors)
def recommendations(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: Annotated[int, Query(ge=1, le=100, description="How many items (1..100).")] = 10,
    session_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
) -> Recommendations:
    served = _recommender(request).recommend(user_id, k, session_id, category)
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


@router.post("/events", status_code=202, response_model=EventsAccepted, responses=_errors)
def post_events(
    request: Request,
    body: Annotated[EventIn | list[EventIn], Body(description="One event or a list of up to 1000.")],
) -> EventsAccepted:
    events = body if isinstance(body, list) else [body]
    if not 1 <= len(events) <= MAX_EVENTS_PER_POST:
        return JSONResponse(  # type: ignore[return-value]
            status_code=422,
            content={
                "error": "validation_error",
                "message": f"body: send between 1 and {MAX_EVENTS_PER_POST} events, got {len(events)}",
                "fields": [{"field": "body", "message": f"between 1 and {MAX_EVENTS_PER_POST} events"}],
            },
        )
    ids = _recommender(request).record_events(events)
    return EventsAccepted(accepted=len(ids), event_ids=ids)


@router.get("/items/{item_id}/similar", response_model=SimilarItems, responses={404: {"model": ErrorBody}})
def similar(
    request: Request,
    item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SimilarItems:
    ids, scores, version = _recommender(request).similar(item_id, k)
    items = [ScoredItem(item_id=i, score=s, reason=f"similar_to:{item_id}") for i, s in zip(ids, scores, strict=True)]
    return SimilarItems(item_id=item_id, items=items, model_version=version)


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers. Does not touch the store."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorBody}})
def ready(request: Request, response: Response) -> dict[str, object]:
    """Readiness: the store answers (one GET of the version pointer) and a model version is loaded."""
    holder = request.app.state.holder
    problems, published = [], None
    try:
        published = request.app.state.store.current_version()
    except StoreError as exc:
        problems.append(str(exc))
    if holder.model is None:
        problems.append(f"no model loaded: {holder.last_error or 'starting'}")
    if problems:
        response.status_code = 503
        return {"status": "not_ready", "problems": problems}
    return {"status": "ready", "model_version": holder.model.version, "published_version": published}

"""HTTP routes: parse and validate, call one service function, shape the response. No store calls here.

Every route that serves traffic is ``async``: it runs on the worker's event loop, where the asyncio
store (feature_store.redis_online) answers, never in a thread. ``GET /recommendations`` serialises its
answer once, to bytes (orjson), and returns them: FastAPI's ``response_model`` still documents it in
the OpenAPI document, but is not run again over the answer (``_recommendations_body`` builds exactly
its fields; tests check the bodies against the model and the schema).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from feature_store.base import OnlineStore
from online.api_models import (
    ErrorBody,
    EventIn,
    EventsAccepted,
    RecommendationQuery,
    Recommendations,
    ScoredItem,
    SessionIn,
    SessionIssued,
    Shelf,
    Shelves,
    ShopItem,
    SimilarItems,
    SimilarKind,
)
from online.auth import Gate, Requires, required_scope
from online.limits import json_bytes, parse_json
from online.middleware import note_served
from online.model import ModelHolder
from online.service import RecommendationService, Served
from online.telemetry import CONTENT_TYPE, Telemetry
from shared.errors import StoreError
from shared.schemas import MAX_ID_LENGTH

router = APIRouter()
MAX_EVENTS_PER_POST = 1_000

# What each kind of route needs (online.auth) and may answer besides its success.
_READ, _WRITE, _METRICS = Requires("read-recs"), Requires("write-events"), Requires("read-metrics")
_error = {"model": ErrorBody}
_GATED = {401: _error, 403: _error, 429: _error}
_BODY = {413: _error, 415: _error, 422: _error}


# async, as FastAPI runs a plain function dependency in its thread pool
async def _service(request: Request) -> RecommendationService:
    return request.app.state.service


async def _holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def _telemetry(request: Request) -> Telemetry:
    return request.app.state.telemetry


async def _online(request: Request) -> OnlineStore:
    return request.app.state.online


Service = Annotated[RecommendationService, Depends(_service)]
Holder = Annotated[ModelHolder, Depends(_holder)]
TelemetryDep = Annotated[Telemetry, Depends(_telemetry)]
Online = Annotated[OnlineStore, Depends(_online)]
# The gate, once it has admitted the request for that scope (online.auth); its .sessions checks ids.
ReadGate = Annotated[Gate, Depends(_READ)]
WriteGate = Annotated[Gate, Depends(_WRITE)]


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI query parameters of ``model``'s fields, as FastAPI documents declared ones."""
    schema = model.model_json_schema()
    out = []
    for name, field in schema["properties"].items():
        field = {k: v for k, v in field.items() if not (k == "default" and v is None)}
        doc = {"name": name, "in": "query", "required": name in schema.get("required", ()), "schema": field}
        out.append(doc | ({"description": field["description"]} if "description" in field else {}))
    return out


def _recommendation_query(request: Request) -> RecommendationQuery:
    """``k``, ``session_id`` and ``category`` in one validation: FastAPI's extraction of declared query
    parameters costs about 15 us each per request (bench/README.md); a 422 names the same fields."""
    try:
        return RecommendationQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        raise RequestValidationError(errors) from None


class LeanRoute(APIRoute):
    """A route FastAPI documents from its signature (parameters, dependencies, responses) but does not
    run through its per-request machinery (dependency solving, two exit stacks, a second exception
    wrapper: ~0.1 ms of CPU a request, bench/README.md). For an endpoint ``(request, gate, **path
    params) -> Response`` whose one dependency is a :class:`~online.auth.Requires`: the request is
    admitted by that gate, then the path parameters are checked against their declarations by pydantic
    (FastAPI's own check costs ~30 us a parameter), and a failure of either raises what FastAPI would
    raise, to the app's handlers (the same 401/403/429/422 bodies). Query parameters and the body are the endpoint's to read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scope = required_scope(self)
        if scope is None or len(self.dependant.dependencies) != 1:
            raise TypeError(f"{self.path}: a LeanRoute needs exactly one dependency, a Requires")
        requires, endpoint = Requires(scope), self.endpoint
        # each path parameter's own declaration (type and constraints), as one pydantic validator
        path_params = [
            (p.name, TypeAdapter(Annotated[p.field_info.annotation, p.field_info])) for p in self.dependant.path_params
        ]

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            gate = await requires(request)
            values, errors = {}, []
            for name, adapter in path_params:
                try:
                    values[name] = adapter.validate_python(request.path_params[name])
                except ValidationError as exc:
                    errors += [
                        {**e, "loc": ("path", name, *e["loc"])}
                        for e in exc.errors(include_url=False, include_input=False)
                    ]
            if errors:
                raise RequestValidationError(errors)
            response = await endpoint(request, gate, **values)
            await response(scope, receive, send)

        self.app = app


async def recommendations(
    request: Request, gate: ReadGate, user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
) -> Response:
    """Recommendations for a user, shaped by their live session when ``session_id`` is given."""
    q = _recommendation_query(request)
    if q.session_id is not None and (problem := gate.sessions.check_read(q.session_id, user_id)):
        raise RequestValidationError([{"loc": ("query", "session_id"), "msg": problem, "type": "session_id"}])
    service: RecommendationService = request.app.state.service  # not a dependency: each costs FastAPI ~10 us
    served = await service.recommend(user_id, q.k, q.session_id, q.category)
    note_served(request, served.ranked.strategy, served.ranked.flags, served.version)
    return Response(_recommendations_body(served), media_type="application/json")


router.add_api_route(
    "/recommendations/{user_id}",
    recommendations,
    methods=["GET"],
    response_model=Recommendations,
    responses={**_GATED, 422: _error, 503: _error},
    openapi_extra={"parameters": _query_parameters(RecommendationQuery)},
    route_class_override=LeanRoute,
)


def _recommendations_body(served: Served) -> bytes:
    """The JSON of a ``Recommendations``, field for field."""
    r = served.ranked
    items = [{"item_id": i, "score": s, "reason": w} for i, s, w in zip(r.item_ids, r.scores, r.reasons, strict=True)]
    body = {
        "items": items,
        "model_version": served.version,
        "strategy": r.strategy,
        "flags": r.flags,
        "took_ms": round(served.took_ms, 3),
    }
    return orjson.dumps(body)


_EVENT = TypeAdapter(EventIn)
_EVENT_LIST = TypeAdapter(Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_POST)])


async def _events_body(request: Request, gate: WriteGate) -> list[EventIn]:
    """One event object or a list of them. Parsed here (not as a pydantic union) so that an error names
    the exact field: ``event_type`` for a single event, ``[3].event_type`` for the 4th of a list. Each
    event's session must be one issued for its user (one HMAC per distinct pair)."""
    body = await json_bytes(request)
    single = body.lstrip()[:1] != b"["
    events = [parse_json(_EVENT, body)] if single else parse_json(_EVENT_LIST, body)
    verdicts: dict[tuple[str, str | None], str | None] = {}
    errors = []
    for i, e in enumerate(events):
        pair = (e.session_id, e.user_id)
        if pair not in verdicts:
            verdicts[pair] = gate.sessions.check_write(*pair)
        if verdicts[pair]:
            loc = ("body", "session_id") if single else ("body", i, "session_id")
            errors.append({"loc": loc, "msg": verdicts[pair], "type": "session_id"})
    if errors:
        raise RequestValidationError(errors)
    return events


def _body_schema(model: str, or_a_list: bool = False) -> dict:
    """The requestBody of a route that parses its own JSON (the models are added by online.openapi)."""
    schema: dict = {"$ref": f"#/components/schemas/{model}"}
    if or_a_list:
        items = {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS_PER_POST, "items": schema}
        schema = {"anyOf": [schema, items]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    responses={**_GATED, **_BODY, 503: _error},
    openapi_extra=_body_schema("EventIn", or_a_list=True),
)
async def post_events(service: Service, events: Annotated[list[EventIn], Depends(_events_body)]) -> EventsAccepted:
    """Accept one event or up to 1000; they shape the very next recommendation of their session.
    An event_id accepted before is acknowledged in ``duplicates`` and stored once."""
    done = await service.record_events(events)
    return EventsAccepted(
        accepted=len(done.event_ids) - len(done.duplicates), event_ids=done.event_ids, duplicates=done.duplicates
    )


_SESSION = TypeAdapter(SessionIn)


async def _session_body(request: Request) -> SessionIn:
    return parse_json(_SESSION, await json_bytes(request))


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionIssued,
    responses={**_GATED, **_BODY},
    openapi_extra=_body_schema("SessionIn"),
)
async def new_session(gate: WriteGate, body: Annotated[SessionIn, Depends(_session_body)]) -> SessionIssued:
    """A new session id for a user (or an anonymous visitor), signed by the server: the only ids that
    POST /events and GET /recommendations accept for that user's session. No store access."""
    return SessionIssued(session_id=gate.sessions.issue(body.user_id), user_id=body.user_id)


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarItems,
    dependencies=[Depends(_READ)],
    responses={**_GATED, 404: _error, 422: _error, 503: _error},
)
async def similar(
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
async def health() -> dict[str, str]:
    """Liveness: the process answers. Does not touch the store."""
    return {"status": "ok"}


# /metrics answers text, but its refusals are JSON like every other route's
_JSON_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(_METRICS)],
    responses={status: _JSON_ERROR for status in (401, 403, 429)},
)
def metrics(telemetry: TelemetryDep, request: Request) -> PlainTextResponse:
    """Prometheus text (prometheus_client), summed over the API's workers: latency histograms per route and
    tier, requests per tier and flag, store errors, re-ranker skips, events by outcome, reload failures,
    the model version and its age, events waiting for compaction."""
    body = telemetry.exposition(request.app.state.scrape_time)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)


@router.get(
    "/items",
    response_model=Shelves,
    dependencies=[Depends(_READ)],
    responses={**_GATED, 422: _error, 503: _error},
)
async def shelves(
    service: Service,
    per_category: Annotated[int, Query(ge=1, le=500, description="Items per category (1..500).")] = 8,
) -> Shelves:
    """The catalogue as shelves: each category's most popular available items (the demo storefront's grid)."""
    version, found = service.catalogue(per_category)
    return Shelves(
        model_version=version,
        categories=[Shelf(category=c, items=[ShopItem(item_id=i, title=t) for i, t in items]) for c, items in found],
    )


@router.get("/ready", responses={503: {"model": ErrorBody}})
async def ready(holder: Holder, online: Online, response: Response) -> dict[str, object]:
    """Readiness: one GET of the version pointer, compared with the loaded model (``ModelHolder.problems``)."""
    published = None
    try:
        published = await online.current_version()
        problems = holder.problems(published)
    except StoreError as exc:
        problems = [str(exc)] + (
            [f"no model loaded: {holder.last_error or 'starting'}"] if holder.model is None else []
        )
    if problems:
        response.status_code = 503
        return {"status": "not_ready", "problems": problems}
    return {"status": "ready", "model_version": holder.model.version, "published_version": published}

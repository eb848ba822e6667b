"""The two pages a person meets: the demo storefront (``/demo``) and the operator page (``/ops``).

Plain HTML, CSS and a small script each, shipped in the package (``online/static/``, no build step),
with Chart.js vendored as one file (``online/static/vendor/``). The pages themselves hold no data and
are open; everything they show comes from the API with the key the page was given in its URL's
fragment (``/demo#key=...``: a fragment is never sent to a server, so the key stays out of logs and
``Referer``). The storefront uses the public routes as any client would (``POST /sessions``,
``POST /events``, ``GET /recommendations``, ``GET /items``) plus ``GET /demo/users``; the operator page
reads ``GET /ops/data`` and ``GET /ops/embedding``. Those three need the ``admin`` scope.

Both pages are served with a Content-Security-Policy that allows only this origin's scripts, styles
and API calls, and no framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

from online.api_models import ErrorBody, SampleUsers
from online.auth import Requires
from online.ops import MAP_POINTS, Operations
from online.service import RecommendationService
from shared.errors import VersionNotFound

STATIC_DIR = Path(__file__).with_name("static")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"content-security-policy": CSP, "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}

router = APIRouter()
_ADMIN = Requires("admin")
_error = {"model": ErrorBody}
_GATED = {401: _error, 403: _error, 429: _error}


def _operations(request: Request) -> Operations:
    return request.app.state.operations


def _service(request: Request) -> RecommendationService:
    return request.app.state.service


Ops = Annotated[Operations, Depends(_operations)]
Service = Annotated[RecommendationService, Depends(_service)]


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/demo", include_in_schema=False)
def demo_page() -> FileResponse:
    return _page("demo.html")


@router.get("/ops", include_in_schema=False)
def ops_page() -> FileResponse:
    return _page("ops.html")


@router.get(
    "/demo/users",
    response_model=SampleUsers,
    dependencies=[Depends(_ADMIN)],
    responses={**_GATED, 422: _error, 503: _error},
)
def demo_users(service: Service, n: Annotated[int, Query(ge=1, le=50)] = 12) -> SampleUsers:
    """Some users of the served version, for the demo storefront's user picker."""
    version, users = service.sample_users(n)
    return SampleUsers(model_version=version, user_ids=users)


@router.get("/ops/data", dependencies=[Depends(_ADMIN)], responses={**_GATED})
def ops_data(ops: Ops) -> dict[str, Any]:
    """The operator page's numbers (online.ops): versions, gate, the last minutes per tier, backlog."""
    return ops.snapshot()


@router.get("/ops/embedding", dependencies=[Depends(_ADMIN)], responses={**_GATED, 422: _error, 503: _error})
def ops_embedding(ops: Ops, points: Annotated[int, Query(ge=1, le=20_000)] = MAP_POINTS) -> dict[str, Any]:
    """The served version's item map: PCA of its item factors, the most popular ``points`` items."""
    found = ops.embedding(points)
    if found is None:
        raise VersionNotFound("no model loaded yet")
    return found


def install_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

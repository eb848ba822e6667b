"""The FastAPI application factory. Nothing happens at import time.

``create_app(settings)`` wires the store, the model holder and the recommendation service in a lifespan;
``app_from_env()`` is the zero-argument factory uvicorn calls (``--factory online.app:app_from_env``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from feature_store.redis_online import RedisOnline
from feature_store.redis_store import RedisStore
from online.auth import AUTH_OFF_WARNING, Gate
from online.blend import BlendParams
from online.errors import install_error_handlers
from online.limits import BodyLimit
from online.middleware import RequestTelemetry
from online.model import ModelHolder
from online.openapi import install_openapi
from online.ops import Operations, data_end
from online.pages import install_pages
from online.routes import router
from online.service import RecommendationService
from online.telemetry import ScrapeTime, Telemetry
from online.window import WindowCounters
from shared.config import Settings, get_settings
from shared.errors import StoreError
from shared.logs import configure_logging

log = logging.getLogger("hybridrec.online")


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; raises ConfigError when auth is on and no key or session secret is set."""
    gate = Gate(settings)
    if not gate.enabled:
        log.warning(AUTH_OFF_WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # requests use the asyncio store on this event loop; model reload and counters use the blocking
        # one from their background threads
        online = RedisOnline.from_settings(settings)
        try:
            await online.connect()  # the first request should not pay for the connection (or a cluster's slot map)
        except StoreError as exc:
            log.warning("Redis is not reachable at start (%s); requests are served degraded until it is", exc)
        store = RedisStore.from_settings(settings, online=True)
        window = WindowCounters(store.counters, settings.reload_interval_s) if settings.metrics_enabled else None
        telemetry.attach(window)
        holder = ModelHolder(
            store.versions,
            settings.reload_interval_s,
            BlendParams.from_settings(settings),
            settings.ready_max_lag_intervals,
            on_failure=telemetry.reload_failed,
            on_loaded=telemetry.serving,
        )
        holder.refresh()  # best effort: the app starts (and /ready says why) even if Redis is down
        holder.start()
        if window is not None:
            window.start()
        app.state.settings = settings
        app.state.store = store
        app.state.online = online
        app.state.holder = holder
        app.state.service = RecommendationService(online, holder, settings, telemetry, versions=store.versions)
        app.state.operations = Operations(holder, store.versions, store.events, window)
        app.state.scrape_time = ScrapeTime(lambda: _data_end(holder), lambda: _backlog(store))
        try:
            yield
        finally:
            holder.stop()
            if window is not None:
                telemetry.attach(None)
                window.stop()
            store.close()
            await online.aclose()

    app = FastAPI(
        title="hybridrec",
        version="0.1.0",
        summary="Hybrid batch + real-time recommendations: precomputed ALS features re-ranked by the live session.",
        lifespan=lifespan,
    )
    # Built here, not in the lifespan: the middleware below holds it from the start; the lifespan gives it
    # its per-minute window once the store is open.
    telemetry = Telemetry(settings.metrics_enabled)
    app.state.gate = gate
    app.state.telemetry = telemetry
    install_error_handlers(app)
    app.include_router(router)
    install_pages(app)
    install_openapi(app, gate)
    # Outermost last: CORS answers preflights and marks every response (a 413 or 429 too); the body
    # limit sees the request before anything reads it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),  # none by default: browsers refuse cross-origin calls
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "x-api-key", "content-type", "x-request-id"],
        expose_headers=["retry-after", "x-request-id"],
        max_age=600,
    )
    # Outermost of all: it times everything the API does for a request, refusals included.
    app.add_middleware(RequestTelemetry, telemetry=telemetry, log_requests=settings.log_format == "json")
    return app


def _data_end(holder: ModelHolder) -> float | None:
    model = holder.model
    return data_end(model.bundle.meta, model.version) if model else None


def _backlog(store: RedisStore) -> int | None:
    try:
        return store.events.stream_length()
    except StoreError:
        return None  # the scrape still answers; the gauge is left out


def app_from_env() -> FastAPI:
    """Factory for uvicorn: settings from HYBRIDREC_* environment variables."""
    settings = get_settings()
    configure_logging(settings.log_format)
    return create_app(settings)

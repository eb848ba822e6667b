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
from online.model import ModelHolder
from online.monitoring import ServedCounters
from online.openapi import install_openapi
from online.routes import router
from online.service import RecommendationService
from shared.config import Settings, get_settings

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
        store = RedisStore.from_settings(settings, online=True)
        counters = ServedCounters(store.counters, settings.reload_interval_s)
        holder = ModelHolder(
            store.versions,
            settings.reload_interval_s,
            BlendParams.from_settings(settings),
            settings.ready_max_lag_intervals,
            on_failure=lambda: counters.count("reload_failed"),
        )
        holder.refresh()  # best effort: the app starts (and /ready says why) even if Redis is down
        holder.start()
        counters.start()
        app.state.settings = settings
        app.state.store = store
        app.state.online = online
        app.state.holder = holder
        app.state.counters = counters
        app.state.service = RecommendationService(online, holder, settings, counters)
        try:
            yield
        finally:
            holder.stop()
            counters.stop()
            store.close()
            await online.aclose()

    app = FastAPI(
        title="hybridrec",
        version="0.1.0",
        summary="Hybrid batch + real-time recommendations: precomputed ALS features re-ranked by the live session.",
        lifespan=lifespan,
    )
    app.state.gate = gate
    install_error_handlers(app)
    app.include_router(router)
    install_openapi(app, gate)
    # Outermost last: CORS answers preflights and marks every response (a 413 or 429 too); the body
    # limit sees the request before anything reads it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),  # none by default: browsers refuse cross-origin calls
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "x-api-key", "content-type"],
        expose_headers=["retry-after"],
        max_age=600,
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn: settings from HYBRIDREC_* environment variables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(get_settings())

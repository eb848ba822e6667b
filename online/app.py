"""The FastAPI application factory. Nothing happens at import time.

``create_app(settings)`` wires the store, the model holder and the recommendation service in a lifespan;
``app_from_env()`` is the zero-argument factory uvicorn calls (``--factory online.app:app_from_env``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from feature_store.redis_store import RedisStore
from online.blend import BlendParams
from online.errors import install_error_handlers
from online.model import ModelHolder
from online.monitoring import ServedCounters
from online.routes import router
from online.service import RecommendationService
from shared.config import Settings, get_settings

log = logging.getLogger("hybridrec.online")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        app.state.holder = holder
        app.state.counters = counters
        app.state.service = RecommendationService(store.versions, store.events, holder, settings, counters)
        try:
            yield
        finally:
            holder.stop()
            counters.stop()
            store.close()

    app = FastAPI(
        title="hybridrec",
        version="0.1.0",
        summary="Hybrid batch + real-time recommendations: precomputed ALS features re-ranked by the live session.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn: settings from HYBRIDREC_* environment variables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(get_settings())

"""The floor of the online benchmark: the least a session-aware answer can cost on this stack.

A bench-only app (never the product): one async route that does what any recommendation request must
do, and nothing more. One pipelined read of the same Redis keys the product reads (the user record
and the session list of the published version), the user's precomputed candidates scored with numpy
against the in-memory item matrix, and the top 10 as JSON. The same web stack (FastAPI, uvicorn,
redis-py's asyncio client with hiredis) and the same workers as the API under test, so "CPU per
request / floor" says what hybridrec's own work adds.

    HYBRIDREC_REDIS_URL=... uvicorn floor_app:app_from_env --factory --app-dir bench
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import redis.asyncio as aioredis
from fastapi import FastAPI, Response

from feature_store import codecs
from feature_store.keys import Keys
from feature_store.redis_store import RedisStore
from shared.config import get_settings


def create_floor_app(redis_url: str, prefix: str) -> FastAPI:
    keys = Keys(prefix)
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with RedisStore.from_settings(get_settings(redis_url=redis_url, key_prefix=prefix)) as store:
            version = store.versions.current_version()
            if version is None:
                raise RuntimeError("nothing published: the floor needs the bench's version")
            bundle = store.versions.read_item_bundle(version)
        state.update(
            version=version,
            factors=np.ascontiguousarray(bundle.item_factors),
            item_ids=np.asarray(bundle.item_ids, dtype=object),
            layout=codecs.user_layout_of(bundle.meta),
            client=aioredis.Redis.from_url(redis_url),
        )
        yield
        await state["client"].aclose()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get("/floor/{user_id}")
    async def floor(user_id: str, session_id: str | None = None) -> Response:
        pipe = state["client"].pipeline(transaction=False)
        pipe.get(keys.user(state["version"], user_id))
        pipe.lrange(keys.session(session_id or ""), 0, -1)
        raw, session = await pipe.execute()
        items: list[str] = []
        if raw:
            user = codecs.decode_user(raw, state["layout"])
            cands = user.candidates
            scores = state["factors"][cands] @ user.vector
            top = cands[np.argsort(-scores, kind="stable")[:10]]
            items = state["item_ids"][top].tolist()
        body = {"items": items, "session_events": len(session), "model_version": state["version"]}
        return Response(json.dumps(body), media_type="application/json")

    return app


def app_from_env() -> FastAPI:
    return create_floor_app(os.environ["HYBRIDREC_REDIS_URL"], os.environ.get("HYBRIDREC_KEY_PREFIX", "hr"))

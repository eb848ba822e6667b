"""The OpenAPI document: FastAPI's, completed with what FastAPI cannot see, so that it is self-consistent
and schema-driven fuzzers (tests/integration/test_fuzz_openapi.py) can test every body.

* The bodies of the routes that parse their own JSON (``POST /events``, ``POST /sessions``; see
  online.limits) are referenced from their ``openapi_extra``; their models are added to the components.
* Security: the two ways to send a key (``Authorization: Bearer`` and ``X-API-Key``), and per gated
  route its requirement, read from its ``Requires`` dependency and the Gate's policy (an open scope is
  declared optional; with auth off, nothing is declared). The scope a route needs is in its description.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from online.api_models import EventIn, SessionIn
from online.auth import Gate, required_scope

BODY_MODELS: tuple[type[BaseModel], ...] = (EventIn, SessionIn)
SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
}


def install_openapi(app: FastAPI, gate: Gate) -> None:
    generate = app.openapi  # FastAPI's: builds once and caches in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            _complete(generate(), app, gate)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(doc: dict[str, Any], app: FastAPI, gate: Gate) -> None:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in BODY_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    if not gate.enabled:
        return
    components["securitySchemes"] = SCHEMES
    for route in app.routes:
        scope = required_scope(route)
        if scope is None:
            continue
        for method in route.methods or ():  # type: ignore[attr-defined]
            operation = doc["paths"][route.path_format][method.lower()]  # type: ignore[attr-defined]
            optional = scope in gate.open_scopes
            operation["security"] = [{name: []} for name in SCHEMES] + ([{}] if optional else [])
            need = f"An API key with scope `{scope}`" + (" is optional here." if optional else " is required.")
            operation["description"] = f"{operation.get('description', '')}\n\n{need}".strip()

"""API keys and session ids for tests that call the API the way a real client must.

``auth_overrides()`` configures the fixed test keys and session secret (the conftest ``settings``
fixture already does; ``auth_env()`` for an API in a subprocess); ``client(base)`` sends the all-scopes key; ``new_session(client, user)`` asks the
server for a session id, as every client of a secured API does.
"""

from __future__ import annotations

import httpx

from shared.apikeys import key_entry

KEY = "hrk_test-key-with-every-scope-000000000000000"
WRITER = "hrk_test-key-write-events-only-0000000000000"
READER = "hrk_test-key-read-recs-only-000000000000000"
SCRAPER = "hrk_test-key-read-metrics-only-00000000000000"
SESSION_SECRET = "test-session-secret-0123456789abcdef0123456789"
API_KEYS = (
    key_entry(KEY, ["write-events", "read-recs", "admin"]),
    key_entry(WRITER, ["write-events"]),
    key_entry(READER, ["read-recs"]),
    key_entry(SCRAPER, ["read-metrics"]),
)


def auth_overrides() -> dict[str, object]:
    """Settings overrides (``get_settings(**auth_overrides())``) of a secured API."""
    return {"auth": "on", "api_keys": API_KEYS, "session_secret": SESSION_SECRET}


def auth_env() -> dict[str, str]:
    """The same as HYBRIDREC_* environment variables, for an API in a subprocess."""
    return {
        "HYBRIDREC_AUTH": "on",
        "HYBRIDREC_API_KEYS": " ".join(API_KEYS),
        "HYBRIDREC_SESSION_SECRET": SESSION_SECRET,
    }


def headers(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def client(base_url: str, key: str | None = KEY, **kwargs: object) -> httpx.Client:
    """An httpx client of ``base_url`` that sends ``key`` (None: no key)."""
    return httpx.Client(base_url=base_url, headers=headers(key) if key else None, **kwargs)  # type: ignore[arg-type]


def new_session(api: httpx.Client, user_id: str | None = None) -> str:
    """A session id issued by the API for ``user_id`` (None: an anonymous visitor)."""
    r = api.post("/sessions", json={"user_id": user_id} if user_id else {})
    assert r.status_code == 201, r.text
    return r.json()["session_id"]

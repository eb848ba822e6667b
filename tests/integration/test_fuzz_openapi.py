"""Schema-driven fuzzing (schemathesis, pinned in the dev group) of the real app's /openapi.json.

The app runs under uvicorn on a real redis-server with auth on. Every operation gets schema-valid
(positive) and schema-invalid (negative) cases, the bodies of POST /events and POST /sessions included,
derandomized so that every run sends the same cases. Each response must pass schemathesis's checks: no
5xx, a documented status code, content type, headers and body, schema-invalid input refused, and no
gated operation answering without its key. One check is left out: ``positive_data_acceptance``, because
a schema cannot say "a session id this server signed for this user" or "a time within a day of now",
so schema-valid requests are rightly refused with a 422. Half the positive event bodies get real signed
session ids, so the store's write path is fuzzed too (asserted: some 202s).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from feature_store.redis_store import RedisStore
from online.sessions import SessionIds
from shared.config import Settings
from tests.support import auth, tiny
from tests.support.server import serve

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]
V1 = "2026-01-01.00000000a1"
# Cases per operation and mode; operations without inputs generate what they can (one case).
EXAMPLES = {"POST /events": 300, "GET /recommendations/{user_id}": 120, "POST /sessions": 60}
DEFAULT_EXAMPLES = 60


def _sign_sessions(body: Any, ids: SessionIds) -> None:
    """Give every event of ``body`` a session id signed for its user (in place)."""
    for event in body if isinstance(body, list) else [body]:
        if isinstance(event, dict) and "session_id" in event:
            user = event.get("user_id")
            event["session_id"] = ids.issue(user if isinstance(user, str) else None)


def _fuzz(operation: Any, mode: GenerationMode, base: str, signer: SessionIds, statuses: Counter) -> None:
    """Send ``operation``'s cases of ``mode``; the first failing check fails the test with its curl."""
    label = operation.label

    @hypothesis_settings(
        max_examples=EXAMPLES.get(label, DEFAULT_EXAMPLES),
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        sent = sum(n for (op, _), n in statuses.items() if op == label)
        if mode is GenerationMode.POSITIVE and label == "POST /events" and sent % 2:
            _sign_sessions(case.body, signer)
        # both declared ways, spelt as declared: the auth check knows them and can take them away, and
        # schemathesis does not make up an X-API-Key of its own (which would turn the case into a 401)
        headers = {"Authorization": f"Bearer {auth.KEY}", "X-API-Key": auth.KEY}
        response = case.call_and_validate(base_url=base, headers=headers, excluded_checks=[positive_data_acceptance])
        statuses[(label, response.status_code)] += 1

    try:
        call()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # no inputs, so nothing can be schema-invalid


def test_fuzzing_the_openapi_document_finds_no_server_error(settings: Settings, store: RedisStore) -> None:
    store.versions.write_version(tiny.version_data(V1))
    store.versions.activate(V1)
    patient = {"rate_limit_ip_per_s": 0.0, "rate_limit_key_per_s": 0.0, "store_timeout_ms": 2_000}
    signer = SessionIds(auth.SESSION_SECRET.encode(), verify=True)
    statuses: Counter[tuple[str, int]] = Counter()
    with serve(settings.model_copy(update=patient)) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for result in schema.get_all_operations():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(result.ok(), mode, base, signer, statuses)
    sent = Counter()
    for (label, _), n in statuses.items():
        sent[label] += n
    print(f"cases per operation: {dict(sent)}; statuses: {dict(statuses)}")
    assert sum(sent.values()) >= 1_000, sent
    assert sent["POST /events"] >= 500
    assert statuses[("POST /events", 202)] > 0 and statuses[("POST /events", 422)] > 0
    assert not any(status >= 500 for _, status in statuses)

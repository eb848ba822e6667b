"""The pieces of API security, without a server: key entries, session ids, token buckets, route gating."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from online.auth import Gate, _presented, required_scope
from online.pages import router as pages_router
from online.ratelimit import TokenBuckets, retry_after_header
from online.routes import router
from online.sessions import SessionIds
from shared.apikeys import hash_api_key, key_entry, parse_key_entry, split_entries
from shared.config import Settings
from shared.errors import ConfigError, Forbidden, RateLimited, Unauthorized
from tests.support import auth

# everything else must declare the scope it needs; the pages are static files without data
OPEN_ROUTES = {"/health", "/ready", "/demo", "/ops"}


def test_every_route_is_gated_or_explicitly_open() -> None:
    """Secure by default: a new route without a Requires dependency fails here until someone decides."""
    routes = [*router.routes, *pages_router.routes]
    for route in routes:
        assert isinstance(route, APIRoute)
        assert (required_scope(route) is None) == (route.path in OPEN_ROUTES), route.path
    scopes = {r.path: required_scope(r) for r in routes if r.path not in OPEN_ROUTES}  # type: ignore[attr-defined]
    assert scopes == {
        "/recommendations/{user_id}": "read-recs",
        "/items/{item_id}/similar": "read-recs",
        "/items": "read-recs",
        "/events": "write-events",
        "/sessions": "write-events",
        "/metrics": "read-metrics",
        "/demo/users": "admin",
        "/ops/data": "admin",
        "/ops/embedding": "admin",
    }


def test_a_key_entry_holds_the_hash_and_the_scopes() -> None:
    entry = key_entry("hrk_abc", ["admin", "write-events"])
    assert entry == f"write-events,admin:{hash_api_key('hrk_abc')}"
    parsed = parse_key_entry(entry)
    # admin implies read-metrics (IMPLIED): an admin key reads /metrics; a read-metrics key reads only that
    assert parsed.scopes == {"write-events", "admin", "read-metrics"} and parsed.sha256 == hash_api_key("hrk_abc")
    assert parse_key_entry(f"read-metrics:{'c' * 64}").scopes == {"read-metrics"}
    assert split_entries(f"{entry}; admin:{'a' * 64}\n# a comment\nread-recs:{'b' * 64}  # trailing") == [
        entry,
        f"admin:{'a' * 64}",
        f"read-recs:{'b' * 64}",
    ]


@pytest.mark.parametrize("bad", ["hrk_the-key-itself", f"root:{'a' * 64}", f"admin:{'a' * 63}", f":{'a' * 64}"])
def test_a_malformed_entry_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        Settings(_env_file=None, api_keys=bad)
    assert bad not in str(err.value)


def test_a_keys_file_adds_entries(tmp_path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# ops\n{key_entry('hrk_ops', ['admin'])}\n")
    gate = Gate(Settings(_env_file=None, api_keys_file=path, session_secret=auth.SESSION_SECRET))
    assert gate.match("hrk_ops").scopes == {"admin", "read-metrics"} and gate.match("hrk_other") is None


def test_auth_on_without_a_key_or_a_secret_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"HYBRIDREC_API_KEYS.*HYBRIDREC_SESSION_SECRET.*HYBRIDREC_AUTH=off"):
        Gate(Settings(_env_file=None))
    with pytest.raises(ConfigError, match="HYBRIDREC_SESSION_SECRET"):
        Gate(Settings(_env_file=None, api_keys=auth.API_KEYS))
    assert not Gate(Settings(_env_file=None, auth="off")).enabled


def _gate(**overrides: object) -> Gate:
    return Gate(Settings(_env_file=None, **{**auth.auth_overrides(), **overrides}))  # type: ignore[arg-type]


def test_the_gate_checks_key_then_scope() -> None:
    gate = _gate()
    assert gate.admit(auth.KEY, "1.2.3.4", "admin").key.scopes == {"write-events", "read-recs", "admin", "read-metrics"}
    assert gate.admit(auth.SCRAPER, "1.2.3.4", "read-metrics").key.scopes == {"read-metrics"}
    for scope in ("admin", "write-events"):
        with pytest.raises(Forbidden, match=scope):
            gate.admit(auth.SCRAPER, "1.2.3.4", scope)
    assert gate.admit(None, "1.2.3.4", "read-recs").key is None  # reads are open by default
    with pytest.raises(Unauthorized):
        gate.admit(None, "1.2.3.4", "write-events")
    with pytest.raises(Unauthorized, match="unknown API key"):
        gate.admit("hrk_wrong", "1.2.3.4", "read-recs")  # a wrong key is refused even where none is needed
    with pytest.raises(Forbidden, match="write-events"):
        gate.admit(auth.READER, "1.2.3.4", "write-events")
    with pytest.raises(Unauthorized):
        _gate(reads_require_key=True).admit(None, "1.2.3.4", "read-recs")


def test_every_credential_sent_must_be_the_key() -> None:
    assert _presented({}) is None
    assert _presented({"authorization": "Bearer k1"}) == "k1" == _presented({"x-api-key": "k1"})
    assert _presented({"authorization": "bearer  k1 ", "x-api-key": "k1"}) == "k1"
    for malformed in ({"authorization": "Basic k1"}, {"authorization": "Bearer"}, {"x-api-key": ""}):
        assert _presented(malformed) == ""  # a credential, and not a key: a 401, not "no key"
    assert _presented({"authorization": "Bearer k1", "x-api-key": "k2"}) == ""
    with pytest.raises(Unauthorized):
        _gate().admit("", "1.2.3.4", "read-recs")


def test_keys_and_addresses_have_separate_buckets() -> None:
    gate = _gate(rate_limit_ip_per_s=1.0, rate_limit_key_per_s=2.0)  # bursts of 2 and 4
    for _ in range(2):
        gate.admit(None, "1.2.3.4", "read-recs")
    with pytest.raises(RateLimited) as limited:
        gate.admit(None, "1.2.3.4", "read-recs")
    assert limited.value.retry_after_s == 1
    gate.admit(None, "5.6.7.8", "read-recs")  # another address
    for _ in range(4):
        gate.admit(auth.KEY, "1.2.3.4", "read-recs")  # the key's own bucket, from the limited address
    with pytest.raises(RateLimited):
        gate.admit(auth.KEY, "9.9.9.9", "read-recs")  # and it follows the key, not the address
    with pytest.raises(RateLimited):  # an unknown key costs its address a token before the 401
        gate.admit("hrk_wrong", "1.2.3.4", "read-recs")


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: one token comes in 1/rate seconds
    now[0] = 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") == pytest.approx(0.5)
    now[0] = 100.0  # a long pause refills to the burst, no more
    assert [buckets.take("a") for _ in range(4)][-1] > 0
    assert retry_after_header(0.01) == 1 and retry_after_header(1.2) == 2


def test_token_buckets_stay_bounded_dropping_the_least_recent() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_clients=3, clock=lambda: 0.0)
    for client in "abc":
        buckets.take(client)
    buckets.take("a")  # a is recent again
    buckets.take("d")  # evicts b, the least recently used
    assert len(buckets) == 3
    assert buckets.take("b") == 0.0  # b came back with a full bucket
    assert buckets.take("a") > 0  # a kept its (empty) bucket


def test_session_ids_bind_their_user() -> None:
    ids = SessionIds(b"k" * 32, verify=True)
    mine, anonymous = ids.issue("u1"), ids.issue(None)
    assert len(mine) == 46 and mine[0] == "u" and anonymous[0] == "a" and mine != ids.issue("u1")
    assert ids.check_write(mine, "u1") is None and ids.check_read(mine, "u1") is None
    assert ids.check_write(anonymous, None) is None and ids.check_read(anonymous, "whoever") is None
    assert "user 'u2'" in ids.check_write(mine, "u2") and "user 'u2'" in ids.check_read(mine, "u2")
    assert "belongs to a user" in ids.check_write(mine, None)
    assert "anonymous" in ids.check_write(anonymous, "u1")
    random_part, _, mac = anonymous.rpartition(".")
    assert ids.check_write("u" + anonymous[1:], "u1")  # relabelled as a user's: the mac no longer fits
    assert ids.check_write(f"{random_part}.{mac[:-1]}{'B' if mac.endswith('A') else 'A'}", None)  # one char off
    for forged in ("s1", "demo-u1", ".", "x.y", "ü.ü"):
        assert "not a session id issued by this server" in ids.check_read(forged, "u1")
    assert SessionIds(b"other-secret" * 3, verify=True).check_read(mine, "u1")  # another server's secret
    assert SessionIds(None, verify=False).check_write("anything", "u1") is None  # auth off


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_the_openapi_document_is_self_consistent() -> None:
    """Issue 9 defect 12: it referenced #/components/schemas/EventIn without defining it."""
    from online.app import create_app

    doc = create_app(Settings(_env_file=None, **auth.auth_overrides())).openapi()  # type: ignore[arg-type]
    schemas = doc["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in _refs(doc)} <= set(schemas)
    assert {"EventIn", "SessionIn"} <= set(schemas)
    body = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"][1]["minItems"] == 1 and body["anyOf"][1]["maxItems"] == 1000
    assert set(doc["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    assert doc["paths"]["/events"]["post"]["security"] == [{"bearerKey": []}, {"headerKey": []}]
    assert {} in doc["paths"]["/recommendations/{user_id}"]["get"]["security"]  # reads: a key is optional
    assert "security" not in doc["paths"]["/health"]["get"]

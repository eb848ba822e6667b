"""The Redis Cluster key layout and URL, without a server: which keys share a hash slot."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from feature_store.base import SessionEvent
from feature_store.keys import Keys
from feature_store.redis_events import AppendScript
from feature_store.redis_online import request_reads
from online.sessions import SessionIds
from shared.config import cluster_url, get_settings
from shared.ids import session_owner

V = "2026-01-01.abcdef0123"
IDS = SessionIds(b"x" * 32, verify=True)


def _slot(key: str) -> int:
    return key_slot(key.encode())


def test_single_node_names_do_not_change() -> None:
    k = Keys("hr")
    assert (k.current, k.meta(V), k.user(V, "u1"), k.session("s1", "u1")) == (
        "hr:current",
        f"hr:v:{V}:meta",
        f"hr:v:{V}:u:u1",
        "hr:sess:s1",
    )
    assert (k.event_id("e1"), k.events_stream, k.version_patterns(V)) == ("hr:eid:e1", "hr:events", (f"hr:v:{V}:*",))


def test_what_one_script_touches_shares_a_slot() -> None:
    k = Keys("hr", cluster=True)
    control = [k.current, k.previous, k.versions, k.publish_lock, k.gate_decision, k.meta(V), k.items(V)]
    control += [k.item_array(V, "item_factors"), k.popular(V, "A")]
    assert len({_slot(key) for key in control}) == 1  # the flip script, the fenced blob and meta writes
    assert _slot(k.events_stream) == _slot(k.event_id("e-1")) == _slot(k.event_id("e-2"))  # dedupe + XADD
    own = IDS.issue("u1")
    assert _slot(k.user(V, "u1")) == _slot(k.session(own, "u1")) == _slot(k.session_seen(own, "u1"))
    assert len({_slot(k.user(V, f"u{i}")) for i in range(100)}) > 90  # users spread over the slots


def test_a_request_reads_with_one_script_unless_a_user_reads_an_anonymous_session() -> None:
    k = Keys("hr", cluster=True)
    own, anonymous = IDS.issue("u1"), IDS.issue(None)
    assert request_reads(k, V, "u1", own) == [
        ([k.user(V, "u1"), k.session(own, "u1"), k.session_seen(own, "u1")], ["us"])
    ]
    assert request_reads(k, V, "u1", None) == [([k.user(V, "u1")], ["u"])]
    assert request_reads(k, V, None, anonymous) == [([k.session(anonymous), k.session_seen(anonymous)], ["s"])]
    split = request_reads(k, V, "u1", anonymous)
    if _slot(k.user(V, "u1")) != _slot(k.session(anonymous)):
        assert split == [([k.user(V, "u1")], ["u"]), ([k.session(anonymous), k.session_seen(anonymous)], ["s"])]
    # one server: always one script
    assert len(request_reads(Keys("hr"), V, "u1", anonymous)) == 1


def test_sessions_belong_to_their_user_only_in_the_issued_form() -> None:
    own = IDS.issue("u1")
    assert session_owner(own, "u1") == "u1"
    assert session_owner(IDS.issue(None), "u1") is None  # anonymous: tagged by its own id
    assert session_owner("s1", "u1") is None  # a client's own id (auth off)
    assert session_owner("u", "u1") is None and session_owner("uabc", "u1") is None  # not the issued form
    assert session_owner(own, None) is None


@pytest.mark.parametrize("user", ["u1", "a}b", "}", "{x}", "ü:7"])
def test_a_user_id_with_braces_still_gets_a_non_empty_tag_and_round_trips(user: str) -> None:
    k = Keys("hr", cluster=True)
    key = k.user(V, user)
    tag = key[key.index("{") + 1 : key.index("}", key.index("{"))]
    assert tag and k.user_id_of(V, key) == user
    own = IDS.issue(user)
    assert _slot(k.session(own, user)) == _slot(key)
    assert len({k.user(V, "a}b"), k.user(V, "a}c")}) == 2


def test_cluster_urls() -> None:
    assert cluster_url("redis+cluster://:pw@node-1:7000") == "redis://:pw@node-1:7000"
    assert cluster_url("rediss+cluster://node-1:7000/0") == "rediss://node-1:7000"
    assert cluster_url("redis://localhost:6379/2") is None
    for url, problem in [
        ("redis+cluster://node-1:7000/2", "only database 0"),
        ("redis+cluster:///x", "needs a host"),
        ("http://node-1", "scheme 'http'"),
    ]:
        with pytest.raises(ValidationError, match=problem):
            get_settings(redis_url=url)


def test_a_cluster_append_is_one_script_on_the_events_slot_then_one_per_session_slot() -> None:
    k = Keys("hr", cluster=True)
    script = AppendScript(k)
    mine, theirs, anonymous = IDS.issue("u1"), IDS.issue("u2"), IDS.issue(None)
    events = [
        SessionEvent("a0", "view", 1.0, "e0", "u1", mine),
        SessionEvent("a1", "view", 2.0, "e1", "u2", theirs),
        SessionEvent("a2", "view", 3.0, "e2", None, anonymous),
        SessionEvent("a3", "view", 4.0, "e3", "u1", mine),
        SessionEvent("a4", "view", 5.0, "e4", "u1", None),  # no session: the stream only
    ]
    keys, _ = script.call(events, None)
    assert {_slot(key) for key in keys} == {_slot(k.events_stream)}  # de-duplication + stream: one slot
    assert "" not in keys and k.session(mine, "u1") not in keys  # sessions are left to step 2
    calls = script.session_calls(events, [4, 0, 1])  # the script's reply: event 1 was a duplicate
    by_slot = {_slot(c_keys[0]): c_keys for c_keys, _ in calls}
    assert len(calls) == len(by_slot)
    assert all(len({_slot(key) for key in c_keys}) == 1 for c_keys, _ in calls)
    written = sorted(key for c_keys, _ in calls for key in c_keys if ":sess:" in key)
    assert written == sorted([k.session(mine, "u1"), k.session(mine, "u1"), k.session(anonymous)])
    assert k.session(theirs, "u2") not in written  # the duplicate is not written again

from dataclasses import replace

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from online.blend import BlendParams
from online.model import LoadedModel
from online.ranking import rank, session_vector, similar_items
from tests.support import tiny

# hand-computed without co-visitation (the tiny bundle has co-visitation lists of its own)
PARAMS = BlendParams(weight_user=1.0, weight_session=1.0, weight_popularity=0.2, weight_covisit=0.0)


def _model(**kw) -> LoadedModel:
    return LoadedModel.from_bundle(tiny.bundle(**kw))


def _events(*items: str) -> list[SessionEvent]:
    return [SessionEvent(item_id=i, event_type="view", ts=float(n), event_id=f"e{n}") for n, i in enumerate(items)]


USER_A = UserRecord(vector=np.array([2.0, 0.0], dtype=np.float32), candidates=np.array([0, 1, 2, 5], dtype=np.int32))


def test_known_user_without_session_gets_their_taste_first() -> None:
    r = rank(_model(), RequestFeatures(user=USER_A, session=[]), 3, None, PARAMS)
    assert r.strategy == "precomputed"
    assert r.item_ids == ["a0", "a1", "a2"]
    assert r.reasons == ["for_you"] * 3


def test_session_pulls_an_a_user_towards_b_and_excludes_seen_items() -> None:
    features = RequestFeatures(user=USER_A, session=_events("b0", "b1"))
    r = rank(_model(), features, 3, None, PARAMS.__class__(weight_user=0.2, weight_session=2.0))
    assert r.strategy == "hybrid"
    assert "b0" not in r.item_ids and "b1" not in r.item_ids
    assert r.item_ids[0] == "b2"


def test_unknown_user_with_session_is_served_by_the_session() -> None:
    r = rank(_model(), RequestFeatures(user=None, session=_events("a2")), 2, None, PARAMS)
    assert r.strategy == "session"
    assert r.item_ids == ["a1", "a0"]  # a1 is closer to a2 than a0 is, and more popular
    assert all(reason == "similar_to:a2" for reason in r.reasons)


def test_cold_start_and_an_unread_store_are_served_popular() -> None:
    r = rank(_model(), RequestFeatures(user=None, session=[]), 2, None, PARAMS)
    assert (r.strategy, r.item_ids) == ("popular", ["b0", "b1"])
    degraded = rank(_model(), None, 2, None, PARAMS)  # the store was not read: popular, no flag of rank's own
    assert (degraded.strategy, degraded.item_ids, degraded.flags) == ("popular", ["b0", "b1"], [])


def test_category_filter_is_never_broken_to_fill() -> None:
    r = rank(_model(), RequestFeatures(user=USER_A, session=[]), 5, "B", PARAMS)
    assert set(r.item_ids) <= {"b0", "b1", "b2"}
    assert len(r.item_ids) == 3 and "short" in r.flags


def test_unavailable_items_are_never_served() -> None:
    r = rank(_model(available=[False, True, True, True, True, True]), RequestFeatures(USER_A, []), 6, None, PARAMS)
    assert "a0" not in r.item_ids
    assert len(r.item_ids) == 5


def test_session_vector_weights_recent_items_more() -> None:
    m = _model()
    vec = session_vector(m, _events("a0", "a0", "b0"), half_life=1.0)
    assert vec is not None and vec[1] > vec[0]  # the newest item (b0, axis 1) dominates
    assert session_vector(m, _events("unknown"), half_life=1.0) is None


def test_similar_items_reads_precomputed_neighbours() -> None:
    ids, scores = similar_items(_model(), "b0", 5)
    assert ids == ["b1", "b2"]
    assert scores == [0.9, 0.9]


def test_precomputed_tier_has_its_own_popularity_weight() -> None:
    # u0's list is a0, a1, a2, b2; b2 is by far the most popular of them
    session_led = BlendParams(weight_user=0.0, weight_popularity=5.0, precomputed_weight_popularity=0.0)
    r = rank(_model(), RequestFeatures(user=USER_A, session=[]), 4, None, session_led)
    assert r.strategy == "precomputed" and r.item_ids[:3] == ["a0", "a1", "a2"]  # session weights unused
    popular_led = BlendParams(precomputed_weight_popularity=5.0)
    assert rank(_model(), RequestFeatures(user=USER_A, session=[]), 4, None, popular_led).item_ids[0] == "b2"


def _with_history(*seen: str) -> UserRecord:
    idx = np.array([tiny.ITEM_IDS.index(i) for i in seen], dtype=np.int32)
    return UserRecord(vector=USER_A.vector, candidates=USER_A.candidates, seen=idx)


def test_an_item_the_user_has_is_served_by_no_tier() -> None:
    """u0 has a1 and b1 in their history: not from their list, a neighbour, co-visitation or the fill."""
    user = _with_history("a1", "b1")
    requests = {
        "precomputed": RequestFeatures(user, []),
        "hybrid": RequestFeatures(user, _events("a0")),  # a1 is a0's ALS neighbour
        "hybrid-b": RequestFeatures(user, _events("b0")),  # b1 is b0's neighbour and co-visitor
    }
    for name, features in requests.items():
        r = rank(_model(), features, 6, None, PARAMS)
        assert not {"a1", "b1"} & set(r.item_ids), (name, r)
        assert len(r.item_ids) == 6 - 2 - len(features.session), name  # filled, but never with them


def test_without_exclude_seen_history_items_return_and_say_so() -> None:
    repeat = BlendParams(weight_user=1.0, weight_session=1.0, weight_popularity=0.2, exclude_seen=False)
    r = rank(_model(), RequestFeatures(_with_history("a1"), []), 3, None, repeat)
    assert r.item_ids == ["a0", "a1", "a2"]
    assert r.reasons[1] == "seen_before" and r.reasons[0] == "for_you"


def test_the_whole_session_is_excluded_beyond_the_session_list() -> None:
    """The session list holds only the newest events; its seen set holds every item of the session."""
    newest = _events(*["b0"] * 50)  # a0 came first, 79 events ago, and fell off the list
    r = rank(_model(), RequestFeatures(None, newest, frozenset({"a0", "b0"})), 5, None, PARAMS)
    assert "a0" not in r.item_ids  # a0 co-visits b0: without the seen set it would come back
    assert "a0" in rank(_model(), RequestFeatures(None, newest), 5, None, PARAMS).item_ids


def test_a_list_from_ease_or_the_fusion_is_served_in_its_own_order() -> None:
    # USER_A's vector ranks a0 > a1 > a2 > b2; a batch list in the opposite order is served as listed
    user = UserRecord(vector=USER_A.vector, candidates=np.array([5, 2, 1, 0], dtype=np.int32))
    by_vector = rank(_model(), RequestFeatures(user=user, session=[]), 4, None, PARAMS)
    by_rank = rank(_model(), RequestFeatures(user=user, session=[]), 4, None, replace(PARAMS, precomputed_by_rank=True))
    assert by_vector.item_ids[0] == "a0"
    assert by_rank.strategy == "precomputed" and by_rank.item_ids == ["b2", "a2", "a1", "a0"]

"""The caches of ranked answers (online.cache), on the tiny model: keys, eviction, what a hit serves."""

from __future__ import annotations

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from online.cache import ResponseCache, SemanticCache, top
from online.model import LoadedModel
from online.ranking import Ranked
from tests.support import tiny


def _model() -> LoadedModel:
    return LoadedModel.from_bundle(tiny.bundle())


def _events(*items: str) -> list[SessionEvent]:
    return [SessionEvent(item, "view", float(t), f"e{t}") for t, item in enumerate(items)]


def _ranked(*items: str, flags: list[str] | None = None) -> Ranked:
    return Ranked(
        list(items), [1.0 - 0.1 * i for i in range(len(items))], ["popular"] * len(items), "session", flags or []
    )


def test_the_exact_cache_is_an_lru_of_whole_keys() -> None:
    cache = ResponseCache(max_entries=2)
    a, b, c = (ResponseCache.key("v1", u, b"", 10, None) for u in ("u1", "u2", "u3"))
    cache.put(a, _ranked("a0"))
    cache.put(b, _ranked("b0"))
    assert cache.get(a).item_ids == ["a0"]  # a is now the most recently used
    cache.put(c, _ranked("c0"))
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None
    assert cache.get(ResponseCache.key("v2", "u1", b"", 10, None)) is None  # a new version is a new key
    assert cache.get(ResponseCache.key("v1", "u1", b"", 5, None)) is None  # so is another k
    assert (cache.hits, cache.misses) == (3, 3)


def test_the_semantic_key_is_the_last_distinct_known_items_of_a_visitor_without_a_record() -> None:
    model, cache = _model(), SemanticCache(10, items=2, margin=5)
    key = cache.key(model, RequestFeatures(None, _events("a0", "b1", "b1", "zz-unknown")), 3, None)
    assert key == (model.version, ("b1", "a0"), 3, None)
    user = UserRecord(vector=np.ones(2, dtype=np.float32))
    assert cache.key(model, RequestFeatures(user, _events("a0")), 3, None) is None  # a record: not for this cache
    assert cache.key(model, RequestFeatures(None, _events("zz-unknown")), 3, None) is None
    assert cache.key(model, RequestFeatures(None, []), 3, None) is None


def test_a_semantic_hit_drops_what_the_asking_session_saw_and_misses_when_too_few_are_left() -> None:
    model, cache = _model(), SemanticCache(10, items=1, margin=2)
    first = RequestFeatures(None, _events("b0", "a0"))
    key = cache.key(model, first, 2, None)
    cache.put(key, _ranked("a1", "b1", "a2", "b2", flags=["short", "unknown_user"]))
    other = RequestFeatures(None, _events("a1", "a0"), frozenset({"b2", "a1", "a0"}))
    assert cache.key(model, other, 2, None) == key
    hit = cache.get(key, other, 2)
    assert hit.item_ids == ["b1", "a2"] and hit.flags == ["unknown_user"]
    assert cache.get(key, RequestFeatures(None, _events("a1", "b1", "a2", "a0")), 2) is None  # 1 left of 2
    assert (cache.hits, cache.misses) == (1, 1)


def test_top_recomputes_short_for_the_smaller_k() -> None:
    wide = _ranked("a0", "a1", "a2", flags=["unknown_user", "short"])
    assert top(wide, 2).flags == ["unknown_user"] and top(wide, 2).item_ids == ["a0", "a1"]
    assert top(wide, 5).flags == ["unknown_user", "short"]

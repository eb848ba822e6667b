"""The compiled pool and top-k (online.features' numba kernels) against a plain reference written straight
from the module docstring's definitions, on random versions and requests (seeded): every candidate,
feature, z statistic, exclusion, top-k order and reason."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_store.base import ItemBundle, RequestFeatures, SessionEvent, UserRecord
from feature_store.keys import ALL_CATEGORIES
from online.features import COLUMN, FEATURE_NAMES, RAW_FEATURES, build_pool
from online.model import LoadedModel
from shared.schemas import EVENT_TYPES, EVENT_WEIGHTS

N_ITEMS, F, WIDTH, CATEGORIES = 300, 8, 6, ["c0", "c1", "c2", "c3"]


def _model(rng: np.random.Generator) -> LoadedModel:
    factors = rng.standard_normal((N_ITEMS, F)).astype(np.float32)
    factors[7] = 0.0  # an item without a vector: its unit vector stays 0
    neighbours = rng.integers(0, N_ITEMS, (N_ITEMS, WIDTH)).astype(np.int32)
    covisit = rng.integers(0, N_ITEMS, (N_ITEMS, WIDTH)).astype(np.int32)
    covisit[:, -2:] = -1  # padding
    covisit_scores = np.where(covisit >= 0, rng.random((N_ITEMS, WIDTH)), 0).astype(np.float32)
    categories = np.array([CATEGORIES[j % len(CATEGORIES)] for j in range(N_ITEMS)], dtype=object)
    popularity = rng.random(N_ITEMS).astype(np.float32) * 100
    order = np.argsort(-popularity).astype(np.int32)
    popular = {ALL_CATEGORIES: order} | {c: order[categories[order] == c] for c in CATEGORIES}
    bundle = ItemBundle(
        version="2026-01-01.00000000ff",
        meta={},
        item_ids=[f"i{j}" for j in range(N_ITEMS)],
        categories=categories,
        titles=[f"t{j}" for j in range(N_ITEMS)],
        available=rng.random(N_ITEMS) > 0.1,
        arrays={
            "item_factors": factors,
            "neighbours": neighbours,
            "neighbour_scores": rng.random((N_ITEMS, WIDTH)).astype(np.float32),
            "covisit": covisit,
            "covisit_scores": covisit_scores,
            "popularity": popularity,
        },
        popular=popular,
    )
    return LoadedModel.from_bundle(bundle)


def _request(rng: np.random.Generator, with_user: bool, n_events: int) -> RequestFeatures:
    user = None
    if with_user:
        user = UserRecord(
            vector=rng.standard_normal(F).astype(np.float32),
            candidates=rng.choice(N_ITEMS, 40, replace=False).astype(np.int32),
            seen=rng.choice(N_ITEMS, 15, replace=False).astype(np.int32),
        )
    events = [
        SessionEvent(
            item_id=f"i{rng.integers(0, N_ITEMS)}" if rng.random() > 0.1 else "unknown-item",
            event_type=str(rng.choice(EVENT_TYPES)),
            ts=float(n),
            event_id=f"e{n}",
        )
        for n in range(n_events)
    ]
    seen = frozenset(f"i{j}" for j in rng.choice(N_ITEMS, 4, replace=False)) if n_events else frozenset()
    return RequestFeatures(user, events, seen)


def _reference(model, features, category, seed_items, half_life, popular_pool, exclude_seen):
    """The pool as the module docstring defines it, one candidate at a time in float64."""
    index, user, events = model.bundle.item_index, features.user, features.session
    known = [
        (pos, index[e.item_id], EVENT_WEIGHTS.get(e.event_type, 1.0))
        for pos, e in enumerate(events)
        if e.item_id in index
    ]
    decay = {pos: 0.5 ** ((len(events) - 1 - pos) / half_life) for pos, _, _ in known}
    session_idx = [j for _, j, _ in known]
    session_w = [kind * decay[pos] for pos, _, kind in known]
    seeds: list[tuple[int, float]] = []
    for pos, j, _ in reversed(known):
        if len(seeds) < seed_items and j not in [s for s, _ in seeds]:
            seeds.append((j, decay[pos]))
    base = [int(j) for j in (user.candidates if user is not None else model.popular(category)[:popular_pool])]
    blocked = set(np.flatnonzero(~model.available).tolist()) | set(session_idx)
    blocked |= {index[i] for i in features.session_seen if i in index}
    if exclude_seen and user is not None:
        blocked |= set(user.seen.tolist())
    code = model.category_index.get(category, -1) if category else None

    def servable(j: int) -> bool:
        return j >= 0 and j not in blocked and (code is None or model.category_codes[j] == code)

    lists = base + [int(j) for s, _ in seeds for j in model.seed_lists[s]]
    items = sorted({j for j in lists if servable(j)})
    unit = model.unit_factors.astype(np.float64)
    s_vec = None
    if session_idx:
        v = sum(w * unit[j] for j, w in zip(session_idx, session_w, strict=True))
        norm = math.sqrt(float(v @ v))
        s_vec = v / norm if norm > 0 else None
    raw = np.zeros((len(RAW_FEATURES), len(items)))
    total = sum(session_w)
    for p, c in enumerate(items):
        if user is not None:
            raw[COLUMN["user_dot"], p] = unit[c] @ user.vector * model.norms[c]
            for r, b in enumerate(base):
                if b == c:
                    raw[COLUMN["candidate_rank"], p] = 1 / math.log2(2 + r)
                    raw[COLUMN["in_candidates"], p] = 1.0
        if s_vec is not None:
            raw[COLUMN["session_cos"], p] = unit[c] @ s_vec
        raw[COLUMN["log_popularity"], p] = model.log_popularity[c]
        if seeds:
            raw[COLUMN["last_item_sim"], p] = unit[c] @ unit[seeds[0][0]]
            raw[COLUMN["covisit"], p] = sum(
                d * model.seed_scores[s, w]
                for s, d in seeds
                for w in range(model.seed_lists.shape[1])
                if model.seed_lists[s, w] == c
            )
            if total > 0:
                same = [
                    w
                    for j, w in zip(session_idx, session_w, strict=True)
                    if model.category_codes[j] == model.category_codes[c]
                ]
                raw[COLUMN["category_share"], p] = sum(same) / total
    z = raw[:4]
    mean = z.mean(axis=1) if items else np.zeros(4)
    std = z.std(axis=1) if items else np.zeros(4)
    scale = np.array([1 / s if s >= 1e-9 else 0.0 for s in std])
    return np.array(items, dtype=np.int64), raw, mean, scale, blocked, s_vec


CASES = [
    (with_user, n_events, category, exclude_seen)
    for with_user in (True, False)
    for n_events in (0, 1, 6)
    for category in (None, "c2", "nope")
    for exclude_seen in (True, False)
]


@pytest.mark.parametrize(("with_user", "n_events", "category", "exclude_seen"), CASES)
def test_the_compiled_pool_matches_the_reference(with_user, n_events, category, exclude_seen) -> None:
    rng = np.random.default_rng(CASES.index((with_user, n_events, category, exclude_seen)))
    model = _model(np.random.default_rng(7))
    for _ in range(20):
        features = _request(rng, with_user, n_events)
        pool = build_pool(model, features, category, 3, 2.0, 50, exclude_seen)
        items, raw, mean, scale, blocked, s_vec = _reference(model, features, category, 3, 2.0, 50, exclude_seen)
        assert pool.items.tolist() == items.tolist()
        np.testing.assert_allclose(pool.raw, raw, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pool.z_mean, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pool.z_scale, scale, rtol=1e-4, atol=1e-6)
        assert set(np.flatnonzero(pool.blocked).tolist()) == blocked
        assert (pool.s_vec is None) == (s_vec is None)
        if s_vec is not None:
            np.testing.assert_allclose(pool.s_vec, s_vec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 10, 500])
def test_the_compiled_top_k_is_a_stable_sort_of_the_score_with_its_reasons(k: int) -> None:
    rng = np.random.default_rng(k)
    model = _model(np.random.default_rng(7))
    for n in range(30):
        pool = build_pool(model, _request(rng, n % 2 == 0, n % 7), None, 3, 2.0, 50)
        weights = rng.standard_normal(len(FEATURE_NAMES)).astype(np.float32)
        if n % 3 == 0:
            weights[:] = 0  # every score equal: the order is the items' (ascending index)
        rows, scores, match = pool.top(weights, 0.5, k)
        score = pool.score(weights, 0.5)
        expected = np.argsort(-score, kind="stable")[:k]
        assert rows.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, score[expected], rtol=1e-5, atol=1e-5)
        assert pool.reasons(rows, match) == pool.reasons(rows)  # the kernel's match = the plain search's

"""The learned re-ranker: its exported format, its routing tier and its training on known answers."""

from dataclasses import replace

import numpy as np
import pytest

from feature_store.base import RequestFeatures, SessionEvent
from lab.train_reranker import Queries, hit_rate_in_pools, train_reranker
from online.blend import BlendParams
from online.model import LoadedModel
from online.ranking import rank
from online.reranker import LinearReranker, RerankerFormatError
from tests.support import tiny

SPEC = {"kind": "linear", "features": ["popularity_z"], "weights": [-1.0], "bias": 0.0}


def _model() -> LoadedModel:
    return LoadedModel.from_bundle(tiny.bundle())


def _events(*items: str) -> list[SessionEvent]:
    return [SessionEvent(item_id=i, event_type="view", ts=float(n), event_id=f"e{n}") for n, i in enumerate(items)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**SPEC, "features": ["colour"]}, "unknown feature"),
        ({**SPEC, "weights": [1.0, 2.0]}, "need as many weights"),
        ({**SPEC, "weights": [float("nan")]}, "finite"),
        ({**SPEC, "kind": "trees"}, "unsupported"),
        ({"kind": "linear"}, "not a re-ranker spec"),
    ],
)
def test_unusable_specs_are_refused_with_the_reason(spec: dict, message: str) -> None:
    with pytest.raises(RerankerFormatError, match=message):
        LinearReranker.from_dict(spec)


def test_version_without_a_reranker_has_none() -> None:
    assert LinearReranker.for_version({"params": {"blend": {}}}) is None
    served = LinearReranker.for_version({"params": {"reranker": SPEC}})
    assert served is not None and served.features == ("popularity_z",) and served.weights.tolist() == [-1.0]


def test_session_requests_are_reranked_and_others_are_not() -> None:
    model, params = _model(), BlendParams(weight_user=1.0, weight_covisit=0.0)  # the blend this test reasons about
    only_popular = LinearReranker.from_dict({**SPEC, "weights": [1.0]})
    session = RequestFeatures(None, _events("a0"))
    blended = rank(model, session, 5, None, params)
    reranked = rank(model, session, 5, None, params, only_popular)
    assert (blended.strategy, reranked.strategy) == ("session", "reranked")
    assert blended.item_ids[:2] == ["a1", "a2"]  # the blend follows the session (a0's neighbours first)
    # the re-ranker that weighs popularity only: the same pool (a0 excluded), most popular first
    assert reranked.item_ids == ["b0", "b1", "b2", "a2", "a1"]
    cold = rank(model, RequestFeatures(None, []), 3, None, params, only_popular)
    assert cold.strategy == "popular"  # no session: the reranker is not this tier


def _queries(n: int, rng: np.random.Generator) -> Queries:
    """Pools of 30 candidates with 3 features; the positive has the largest feature 1 (feature 0 and 2 noise)."""
    blocks, positive, offsets = [], [], [0]
    for _ in range(n):
        x = rng.normal(size=(30, 3)).astype(np.float32)
        p = int(np.argmax(x[:, 1]))
        blocks.append(x)
        positive.append(offsets[-1] + p)
        offsets.append(offsets[-1] + 30)
    return Queries(
        features=np.vstack(blocks),
        offsets=np.asarray(offsets),
        positive=np.asarray(positive),
        session=np.arange(n) // 2,
        counts={"n_queries": n},
    )


def test_training_finds_the_informative_feature() -> None:
    q = _queries(200, np.random.default_rng(0))
    names = ["user_z", "session_z", "covisit"]
    spec = train_reranker(q, names, seed=1)
    w = np.asarray(spec["weights"])
    assert w[1] > 0 and abs(w[1]) > 5 * max(abs(w[0]), abs(w[2]))
    assert hit_rate_in_pools(q, np.arange(200), w, k=1) >= 0.9  # chance: 1/30
    assert spec == train_reranker(q, names, seed=1)  # deterministic: it is published and hashed
    LinearReranker.from_dict(spec)  # and it is what the API reads


def test_hit_rate_in_pools_counts_ties_in_favour_and_ranks_by_score() -> None:
    q = Queries(
        features=np.array([[1.0], [2.0], [3.0], [5.0], [4.0]], dtype=np.float32),
        offsets=np.array([0, 3, 5]),
        positive=np.array([1, 4]),  # query 0: positive 2.0 ranks 2nd of 3; query 1: 4.0 ranks 2nd of 2
        session=np.array([0, 1]),
        counts={},
    )
    assert hit_rate_in_pools(q, np.array([0, 1]), np.array([1.0]), k=1) == 0.0
    assert hit_rate_in_pools(q, np.array([0, 1]), np.array([1.0]), k=2) == 1.0
    assert hit_rate_in_pools(q, np.array([0, 1]), np.array([-1.0]), k=1) == 0.5


def test_rank_with_reranker_is_replace_safe() -> None:
    # the reranker only reorders: same pool, same exclusions as the blend
    model = LoadedModel.from_bundle(replace(tiny.bundle(), available=np.array([True, False, True, True, True, True])))
    r = rank(model, RequestFeatures(None, _events("a0")), 6, None, BlendParams(), LinearReranker.from_dict(SPEC))
    assert "a1" not in r.item_ids and "a0" not in r.item_ids

"""Train the learned re-ranker with scikit-learn on historical sessions; export it for numpy serving.

Examples. Every replay target of the training sessions (``lab.replay.iter_targets``: the
session so far -> the next item) becomes one *query*: the candidate pool the API would build for it
(``online.features.build_pool``, the same function the API calls) with the request-time features of
every candidate. A query whose pool does not contain the next item teaches nothing about ordering
and is skipped (counted as ``n_target_not_in_pool``: the pool's recall bounds any re-ranker). Each
target is used twice, once with the user's record and once anonymously (user features zero), because
the API re-ranks both known users and anonymous visitors.

Model. Pairwise logistic regression (a linear RankNet): for a query with positive p and sampled
negatives n_1..n_m, the rows ``x_p - x_n`` (label 1) and ``x_n - x_p`` (label 0), no intercept.
It learns w such that ``w . x_p > w . x_n``, which is exactly what a top-k list needs; the per-request
z-scored features make queries comparable. Features are scaled by their standard deviation over the
difference rows before fitting and the scale is folded back into the exported weights.
The regularisation C is chosen on a seeded 80/20 split of the training SESSIONS by HitRate@10 within
the pools; the chosen C is then refitted on all of them.

The caller decides which sessions are training data: ``hybridrec tune`` trains on the validation day
(a model trained before it), never on the test day it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from lab.replay import TargetCounts, iter_targets
from lab.serving import ServingModel
from online.blend import BlendParams
from online.features import build_pool
from shared.errors import DataValidationError

# What the re-ranker sees by default: every request-time feature the API computes.
DEFAULT_FEATURES = (
    "user_z",
    "session_z",
    "popularity_z",
    "covisit_z",
    "covisit",
    "last_item_sim",
    "category_share",
    "in_candidates",
    "candidate_rank",
    "log_popularity",
    "session_cos",
)
C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Queries:
    """Training queries: ``features[offsets[q]:offsets[q+1]]`` are query q's candidates, row
    ``positive[q]`` (absolute) is its next item."""

    features: np.ndarray  # float32 (n_rows, n_features)
    offsets: np.ndarray  # int64 (n_queries + 1,)
    positive: np.ndarray  # int64 (n_queries,)
    session: np.ndarray  # int64 (n_queries,) session ordinal, for splitting by session
    counts: dict[str, int]


def collect_queries(
    serving: ServingModel,
    sessions: pd.DataFrame,
    params: BlendParams,
    names: Sequence[str] = DEFAULT_FEATURES,
    progress: Callable[[int], None] | None = None,
) -> Queries:
    """Candidate pools with features for every target of ``sessions`` (``sample_sessions`` output)."""
    model = serving.model
    blocks: list[np.ndarray] = []
    offsets, positive, session_of = [0], [], []
    counts = TargetCounts()
    n_queries = not_in_pool = 0
    for s, (_events, user, found) in enumerate(iter_targets(serving, sessions, params, counts)):
        for q in found:
            for who in (user, None) if user is not None else (None,):
                n_queries += 1
                pool = build_pool(
                    model,
                    q.request(who, params),
                    None,
                    params.seed_items,
                    params.session_half_life,
                    params.popular_pool,
                    params.exclude_seen,
                )
                hit = np.flatnonzero(pool.items == q.target)
                if hit.size == 0:
                    not_in_pool += 1
                    continue
                positive.append(offsets[-1] + int(hit[0]))
                blocks.append(pool.matrix(names))
                offsets.append(offsets[-1] + len(pool.items))
                session_of.append(s)
        if progress is not None:
            progress(1)
    if not positive:
        raise DataValidationError("no training query: no target is in its candidate pool")
    return Queries(
        features=np.vstack(blocks),
        offsets=np.asarray(offsets, dtype=np.int64),
        positive=np.asarray(positive, dtype=np.int64),
        session=np.asarray(session_of, dtype=np.int64),
        counts={
            "n_sessions": counts.sessions,
            "n_queries": n_queries,
            "n_target_not_in_pool": not_in_pool,
            "n_queries_used": len(positive),
            "n_candidate_rows": int(offsets[-1]),
        },
    )


def _pairs(q: Queries, which: np.ndarray, negatives: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric difference rows of the queries ``which``: (x_p - x_n, 1) and (x_n - x_p, 0)."""
    diffs = []
    for i in which.tolist():
        lo, hi, pos = q.offsets[i], q.offsets[i + 1], q.positive[i]
        negs = np.setdiff1d(np.arange(lo, hi), [pos])
        if negs.size == 0:
            continue
        if negs.size > negatives:
            negs = np.sort(rng.choice(negs, size=negatives, replace=False))
        diffs.append(q.features[pos] - q.features[negs])
    d = np.vstack(diffs) if diffs else np.zeros((0, q.features.shape[1]), dtype=np.float32)
    x = np.vstack([d, -d])
    y = np.concatenate([np.ones(len(d)), np.zeros(len(d))])
    return x, y


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> np.ndarray:
    """Weights in the ORIGINAL feature units (float64 (n_features,))."""
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2_000, random_state=seed)
    clf.fit(x / scale, y)
    return clf.coef_[0] / scale


def hit_rate_in_pools(q: Queries, which: np.ndarray, weights: np.ndarray, k: int = 10) -> float:
    """Share of queries ``which`` whose next item ranks in the top ``k`` of its pool by ``weights``."""
    hits = 0
    for i in which.tolist():
        lo, hi = q.offsets[i], q.offsets[i + 1]
        scores = q.features[lo:hi] @ weights
        hits += int((scores > scores[q.positive[i] - lo]).sum()) < k
    return hits / max(len(which), 1)


def blend_weights(params: BlendParams, names: Sequence[str]) -> np.ndarray:
    """The hand-set blend as a weight vector over ``names`` (it needs its four z features among them)."""
    blend = {
        "user_z": params.weight_user,
        "session_z": params.weight_session,
        "popularity_z": params.weight_popularity,
        "covisit_z": params.weight_covisit,
    }
    missing = [n for n in blend if n not in names]
    if missing:
        raise ValueError(f"feature set lacks the blend's {missing}")
    return np.array([blend.get(n, 0.0) for n in names], dtype=np.float64)


def train_reranker(
    q: Queries,
    names: Sequence[str] = DEFAULT_FEATURES,
    seed: int = 42,
    negatives: int = 20,
    blend: BlendParams | None = None,
) -> dict:
    """Fit the pairwise logistic model (module docstring); the exported spec ``online.reranker`` reads.

    ``blend``: also report the blend's in-pool HitRate@10 on the held-out sessions (same queries).
    Deterministic for a given ``q`` and ``seed``: the spec goes into the published content hash.
    """
    rng = np.random.default_rng(seed)
    sessions = np.unique(q.session)
    held = set(rng.choice(sessions, size=max(1, len(sessions) // 5), replace=False).tolist())
    is_held = np.fromiter((s in held for s in q.session.tolist()), dtype=bool, count=len(q.session))
    fit_q, val_q = np.flatnonzero(~is_held), np.flatnonzero(is_held)
    if fit_q.size == 0 or val_q.size == 0:
        raise DataValidationError(f"too few training sessions to choose C ({len(sessions)})")
    x, y = _pairs(q, fit_q, negatives, np.random.default_rng(seed))
    scores = {c: hit_rate_in_pools(q, val_q, _fit(x, y, c, seed)) for c in C_GRID}
    best_c = max(C_GRID, key=lambda c: (scores[c], -C_GRID.index(c)))
    x_all, y_all = _pairs(q, np.arange(len(q.positive)), negatives, np.random.default_rng(seed))
    weights = _fit(x_all, y_all, best_c, seed)
    return {
        "kind": "linear",
        "features": list(names),
        "weights": [round(float(w), 8) for w in weights],
        "bias": 0.0,
        "trainer": "sklearn LogisticRegression, pairwise (x_pos - x_neg), no intercept",
        "c": best_c,
        "c_grid_hit_rate_at_10_in_pool": {str(c): round(v, 6) for c, v in scores.items()},
        "negatives_per_query": negatives,
        "seed": seed,
        "data": q.counts,
        **(
            {"blend_hit_rate_at_10_in_pool": round(hit_rate_in_pools(q, val_q, blend_weights(blend, names)), 6)}
            if blend is not None
            else {}
        ),
    }

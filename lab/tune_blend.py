"""Stages 2 and 3 of ``hybridrec tune`` (``lab.tune``) on the chosen ALS model: the blend, the
precomputed tier's popularity weight, and the learned re-ranker, all on the validation replay.

Stage 2, blend: every (weight_user, weight_popularity) pair, then ``weight_covisit`` at the best pair,
by hybrid HitRate@10; then the precomputed tier's own popularity weight by batch-only HitRate@10 (that
tier serves a known user without a session; the session weights never reach it). Stage 3: the
re-ranker trained on the same validation targets (``lab.train_reranker``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from lab.replay import evaluate_replay, sample_sessions
from lab.search import first_argmax
from lab.serving import ServingModel
from lab.train_reranker import collect_queries, train_reranker
from online.blend import BlendParams
from shared.schemas import BLEND_FIELDS

if TYPE_CHECKING:
    from lab.tune import TuneOptions

METRIC = "hybrid_hit_rate_at_10"
BATCH_METRIC = "batch_only_hit_rate_at_10"


def grid(base: BlendParams, opts: TuneOptions) -> list[BlendParams]:
    """``base`` with every (weight_user, weight_popularity) pair of ``opts``, weight_user varying slowest."""
    return [
        replace(base, weight_user=float(u), weight_popularity=float(p))
        for u, p in itertools.product(opts.weight_user, opts.weight_popularity)
    ]


def blend_dict(params: BlendParams) -> dict[str, float]:
    """The tunable fields of ``params``: what ``best`` holds and ``batch.tuning_file`` reads back."""
    return {name: float(getattr(params, name)) for name in BLEND_FIELDS}


def replay_scores(
    serving: ServingModel, events: pd.DataFrame, opts: TuneOptions, blend: BlendParams, both: bool
) -> dict:
    """Validation or test scores of one (model, blend): hybrid HitRate@10 (+ batch-only when ``both``)."""
    variants = ("batch_only", "hybrid") if both else ("hybrid",)
    # the one version-given part of serving that is not a tunable weight: how the batch list is ordered
    by_rank = BlendParams().for_version(serving.model.bundle.meta).precomputed_by_rank
    blend = replace(blend, precomputed_by_rank=by_rank)
    replay = evaluate_replay(
        serving, events, (10,), opts.seed, opts.max_sessions, blend, variants=variants, max_targets=opts.max_targets
    )
    hit = {v: float(replay["variants"][v]["10"]["hit_rate"]) for v in variants}
    return {
        METRIC: hit["hybrid"],
        **({BATCH_METRIC: hit["batch_only"]} if both else {}),
        "n_sessions": replay["data"]["n_sessions"],
        "n_targets": replay["data"]["n_targets"],
    }


def search_blend(
    serving: ServingModel, events: pd.DataFrame, opts: TuneOptions, base: BlendParams, say: Callable[[str], None]
) -> tuple[BlendParams, list[dict]]:
    """Stage 2 on validation: the chosen blend and every scored point's row, on the chosen ALS model.

    Every (weight_user, weight_popularity) pair first; then ``weight_covisit`` swept over its grid at
    the best pair (one axis more; the pair grid's rows come first, so ties keep the pair's point).
    """
    points = grid(base, opts)
    rows = []

    def score(params: BlendParams) -> None:
        rows.append({"params": blend_dict(params), **replay_scores(serving, events, opts, params, both=False)})
        say(
            f"  [{len(rows):>2}] weight_user={params.weight_user:<5} weight_popularity={params.weight_popularity:<5} "
            f"weight_covisit={params.weight_covisit:<5} HitRate@10={rows[-1][METRIC]:.4f}"
        )

    for params in points:
        score(params)
    best_pair = points[first_argmax([r[METRIC] for r in rows])]
    sweep = [replace(best_pair, weight_covisit=float(c)) for c in opts.weight_covisit]
    for params in sweep:
        if params not in points:
            points.append(params)
            score(params)
    return points[first_argmax([r[METRIC] for r in rows])], rows


def search_precomputed(
    serving: ServingModel, events: pd.DataFrame, opts: TuneOptions, blend: BlendParams, say: Callable[[str], None]
) -> tuple[BlendParams, list[dict]]:
    """Stage 2b on validation: the precomputed tier's own popularity weight, by batch-only HitRate@10
    (that tier serves a known user without a session; the session weights above never reach it)."""
    rows = []
    for w in opts.precomputed_weight_popularity:
        params = replace(blend, precomputed_weight_popularity=float(w))
        replay = evaluate_replay(
            serving,
            events,
            (10,),
            opts.seed,
            opts.max_sessions,
            params,
            variants=("batch_only",),
            max_targets=opts.max_targets,
        )
        rows.append(
            {
                "precomputed_weight_popularity": float(w),
                BATCH_METRIC: replay["variants"]["batch_only"]["10"]["hit_rate"],
            }
        )
        say(f"  precomputed_weight_popularity={w:<5} batch-only HitRate@10={rows[-1][BATCH_METRIC]:.4f}")
    best = opts.precomputed_weight_popularity[first_argmax([r[BATCH_METRIC] for r in rows])]
    return replace(blend, precomputed_weight_popularity=float(best)), rows


def fit_reranker(
    serving: ServingModel, events: pd.DataFrame, opts: TuneOptions, blend: BlendParams, say: Callable[[str], None]
) -> dict:
    """Stage 3 on validation: the re-ranker trained on the validation sessions' targets (the same
    seeded sample the blend was chosen on), with the chosen blend's pool parameters."""
    sessions = sample_sessions(events, opts.max_sessions, opts.seed, opts.max_targets)
    queries = collect_queries(serving, sessions, blend)
    spec = train_reranker(queries, seed=opts.seed, blend=blend)
    say(
        f"  {queries.counts['n_queries_used']} of {queries.counts['n_queries']} queries had the next item in the "
        f"pool; C={spec['c']}; in-pool HitRate@10 on held-out validation sessions: re-ranker "
        f"{max(spec['c_grid_hit_rate_at_10_in_pool'].values()):.4f} vs blend {spec['blend_hit_rate_at_10_in_pool']:.4f}"
    )
    return spec

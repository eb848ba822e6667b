"""``hybridrec tune``: choose the ALS hyper-parameters, then the online blend, on a validation split.

Split (synthetic data ending on day L, ``lab.datasets``):

- validation: batch trained through L-2, replaying the sessions that start on L-1. Every choice is
  made here;
- test: batch trained through L-1, replaying the sessions of day L (what ``hybridrec evaluate``
  reports). It is scored only after both choices are made: Settings ALS and tuned ALS, each with the
  configured and with the tuned blend. So the gain, and how much of it each stage brings, is measured
  on sessions no choice saw.

Metric, both stages: hybrid HitRate@10 of the validation replay (``lab.replay``, through
``online.ranking.rank``, the API's code). It scores the ALS model as well as the blend because the ALS
factors feed every signal the API blends: the user vector and its precomputed candidates, the session
vector (built from item factors), and the item neighbours. Batch-only HitRate@10, or a static NDCG@10
of the L-2 model, would judge the user half only; the replay's batch-only HitRate@10 is recorded per
ALS point for reference.

Stage 1, ALS: one pass of coordinate search (``lab.search``) from the Settings point over
factors, regularization, alpha, iterations. Each point is one batch run through L-2 with those params
(``Settings.model_copy``), replayed with the configured blend right after its run: every point writes
the same ``runs/date=L-2``, so each is scored before the next overwrites it, and the best point's
serving model is kept in memory for stage 2. Stage 2, blend: every (weight_user, weight_popularity)
pair on that model. ``weight_session`` stays fixed because only ratios of the weights matter (the
blend is a weighted sum of z-scores ranked per request).

Ties: the first point in scoring (grid) order with the highest validation score wins. The result is
written to ``TuneOptions.result_path`` (format: ``shared.schemas.TuningFile``); the next batch run in that data dir
trains with its ``als`` and publishes its ``best`` blend.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from batch.artifacts import read_json, write_json
from batch.synthetic.generate import SyntheticData
from batch.train import AlsParams
from lab.datasets import SYNTHETIC_END, Prepared, StepLog, ingest_synthetic, synthetic_split
from lab.replay import evaluate_replay, sample_sessions
from lab.search import (
    ALS_AXES,
    PRECOMPUTED_WEIGHT_POPULARITY,
    WEIGHT_COVISIT,
    WEIGHT_POPULARITY,
    WEIGHT_USER,
    AlsGrid,
    coordinate_search,
    first_argmax,
    n_scores,
)
from lab.serving import ServingModel, serving_model
from lab.train_reranker import collect_queries, train_reranker
from online.blend import BlendParams
from online.reranker import LinearReranker
from shared.config import Settings
from shared.errors import ConfigError
from shared.schemas import BLEND_FIELDS, TuningFile

METRIC = "hybrid_hit_rate_at_10"
BATCH_METRIC = "batch_only_hit_rate_at_10"


@dataclass(frozen=True)
class TuneOptions:
    result_path: Path  # where best.json goes: the data dir whose next batch run should use it
    seed: int = 42
    max_sessions: int | None = 1_000
    users: int = 5_000
    items: int = 2_000
    days: int = 15
    weight_user: Sequence[float] = WEIGHT_USER
    weight_popularity: Sequence[float] = WEIGHT_POPULARITY
    weight_covisit: Sequence[float] = WEIGHT_COVISIT
    precomputed_weight_popularity: Sequence[float] = PRECOMPUTED_WEIGHT_POPULARITY
    als_grid: AlsGrid = field(default_factory=AlsGrid)
    reranker: bool = True  # train the learned re-ranker on validation too


@dataclass(frozen=True)
class AlsChoice:
    """Stage 1's outcome: the chosen params, every scored point, and what stage 2 needs of the winner."""

    params: AlsParams
    rows: list[dict]  # one per scored point, in scoring order: params, scores, seconds
    serving: ServingModel  # the chosen point's validation model, as the API would hold it
    events: pd.DataFrame  # the validation replay sessions (the same for every point)


def grid(base: BlendParams, opts: TuneOptions) -> list[BlendParams]:
    """``base`` with every (weight_user, weight_popularity) pair of ``opts``, weight_user varying slowest."""
    return [
        replace(base, weight_user=float(u), weight_popularity=float(p))
        for u, p in itertools.product(opts.weight_user, opts.weight_popularity)
    ]


def blend_dict(params: BlendParams) -> dict[str, float]:
    """The tunable fields of ``params``: what ``best`` holds and ``batch.tuning_file.read_tuning`` reads back."""
    return {name: float(getattr(params, name)) for name in BLEND_FIELDS}


def als_dict(params: AlsParams) -> dict[str, float]:
    """What ``als`` holds and ``batch.tuning_file.read_tuning`` reads back (factors, iterations stay ints)."""
    return {name: getattr(params, name) for name in ALS_AXES}


def _split(settings: Settings, als: AlsParams, data: SyntheticData, replay_day: dt.date, log: StepLog) -> Prepared:
    """``synthetic_split`` with ``als`` in place of Settings' ALS params; checks the run trained with them."""
    update = {f"als_{name}": value for name, value in als_dict(als).items()}
    split = synthetic_split(settings.model_copy(update=update), data, replay_day, log)
    used = read_json(split.run_dir / "manifest.json")["params"]
    if used.get("als_source") != "settings" or {n: used[n] for n in ALS_AXES} != als_dict(als):
        raise ConfigError(f"the batch run {split.run_dir} did not train with {als}; is a tuning file in the way?")
    return split


def _scores(serving: ServingModel, events: pd.DataFrame, opts: TuneOptions, blend: BlendParams, both: bool) -> dict:
    """Validation or test scores of one (model, blend): hybrid HitRate@10 (+ batch-only when ``both``)."""
    variants = ("batch_only", "hybrid") if both else ("hybrid",)
    replay = evaluate_replay(serving, events, (10,), opts.seed, opts.max_sessions, blend, variants=variants)
    hit = {v: float(replay["variants"][v]["10"]["hit_rate"]) for v in variants}
    return {
        METRIC: hit["hybrid"],
        **({BATCH_METRIC: hit["batch_only"]} if both else {}),
        "n_sessions": replay["data"]["n_sessions"],
        "n_targets": replay["data"]["n_targets"],
    }


def search_als(settings: Settings, data: SyntheticData, opts: TuneOptions, say: Callable[[str], None]) -> AlsChoice:
    """Stage 1 on validation (module docstring), scored with the configured blend."""
    day, start = SYNTHETIC_END - dt.timedelta(days=1), AlsParams.from_settings(settings)
    blend, total = BlendParams.from_settings(settings), n_scores(start, opts.als_grid)
    rows: list[dict] = []
    leader: list[tuple[float, AlsParams, ServingModel, pd.DataFrame]] = []  # the best so far, one entry

    def score(als: AlsParams) -> float:
        t0 = time.perf_counter()
        split = _split(settings, als, data, day, _quiet)
        serving = serving_model(split.run_dir)  # in memory: the next run overwrites the dir
        row = {"params": als_dict(als), **_scores(serving, split.replay_events, opts, blend, both=True)}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if not leader or row[METRIC] > leader[0][0]:  # strict: a tie keeps the earlier point, as the search does
            leader[:] = [(row[METRIC], als, serving, split.replay_events)]
        say(
            f"  [{len(rows):>2}/{total}] factors={als.factors:<4} regularization={als.regularization:<5} "
            f"alpha={als.alpha:<5} iterations={als.iterations:<3} HitRate@10={row[METRIC]:.4f} "
            f"(batch-only {row[BATCH_METRIC]:.4f}) {row['seconds']:5.1f}s"
        )
        return row[METRIC]

    best, _ = coordinate_search(start, opts.als_grid, score)
    _, kept, serving, events = leader[0]
    if kept != best:  # cannot happen while both use the first-best rule; guards the serving model's identity
        raise RuntimeError(f"ALS search chose {best} but kept the model of {kept}")
    return AlsChoice(best, rows, serving, events)


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
        rows.append({"params": blend_dict(params), **_scores(serving, events, opts, params, both=False)})
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
        replay = evaluate_replay(serving, events, (10,), opts.seed, opts.max_sessions, params, variants=("batch_only",))
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
    sessions = sample_sessions(events, opts.max_sessions, opts.seed)
    queries = collect_queries(serving, sessions, blend)
    spec = train_reranker(queries, seed=opts.seed, blend=blend)
    say(
        f"  {queries.counts['n_queries_used']} of {queries.counts['n_queries']} queries had the next item in the "
        f"pool; C={spec['c']}; in-pool HitRate@10 on held-out validation sessions: re-ranker "
        f"{max(spec['c_grid_hit_rate_at_10_in_pool'].values()):.4f} vs blend {spec['blend_hit_rate_at_10_in_pool']:.4f}"
    )
    return spec


TEST_ROWS = {"default": (0, 0), "blend_only": (0, 1), "als_only": (1, 0), "tuned": (1, 1)}  # (ALS, blend) index


def score_test(
    settings: Settings,
    data: SyntheticData,
    opts: TuneOptions,
    als: tuple[AlsParams, AlsParams],
    blends: tuple[BlendParams, BlendParams],
    log: StepLog,
    reranker: LinearReranker | None = None,
) -> dict[str, dict]:
    """The test day for (Settings, tuned) ALS x (configured, tuned) blend: ``TEST_ROWS`` name -> row;
    plus ``reranked`` (tuned ALS, the re-ranker on the tuned blend's pool) when ``reranker`` is given.

    One batch run per distinct ALS point; both write ``runs/date=L-1``, so each is replayed before the next.
    """
    scores: dict[tuple[AlsParams, BlendParams], dict] = {}
    reranked: dict = {}
    for params in dict.fromkeys(als):
        split = _split(settings, params, data, SYNTHETIC_END, log)
        serving = serving_model(split.run_dir)
        for blend in dict.fromkeys(blends):
            scores[params, blend] = _scores(serving, split.replay_events, opts, blend, both=True)
        if reranker is not None and params == als[1]:
            replay = evaluate_replay(
                serving,
                split.replay_events,
                (10,),
                opts.seed,
                opts.max_sessions,
                blends[1],
                variants=("hybrid", "reranked"),
                reranker=reranker,
            )
            reranked = {
                "als": als_dict(params),
                "params": blend_dict(blends[1]),
                "reranker": True,
                METRIC: float(replay["variants"]["reranked"]["10"]["hit_rate"]),
                "blend_" + METRIC: float(replay["variants"]["hybrid"]["10"]["hit_rate"]),
                "paired_difference": replay["paired_hit_rate_at_10"]["reranked_vs_hybrid"],
                "n_sessions": replay["data"]["n_sessions"],
                "n_targets": replay["data"]["n_targets"],
            }
    rows = {
        name: {"als": als_dict(als[a]), "params": blend_dict(blends[b]), **scores[als[a], blends[b]]}
        for name, (a, b) in TEST_ROWS.items()
    }
    return {**rows, **({"reranked": reranked} if reranked else {})}


def _quiet(_name: str, _seconds: float) -> None:
    return None


def run_tuning(settings: Settings, opts: TuneOptions, say: Callable[[str], None], log: StepLog) -> dict:
    """Search ALS then the blend on validation, score test, write ``opts.result_path``; the result dict.

    ``settings.data_dir`` is scratch space for the synthetic data and every batch run; it must not
    hold a tuning file (its ``als`` would replace the params under test in every run).
    """
    if opts.days < 3:
        raise ValueError(f"tuning needs >= 3 days (train, validate, test), got {opts.days}")
    if settings.tuning_path.exists():
        raise ConfigError(f"{settings.tuning_path} would override every searched point; tune into an empty data dir")
    clock = _Clock()
    val_day = SYNTHETIC_END - dt.timedelta(days=1)
    train_day = val_day - dt.timedelta(days=1)
    default_als, default_blend = AlsParams.from_settings(settings), BlendParams.from_settings(settings)
    say(f"1/6 generating {opts.users} users x {opts.items} items x {opts.days} days into {settings.data_dir}")
    data = ingest_synthetic(settings, opts.users, opts.items, opts.days, opts.seed)
    clock.lap("data")

    say(f"2/6 ALS search on validation: batch through {train_day}, replay {val_day}, configured blend")
    als = search_als(settings, data, opts, say)
    als_row = next(r for r in als.rows if r["params"] == als_dict(als.params))
    say(f"  best ALS: {als_dict(als.params)} validation HitRate@10 {als_row[METRIC]:.4f} ({clock.lap('als')}s)")

    n_blend = len(grid(default_blend, opts)) + len(opts.weight_covisit)
    say(f"3/6 blend search on validation with the chosen ALS (up to {n_blend} points)")
    blend, blend_rows = search_blend(als.serving, als.events, opts, default_blend, say)
    blend_row = blend_rows[[r["params"] for r in blend_rows].index(blend_dict(blend))]
    blend, precomputed_rows = search_precomputed(als.serving, als.events, opts, blend, say)
    say(f"  best blend: {blend_dict(blend)} validation HitRate@10 {blend_row[METRIC]:.4f} ({clock.lap('blend')}s)")

    spec = None
    if opts.reranker:
        say("4/6 re-ranker: trained on the validation targets with the chosen ALS and blend")
        spec = fit_reranker(als.serving, als.events, opts, blend, say)
        clock.lap("reranker")
    say(f"5/6 test: batch through {val_day}, replay {SYNTHETIC_END}; Settings and tuned ALS x both blends")
    reranker = LinearReranker.from_dict(spec) if spec is not None else None
    test = score_test(settings, data, opts, (default_als, als.params), (default_blend, blend), log, reranker)
    clock.lap("test")
    result = {
        "als": als_dict(als.params),
        "best": blend_dict(blend),
        "metric": METRIC,
        "best_validation": blend_row[METRIC],
        "validation": {k: blend_row[k] for k in ("n_sessions", "n_targets")},
        "grid": blend_rows,
        "blend_grid": {
            "weight_user": list(opts.weight_user),
            "weight_popularity": list(opts.weight_popularity),
            "weight_covisit": list(opts.weight_covisit),
        },
        "precomputed_grid": precomputed_rows,
        **({"reranker": spec} if spec is not None else {}),
        "als_search": {
            "method": "coordinate search, one pass from the Settings point (lab.search)",
            "start": als_dict(default_als),
            "grid": opts.als_grid.as_dict(),
            "blend": blend_dict(default_blend),
            "points": als.rows,
            "best_validation": als_row[METRIC],
        },
        "split": {
            "validation_train_through": str(train_day),
            "validation_replay_day": str(val_day),
            "test_train_through": str(val_day),
            "test_replay_day": str(SYNTHETIC_END),
        },
        "seed": opts.seed,
        "data": {"name": "synthetic", "users": opts.users, "items": opts.items, "days": opts.days},
        "max_sessions": opts.max_sessions,
        "test": test,
        "timings_s": {**clock.laps, "total": clock.total()},
    }
    say(f"6/6 writing {opts.result_path} (the next batch run in that data dir trains and publishes with it)")
    TuningFile.model_validate(result)  # the file's one format: what the next batch run reads back
    opts.result_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(opts.result_path, result)
    return result


class _Clock:
    """Wall seconds per stage (``laps``) and since construction (``total``), rounded to 0.1 s."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name], self.last = round(now - self.last, 1), now
        return self.laps[name]

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)

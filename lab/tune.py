"""``hybridrec tune``: choose the ALS hyper-parameters, then the online blend, on a validation period.

Data: a data dir as ``hybridrec ingest`` fills it, read through a scratch data dir (``lab.ownlog``);
``--data synthetic`` generates one first. Periods come from the data (``lab.periods``): the last is
the test, the one before it the validation, everything earlier training.

- validation: batch trained through the last training day, replaying the validation period's sessions
  (``lab.ownlog``: known users' events in time order). Every choice is made here;
- test: batch trained through the end of validation, replaying the test period (what ``hybridrec
  evaluate`` reports). It is scored only after every choice is made: Settings ALS and tuned ALS, each
  with the configured and with the tuned blend, and the re-ranker. So the gain, and how much of it each
  stage brings, is measured on sessions no choice saw.

A log without time order (fewer than three days with events) has no sessions to replay; its ALS
params are chosen on a random validation split instead (``lab.tune_static``), and the blend is not tuned.

Metric, both stages: hybrid HitRate@10 of the validation replay (``lab.replay``, through
``online.ranking.rank``, the API's code). It scores the ALS model as well as the blend because the ALS
factors feed every signal the API blends: the user vector and its precomputed candidates, the session
vector (built from item factors), and the item neighbours. Batch-only HitRate@10, or a static NDCG@10
of the validation model, would judge the user half only; the replay's batch-only HitRate@10 is
recorded per ALS point for reference. Replays use a seeded sample of sessions bounded by
``max_sessions`` and ``max_targets`` (``lab.replay.sample_sessions``), the same sample for every point.

Stage 1, ALS: one pass of coordinate search (``lab.search``) from the Settings point over
factors, regularization, alpha, iterations. Each point is one validation batch run with those params
(``Settings.model_copy``), replayed with the configured blend right after its run: every point writes
the same run directory, so each is scored before the next overwrites it, and the best point's
serving model is kept in memory for stage 2. Stage 2, blend (``lab.tune_blend``, with stage 3, the
re-ranker): every (weight_user, weight_popularity) pair on that model. ``weight_session`` stays fixed because only ratios of the weights matter (the
blend is a weighted sum of z-scores ranked per request).

Ties: the first point in scoring (grid) order with the highest validation score wins. The result is
written to ``TuneOptions.result_path`` (format: ``shared.schemas.TuningFile``); the next batch run in that data dir
trains with its ``als`` and publishes its ``best`` blend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batch.artifacts import read_json, write_json
from batch.candidates import CANDIDATE_MODELS
from batch.pipeline import StepLog
from batch.train import AUTO, AlsParams
from batch.tuning_file import CandidateChoice
from lab.ownlog import OwnLog, Stage, StageData, scratch_data_dir
from lab.periods import PeriodSpec
from lab.replay import evaluate_replay
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
from lab.tune_blend import (
    BATCH_METRIC,
    METRIC,
    blend_dict,
    fit_reranker,
    grid,
    replay_scores,
    search_blend,
    search_precomputed,
)
from lab.tune_static import candidate_kinds, tune_random
from online.blend import BlendParams
from online.reranker import LinearReranker
from shared.config import Settings
from shared.errors import ConfigError
from shared.schemas import TuningFile


@dataclass(frozen=True)
class TuneOptions:
    result_path: Path  # where best.json goes: the data dir whose next batch run should use it
    seed: int = 42
    max_sessions: int | None = 1_000
    max_targets: int | None = 2_000  # targets (before skips) per replay: bounds the cost of long sessions
    periods: PeriodSpec = field(default_factory=PeriodSpec)
    weight_user: Sequence[float] = WEIGHT_USER
    weight_popularity: Sequence[float] = WEIGHT_POPULARITY
    weight_covisit: Sequence[float] = WEIGHT_COVISIT
    precomputed_weight_popularity: Sequence[float] = PRECOMPUTED_WEIGHT_POPULARITY
    als_grid: AlsGrid = field(default_factory=AlsGrid)
    reranker: bool = True  # train the learned re-ranker on validation too
    candidate_models: Sequence[str] = ()  # () = by catalogue size (candidate_kinds)
    reranker_gate: bool = True  # publish the re-ranker only if it beats the blend on validation


@dataclass(frozen=True)
class AlsChoice:
    """Stage 1's outcome: the chosen params, every scored point, and what stage 2 needs of the winner."""

    params: AlsParams
    rows: list[dict]  # one per scored point, in scoring order: params, scores, seconds
    serving: ServingModel  # the chosen point's validation model, as the API would hold it
    data: StageData  # the chosen point's validation run and replay sessions (the same for every point)


def als_dict(params: AlsParams) -> dict[str, float]:
    """What ``als`` holds and ``batch.tuning_file.read_tuning`` reads back (factors, iterations stay ints)."""
    return {name: getattr(params, name) for name in ALS_AXES}


def _stage(
    settings: Settings, als: AlsParams, own: OwnLog, stage: Stage, log: StepLog, candidates: str | None = None
) -> StageData:
    """``own.prepare`` with ``als`` in place of Settings' ALS params (and ``candidates`` in place of its
    candidate model, when given); checks the run trained with them."""
    update: dict = {f"als_{name}": value for name, value in als_dict(als).items()}
    if candidates is not None:
        update["candidate_model"] = candidates
    data = own.prepare(settings.model_copy(update=update), stage, log)
    used = read_json(data.run_dir / "manifest.json")["params"]
    want = als_dict(als)
    if want["regularization"] == AUTO:  # the run records the number it resolved "auto" to, and the rule
        want.pop("regularization")
        ok_rule = used.get("regularization_rule") == AUTO
    else:
        ok_rule = True
    if used.get("als_source") != "settings" or not ok_rule or any(used[n] != v for n, v in want.items()):
        raise ConfigError(f"the batch run {data.run_dir} did not train with {als}; is a tuning file in the way?")
    if candidates is not None and used.get("candidate_model") != candidates:
        raise ConfigError(f"the batch run {data.run_dir} did not build {candidates} candidates")
    return data


def search_als(settings: Settings, own: OwnLog, opts: TuneOptions, say: Callable[[str], None]) -> AlsChoice:
    """Stage 1 on validation (module docstring), scored with the configured blend."""
    stage, start = own.stage("validation"), AlsParams.from_settings(settings)
    blend, total = BlendParams.from_settings(settings), n_scores(start, opts.als_grid)
    rows: list[dict] = []
    leader: list[tuple[float, AlsParams, ServingModel, StageData]] = []  # the best so far, one entry

    def score(als: AlsParams) -> float:
        t0 = time.perf_counter()
        data = _stage(settings, als, own, stage, _quiet)
        serving = serving_model(data.run_dir)  # in memory: the next run overwrites the dir
        row = {"params": als_dict(als), **replay_scores(serving, data.events, opts, blend, both=True)}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        if not leader or row[METRIC] > leader[0][0]:  # strict: a tie keeps the earlier point, as the search does
            leader[:] = [(row[METRIC], als, serving, data)]
        say(
            f"  [{len(rows):>2}/{total}] factors={als.factors:<4} regularization={als.regularization:<5} "
            f"alpha={als.alpha:<5} iterations={als.iterations:<3} HitRate@10={row[METRIC]:.4f} "
            f"(batch-only {row[BATCH_METRIC]:.4f}) {row['seconds']:5.1f}s"
        )
        return row[METRIC]

    best, _ = coordinate_search(start, opts.als_grid, score)
    _, kept, serving, data = leader[0]
    if kept != best:  # cannot happen while both use the first-best rule; guards the serving model's identity
        raise RuntimeError(f"ALS search chose {best} but kept the model of {kept}")
    return AlsChoice(best, rows, serving, data)


def search_candidates(
    settings: Settings, own: OwnLog, opts: TuneOptions, als: AlsChoice, say: Callable[[str], None]
) -> tuple[CandidateChoice, list[dict]]:
    """Stage 1b on validation: the candidate model (``Settings.candidate_model``'s values) with the chosen
    ALS params, by batch-only HitRate@10 (the precomputed tier serves the lists; its order is theirs for
    EASE and the fusion), ties to the earlier of als, ease, als+ease. The ALS search's best run is the
    row of the configured model. EASE is tried where the catalogue allows (``candidate_kinds``)."""
    kinds, note = candidate_kinds(settings, opts, als.serving.model.bundle.meta["n_items"])
    say(f"2b/6 candidate model on validation: {', '.join(kinds)} ({note})")
    best_row = next(r for r in als.rows if r["params"] == als_dict(als.params))
    rows = {settings.candidate_model: {"model": settings.candidate_model, **_scores_only(best_row)}}
    for kind in kinds:
        if kind in rows:
            continue
        t0 = time.perf_counter()
        data = _stage(settings, als.params, own, own.stage("validation"), _quiet, kind)
        blend = BlendParams.from_settings(settings)
        rows[kind] = {"model": kind, **replay_scores(serving_model(data.run_dir), data.events, opts, blend, both=True)}
        rows[kind]["seconds"] = round(time.perf_counter() - t0, 2)
    ordered = [rows[k] for k in CANDIDATE_MODELS if k in rows]
    for row in ordered:
        say(f"  {row['model']:<9} batch-only HitRate@10={row[BATCH_METRIC]:.4f} (hybrid {row[METRIC]:.4f})")
    chosen = ordered[first_argmax([r[BATCH_METRIC] for r in ordered])]["model"]
    say(f"  chosen candidate model: {chosen}")
    return CandidateChoice(chosen, settings.ease_l2), ordered


def _scores_only(row: dict) -> dict:
    return {k: row[k] for k in (METRIC, BATCH_METRIC, "n_sessions", "n_targets", "seconds") if k in row}


def _with_candidates(settings: Settings, own: OwnLog, als: AlsChoice, kind: str) -> AlsChoice:
    """``als`` with its validation run rebuilt with the candidate model ``kind`` (what the blend is tuned on)."""
    data = _stage(settings, als.params, own, own.stage("validation"), _quiet, kind)
    return AlsChoice(als.params, als.rows, serving_model(data.run_dir), data)


TEST_ROWS = {"default": (0, 0), "blend_only": (0, 1), "als_only": (1, 0), "tuned": (1, 1)}  # (ALS, blend) index


def score_test(
    settings: Settings,
    own: OwnLog,
    opts: TuneOptions,
    als: tuple[tuple[AlsParams, str], tuple[AlsParams, str]],
    blends: tuple[BlendParams, BlendParams],
    log: StepLog,
    reranker: LinearReranker | None = None,
) -> tuple[dict[str, dict], StageData]:
    """The test period for (Settings, tuned) ALS x (configured, tuned) blend: ``TEST_ROWS`` name -> row;
    plus ``reranked`` (tuned ALS, the re-ranker on the tuned blend's pool) when ``reranker`` is given.
    Also returns the tuned point's test stage (its run and sessions).

    One batch run per distinct ALS point; both write the same run dir, so each is replayed before the next.
    """
    scores: dict[tuple[tuple[AlsParams, str], BlendParams], dict] = {}
    reranked: dict = {}
    for point in dict.fromkeys(als):
        params, kind = point
        data = _stage(settings, params, own, own.stage("test"), log, kind)
        serving = serving_model(data.run_dir)
        for blend in dict.fromkeys(blends):
            scores[point, blend] = replay_scores(serving, data.events, opts, blend, both=True)
        if reranker is not None and point == als[1]:
            replay = evaluate_replay(
                serving,
                data.events,
                (10,),
                opts.seed,
                opts.max_sessions,
                blends[1],
                variants=("hybrid", "reranked"),
                reranker=reranker,
                max_targets=opts.max_targets,
            )
            reranked = {
                "als": als_dict(params),
                "candidate_model": kind,
                "params": blend_dict(blends[1]),
                "reranker": True,
                METRIC: float(replay["variants"]["reranked"]["10"]["hit_rate"]),
                "blend_" + METRIC: float(replay["variants"]["hybrid"]["10"]["hit_rate"]),
                "paired_difference": replay["paired_hit_rate_at_10"]["reranked_vs_hybrid"],
                "n_sessions": replay["data"]["n_sessions"],
                "n_targets": replay["data"]["n_targets"],
            }
    rows = {
        name: {
            "als": als_dict(als[a][0]),
            "candidate_model": als[a][1],
            "params": blend_dict(blends[b]),
            **scores[als[a], blends[b]],
        }
        for name, (a, b) in TEST_ROWS.items()
    }
    return {**rows, **({"reranked": reranked} if reranked else {})}, data


def _quiet(_name: str, _seconds: float) -> None:
    return None


def run_tuning(settings: Settings, source: Path, opts: TuneOptions, say: Callable[[str], None], log: StepLog) -> dict:
    """Tune on the log of the data dir ``source``; write ``opts.result_path``; return the result dict.

    ``settings.data_dir`` is scratch space for every batch run: it is emptied and made to read
    ``source``'s interactions and items (``lab.ownlog.scratch_data_dir``), so no tuning file is in the
    way (its ``als`` would replace the params under test in every run) and ``source`` is never written.
    """
    clock = _Clock()
    scratch_data_dir(source, settings.data_dir)
    own = OwnLog.open(settings, opts.periods)
    say(f"1/6 {source}: {own.plan.n_events:,} events on {own.plan.n_days} day(s): {own.plan.protocol} protocol")
    say(f"  {own.plan.reason}")
    if own.plan.protocol == "random":
        result = tune_random(settings, own, opts, say)
    else:
        result = _tune_temporal(settings, own, opts, say, log, clock)
    result["source"] = str(source)
    result["timings_s"] = {**clock.laps, "total": clock.total()}
    say(f"6/6 writing {opts.result_path} (the next batch run in that data dir trains and publishes with it)")
    TuningFile.model_validate(result)  # the file's one format: what the next batch run reads back
    opts.result_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(opts.result_path, result)
    return result


def _tune_temporal(
    settings: Settings, own: OwnLog, opts: TuneOptions, say: Callable[[str], None], log: StepLog, clock: _Clock
) -> dict:
    """Stages 1-5 of the module docstring on ``own``'s periods; the result dict (without timings)."""
    default_als, default_blend = AlsParams.from_settings(settings), BlendParams.from_settings(settings)
    val, test_stage = own.stage("validation"), own.stage("test")
    clock.lap("data")
    say(
        f"2/6 ALS search on validation: batch through {val.run_partition}, replay {val.start}..{val.end}, "
        "configured blend"
    )
    als = search_als(settings, own, opts, say)
    als_row = next(r for r in als.rows if r["params"] == als_dict(als.params))
    say(f"  best ALS: {als_dict(als.params)} validation HitRate@10 {als_row[METRIC]:.4f} ({clock.lap('als')}s)")

    candidates, candidate_rows = search_candidates(settings, own, opts, als, say)
    if candidates.model != settings.candidate_model:
        als = _with_candidates(settings, own, als, candidates.model)
    clock.lap("candidates")

    n_blend = len(grid(default_blend, opts)) + len(opts.weight_covisit)
    say(f"3/6 blend search on validation with the chosen ALS (up to {n_blend} points)")
    events = als.data.events
    blend, blend_rows = search_blend(als.serving, events, opts, default_blend, say)
    blend_row = blend_rows[[r["params"] for r in blend_rows].index(blend_dict(blend))]
    blend, precomputed_rows = search_precomputed(als.serving, events, opts, blend, say)
    say(f"  best blend: {blend_dict(blend)} validation HitRate@10 {blend_row[METRIC]:.4f} ({clock.lap('blend')}s)")

    spec, rejected = None, None
    if opts.reranker:
        say("4/6 re-ranker: trained on the validation targets with the chosen ALS and blend")
        spec = fit_reranker(als.serving, events, opts, blend, say)
        clock.lap("reranker")
        spec, rejected = keep_reranker(spec) if opts.reranker_gate else (spec, None)
        if rejected is not None:
            say(f"  not kept: {rejected['reason']}")
    say(
        f"5/6 test: batch through {test_stage.run_partition}, replay {test_stage.start}..{test_stage.end}; "
        "Settings and tuned ALS x both blends"
    )
    reranker = LinearReranker.from_dict(spec) if spec is not None else None
    points = ((default_als, settings.candidate_model), (als.params, candidates.model))
    test, test_data = score_test(settings, own, opts, points, (default_blend, blend), log, reranker)
    clock.lap("test")
    return {
        "protocol": "temporal",
        "als": als_dict(als.params),
        "candidates": {"model": candidates.model, "ease_l2": settings.ease_l2},
        "candidate_search": candidate_rows,
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
        **({"reranker_rejected": rejected} if rejected is not None else {}),
        "als_search": {
            "method": "coordinate search, one pass from the Settings point (lab.search)",
            "start": als_dict(default_als),
            "grid": opts.als_grid.as_dict(),
            "blend": blend_dict(default_blend),
            "points": als.rows,
            "best_validation": als_row[METRIC],
        },
        "split": _split_record(own, (als.data, test_data)),
        "seed": opts.seed,
        "max_sessions": opts.max_sessions,
        "max_targets": opts.max_targets,
        "test": test,
    }


def keep_reranker(spec: dict) -> tuple[dict | None, dict | None]:
    """(spec, None) when the re-ranker beats the blend on the held-out validation sessions (in-pool
    HitRate@10 at its chosen C), else (None, the spec with the reason): a re-ranker that loses to the
    blend on validation is not published. The choice uses validation only, like every other."""
    ours = spec["c_grid_hit_rate_at_10_in_pool"][str(spec["c"])]
    blend = spec.get("blend_hit_rate_at_10_in_pool")
    if blend is None or ours > blend:
        return spec, None
    reason = f"in-pool HitRate@10 on held-out validation sessions {ours:.4f} <= the blend's {blend:.4f}"
    return None, {"reason": reason, "spec": spec}


def _split_record(own: OwnLog, stages: tuple[StageData, StageData]) -> dict:
    """Where the periods fall and what each stage's run trained on (its manifest window) and replayed."""
    out: dict = {"periods": own.plan.periods.to_dict() if own.plan.periods else None, "reason": own.plan.reason}
    out["sessions"] = own.session_source()
    for data in stages:
        window = read_json(data.run_dir / "manifest.json")["window"]
        out[data.stage.name] = {**data.stage.to_dict(), "run_window": window, "replay_counts": data.counts}
    return out


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

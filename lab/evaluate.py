"""One evaluation run end to end: prepare the data, static protocols, session replay, report folder.

Data: a data dir as ``hybridrec ingest`` fills it (``--data-dir DIR``; ``--data synthetic`` generates
one first), read through a scratch data dir (``lab.ownlog``), or ``--data lastfm`` (plays + tag
sessions, ``lab.datasets.prepare_lastfm``). For a data dir the protocol comes from the data
(``lab.periods``):

- temporal: the test period's sessions are replayed (``lab.replay``, through the API's
  ``online.ranking.rank``) on a batch run trained through the day before the test period, and the static
  protocols (``lab.static``: per-user temporal and random holdouts, full ranking) run on the events
  before the test period;
- random (no time order): the static random holdout only, on the whole log; nothing to replay.

The batch run trains and publishes with a ``hybridrec tune`` result when one is given (``tuning``), as
a data dir holding it would; the static ALS uses the params that run trained with.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from batch.artifacts import read_json
from batch.ease import EaseParams
from batch.train import AlsParams
from batch.tuning_file import read_tuning
from lab.baselines import STATIC_EASE_MAX_ITEMS, default_models
from lab.datasets import StepLog, prepare_lastfm, synthetic_data_dir
from lab.ownlog import OwnLog, history_indices, scratch_data_dir
from lab.periods import PeriodSpec
from lab.replay import VARIANTS, evaluate_replay
from lab.report import write_report
from lab.search import ALS_AXES
from lab.serving import serving_model
from lab.splits import RandomHoldout, SplitProtocol, TemporalHoldout
from lab.static import run_static_protocol
from online.blend import BlendParams
from online.reranker import LinearReranker
from shared.config import Settings

KS = (10, 20, 50)


@dataclass(frozen=True)
class EvalOptions:
    data: Literal["synthetic", "lastfm", "dir"]
    out_dir: Path
    seed: int = 42
    max_sessions: int | None = 3_000
    users: int = 5_000  # synthetic only
    items: int = 2_000
    days: int = 15
    repeats: bool = True  # synthetic: False = the rating-log mode
    lastfm_dir: Path = Path("../shared/datasets/lastfm-hetrec2011-2k")
    tuning: Path | None = None  # a `hybridrec tune` result: the batch run trains and publishes with it
    data_dir: Path | None = None  # data == "dir": the ingested log
    periods: PeriodSpec = field(default_factory=PeriodSpec)


def blend_params(settings: Settings) -> BlendParams:
    """The blend the API builds from the same settings (``BlendParams.from_settings``, as online.service)."""
    return BlendParams.from_settings(settings)


def run_evaluation(
    settings: Settings,
    opts: EvalOptions,
    say: Callable[[str], None],
    log: StepLog,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict, list[str]]:
    """Evaluate ``opts.data`` with batch runs in ``settings.data_dir`` (scratch); write the report.

    ``say`` prints a progress line, ``log`` a batch step timing; ``progress(1)`` is called after each
    replayed session. Returns the report dict and console notes.
    """
    tuning = None
    if opts.tuning is not None:
        read_tuning(opts.tuning)  # fail before any work on a file that is not a tuning result
        tuning = opts.tuning.read_bytes()  # kept: generating the synthetic log may replace the dir it is in
    if opts.data == "lastfm":
        return _evaluate_lastfm(settings, opts, tuning, say, log, progress)
    if opts.data == "synthetic":
        say(f"0/4 generating the synthetic log into {opts.out_dir / 'data'}")
        source, name = synthetic_data_dir(
            settings, opts.out_dir / "data", opts.users, opts.items, opts.days, opts.seed, opts.repeats
        )
        label = "synthetic" if opts.repeats else "synthetic-norepeat"
    elif opts.data_dir is not None:
        source, name, label = opts.data_dir, f"data dir {opts.data_dir}", opts.data_dir.name
    else:
        raise ValueError("data 'dir' needs data_dir")
    return evaluate_data_dir(settings, source, label, name, opts, tuning, say, log, progress)


def _use_tuning(settings: Settings, tuning: bytes | None) -> None:
    """Exactly what a production data dir does with a tuning result (the file's bytes): the next batch
    run trains with its ALS params and publishes its blend and re-ranker with the version."""
    if tuning is not None:
        settings.tuning_path.parent.mkdir(parents=True, exist_ok=True)
        settings.tuning_path.write_bytes(tuning)


def evaluate_data_dir(
    settings: Settings,
    source: Path,
    label: str,
    name: str,
    opts: EvalOptions,
    tuning: bytes | None,
    say: Callable[[str], None],
    log: StepLog,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict, list[str]]:
    """The module docstring's data-dir protocols on ``source``; the report goes to ``opts.out_dir``.
    ``tuning``: the bytes of ``opts.tuning``, if any."""
    scratch_data_dir(source, settings.data_dir)
    _use_tuning(settings, tuning)
    own = OwnLog.open(settings, opts.periods)
    plan = own.plan
    say(f"1/4 {name}: {plan.n_events:,} events on {plan.n_days} day(s): {plan.protocol} protocol")
    say(f"  {plan.reason}")
    catalogue = _catalogue(settings)
    tuning_note = _tuning_note(opts.tuning, tuning, own)
    protocol: dict = {
        "name": plan.protocol,
        "reason": plan.reason,
        "periods": plan.periods.to_dict() if plan.periods else None,
        "tuning": str(opts.tuning) if opts.tuning else None,
    }
    notes = [name, *tuning_note]
    if plan.protocol == "random":
        als = read_tuning(settings.tuning_path).als or AlsParams.from_settings(settings)
        say("2/4 static protocol random: popularity, item-kNN, ALS (+ EASE, ALS+EASE on small catalogues) (whole log)")
        static = [_static(own.frame, RandomHoldout(), als, settings, opts.seed, catalogue)]
        notes.append(
            "no time order: no session replay (and `hybridrec tune` chooses only the ALS params, on a random "
            "validation split; the blend and the re-ranker need sessions)"
        )
        say(f"4/4 writing the report to {opts.out_dir}")
        return write_report(opts.out_dir, label, notes, static, None, protocol)

    stage = own.stage("test")
    say(f"2/4 batch run through {stage.run_partition} (the day before the test period {stage.start}..{stage.end})")
    data = own.prepare(settings, stage, log)
    manifest = read_json(data.run_dir / "manifest.json")
    als = AlsParams(**{n: manifest["params"][n] for n in ALS_AXES})  # what the run trained with
    before = own.before(stage.start)
    static = []
    for i, split in enumerate((TemporalHoldout(), RandomHoldout()), 1):
        say(
            f"2/4 static protocol {split.name} ({i}/2) on the events before {stage.start}: popularity, item-kNN, ALS (+ EASE, ALS+EASE on small catalogues)"
        )
        static.append(_static(before, split, als, settings, opts.seed, catalogue))

    say(f"3/4 session replay of {stage.start}..{stage.end} through online.ranking.rank (<= {opts.max_sessions})")
    serving = serving_model(data.run_dir)
    meta = serving.model.bundle.meta
    params = blend_params(settings).for_version(meta)  # as the API would serve it
    reranker = LinearReranker.for_version(meta)  # a version published with a tuned re-ranker
    variants = (*VARIANTS, "reranked") if reranker is not None else VARIANTS
    history = history_indices(data.history, serving.model.bundle.item_index)
    replay = evaluate_replay(
        serving, data.events, KS, opts.seed, opts.max_sessions, params, progress, variants, reranker, history
    )
    replay["data"].update({f"period_{k}": v for k, v in data.counts.items()})
    sessions = own.session_source()
    protocol.update(
        {
            "sessions": sessions,
            "test_run": {"train_through": str(stage.run_partition), "window": manifest["window"]},
            "replay_period": [str(stage.start), str(stage.end)],
            "als": {n: manifest["params"][n] for n in ALS_AXES},  # as trained: "auto" resolved to its number
            "regularization_rule": manifest["params"].get("regularization_rule", "fixed"),
            "als_source": manifest["params"]["als_source"],
            "candidate_model": manifest["params"].get("candidate_model", "als"),
        }
    )
    notes.append(_sessions_note(sessions))
    say(f"4/4 writing the report to {opts.out_dir}")
    return write_report(opts.out_dir, label, notes, static, replay, protocol)


def _sessions_note(source: str) -> str:
    if source == "session_id":
        return "sessions: the log's session_id; each known user's session events replayed in time order"
    what = "no row has" if source == "user_period" else "some rows lack"
    return (
        f"sessions: {what} a session_id, so each known user's events of the test period without one are replayed "
        "as ONE session in time order (rows with the same timestamp keep their order in the file)"
    )


def _tuning_note(tuning: Path | None, content: bytes | None, own: OwnLog) -> list[str]:
    """A warning when the tuning file was chosen on other periods than this evaluation's."""
    if tuning is None or content is None:
        return []
    split = json.loads(content).get("split", {})
    theirs, ours = split.get("periods"), own.plan.periods.to_dict() if own.plan.periods else None
    if theirs is None or ours is None or theirs["test"] == ours["test"]:
        return [f"tuning: {tuning} (its choices were made on validation data before this test period)"]
    return [
        f"WARNING tuning: {tuning} was chosen with the periods {theirs}, this evaluation tests {ours['test']}: "
        "if its validation period overlaps this test period, these numbers are optimistic"
    ]


def _catalogue(settings: Settings) -> list[str]:
    if not settings.items_path.exists():
        return []
    return pd.read_parquet(settings.items_path, columns=["item_id"])["item_id"].astype(str).tolist()


def _static(
    frame: pd.DataFrame, split: SplitProtocol, als: AlsParams, settings: Settings, seed: int, catalogue: list[str]
) -> dict:
    models = default_models(als, seed, static_ease(settings, frame, catalogue))
    return run_static_protocol(frame, split, models, ks=KS, seed=seed, scheme=settings.confidence, item_ids=catalogue)


def static_ease(settings: Settings, frame: pd.DataFrame, catalogue: list[str]) -> EaseParams | None:
    """EASE's params when the static protocols include EASE and the ALS+EASE fusion: always when the
    configured candidate model uses EASE (up to ``ease_max_items``), otherwise for catalogues of at most
    ``STATIC_EASE_MAX_ITEMS`` items, where a fit takes seconds (Last.fm's 17,632 artists take minutes)."""
    n_items = len(set(catalogue) | set(frame["item_id"].unique()))
    limit = settings.ease_max_items if settings.candidate_model != "als" else STATIC_EASE_MAX_ITEMS
    return EaseParams(settings.ease_l2, settings.ease_max_items) if n_items <= limit else None


def _evaluate_lastfm(
    settings: Settings,
    opts: EvalOptions,
    tuning: bytes | None,
    say: Callable[[str], None],
    log: StepLog,
    progress: Callable[[int], None] | None,
) -> tuple[dict, list[str]]:
    """``--data lastfm``: plays (random static protocol) and the tag sessions replayed on a play model."""
    shutil.rmtree(settings.data_dir, ignore_errors=True)  # start clean: a stale partition would leak in
    _use_tuning(settings, tuning)
    say(f"1/4 preparing lastfm data and the batch run in {settings.data_dir}")
    prepared = prepare_lastfm(settings, opts.lastfm_dir, log)
    als = read_tuning(settings.tuning_path).als or AlsParams.from_settings(settings)
    say("2/4 static protocol random: popularity, item-kNN, ALS")
    static = [_static(prepared.static_interactions, RandomHoldout(), als, settings, opts.seed, prepared.item_ids)]
    say(f"3/4 session replay through online.ranking.rank (at most {opts.max_sessions} sessions)")
    serving = serving_model(prepared.run_dir)
    meta = serving.model.bundle.meta
    params = blend_params(settings).for_version(meta)
    reranker = LinearReranker.for_version(meta)
    variants = (*VARIANTS, "reranked") if reranker is not None else VARIANTS
    replay = evaluate_replay(
        serving, prepared.replay_events, KS, opts.seed, opts.max_sessions, params, progress, variants, reranker
    )
    protocol = {"name": "lastfm", "reason": "plays (no timestamps) train the model; tag sessions are replayed"}
    say(f"4/4 writing the report to {opts.out_dir}")
    return write_report(opts.out_dir, prepared.name, prepared.notes, static, replay, protocol)

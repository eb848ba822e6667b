"""One evaluation run end to end: prepare the data, static protocols, session replay, report folder.

The static protocols (``lab.static``) measure the batch models (popularity, item-kNN, ALS)
by full ranking; the replay (``lab.replay``) measures what the API serves, built from the batch
run by ``lab.serving``. Both use the same ``seed``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from batch.train import AlsParams
from batch.tuning_file import read_tuning
from lab.baselines import default_models
from lab.datasets import Prepared, StepLog, prepare_lastfm, prepare_synthetic
from lab.replay import VARIANTS, evaluate_replay
from lab.report import write_report
from lab.serving import serving_model
from lab.splits import RandomHoldout, SplitProtocol, TemporalHoldout
from lab.static import run_static_protocol
from online.blend import BlendParams
from online.reranker import LinearReranker
from shared.config import Settings

KS = (10, 20, 50)


@dataclass(frozen=True)
class EvalOptions:
    data: Literal["synthetic", "lastfm"]
    out_dir: Path
    seed: int = 42
    max_sessions: int | None = 3_000
    users: int = 5_000  # synthetic only
    items: int = 2_000
    days: int = 15
    lastfm_dir: Path = Path("../shared/datasets/lastfm-hetrec2011-2k")
    tuning: Path | None = None  # a `hybridrec tune` result: the batch run trains and publishes with it


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
    """Run both protocols on ``opts.data`` with batch data under ``settings.data_dir``; write the report.

    ``say`` prints a progress line, ``log`` a batch step timing; ``progress(1)`` is called after each
    replayed session. Returns the report dict and console notes.
    """
    say(f"1/4 preparing {opts.data} data and the batch run in {settings.data_dir}")
    if opts.tuning is not None:
        # exactly what a production data dir does with a tuning result: the next batch run trains with
        # its ALS params and publishes its blend and re-ranker with the version
        read_tuning(opts.tuning)  # fail before any work on a file that is not a tuning result
        settings.tuning_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(opts.tuning, settings.tuning_path)
    if opts.data == "synthetic":
        prepared: Prepared = prepare_synthetic(settings, opts.users, opts.items, opts.days, opts.seed, log)
        protocols: list[SplitProtocol] = [TemporalHoldout(), RandomHoldout()]
    else:
        prepared = prepare_lastfm(settings, opts.lastfm_dir, log)
        protocols = [RandomHoldout()]

    static = []
    for i, protocol in enumerate(protocols, 1):
        say(f"2/4 static protocol {protocol.name} ({i}/{len(protocols)}): popularity, item-kNN, ALS")
        static.append(
            run_static_protocol(
                prepared.static_interactions,
                protocol,
                default_models(AlsParams.from_settings(settings), opts.seed),
                ks=KS,
                seed=opts.seed,
                scheme=settings.confidence,
                item_ids=prepared.item_ids,
            )
        )

    say(f"3/4 session replay through online.ranking.rank (at most {opts.max_sessions} sessions)")
    serving = serving_model(prepared.run_dir)
    meta = serving.model.bundle.meta
    params = blend_params(settings).for_version(meta)  # as the API would serve it
    reranker = LinearReranker.for_version(meta)  # a version published with a tuned re-ranker
    variants = (*VARIANTS, "reranked") if reranker is not None else VARIANTS
    replay = evaluate_replay(
        serving, prepared.replay_events, KS, opts.seed, opts.max_sessions, params, progress, variants, reranker
    )

    say(f"4/4 writing the report to {opts.out_dir}")
    return write_report(opts.out_dir, prepared.name, prepared.notes, static, replay)

"""``hybridrec tune``: choose the online blend weights on a validation replay, never on the test replay.

Split (synthetic data ending on day L, ``evaluation.datasets``):

- validation: batch trained through L-2, replaying the sessions that start on L-1; every grid point is
  scored here by hybrid HitRate@10 (``evaluation.replay``, through ``online.ranking.rank``);
- test: batch trained through L-1, replaying the sessions of day L (what ``hybridrec evaluate``
  reports); scored once with the configured blend and once with the chosen one, after the choice.

Only ratios of the weights matter (the blend is a weighted sum of z-scores ranked per request), so
``weight_session`` stays fixed and ``weight_user`` / ``weight_popularity`` vary. The chosen point is
the first grid point (in grid order) with the highest validation HitRate@10. The result is written to
``Settings.tuning_path`` (format in ``batch.tuned``), which the next batch run publishes with its model.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from batch.artifacts import write_json
from batch.tuned import BLEND_FIELDS
from evaluation.datasets import SYNTHETIC_END, StepLog, ingest_synthetic, synthetic_split
from evaluation.replay import evaluate_replay
from evaluation.serving import serving_model
from online.ranking import BlendParams
from shared.config import Settings

METRIC = "hybrid_hit_rate_at_10"


@dataclass(frozen=True)
class TuneOptions:
    result_path: Path  # where best.json goes: the data dir whose next batch run should use it
    seed: int = 42
    max_sessions: int | None = 1_000
    users: int = 5_000
    items: int = 2_000
    days: int = 15
    weight_user: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0)
    weight_popularity: Sequence[float] = (0.0, 0.1, 0.2)


def grid(base: BlendParams, opts: TuneOptions) -> list[BlendParams]:
    """``base`` with every (weight_user, weight_popularity) pair of ``opts``, weight_user varying slowest."""
    return [
        replace(base, weight_user=float(u), weight_popularity=float(p))
        for u, p in itertools.product(opts.weight_user, opts.weight_popularity)
    ]


def blend_dict(params: BlendParams) -> dict[str, float]:
    """The tunable fields of ``params``: what ``best`` holds and ``batch.tuned`` reads back."""
    return {name: float(getattr(params, name)) for name in BLEND_FIELDS}


def _hit_rate(replay: dict, variant: str) -> float:
    return float(replay["variants"][variant]["10"]["hit_rate"])


def run_tuning(settings: Settings, opts: TuneOptions, say: Callable[[str], None], log: StepLog) -> dict:
    """Grid-search the blend on the validation replay, write ``opts.result_path``, score test; the result dict.

    ``settings.data_dir`` is scratch space for the synthetic data and the two batch runs.
    """
    if opts.days < 3:
        raise ValueError(f"tuning needs >= 3 days (train, validate, test), got {opts.days}")
    validation_day = SYNTHETIC_END - dt.timedelta(days=1)
    say(f"1/4 generating {opts.users} users x {opts.items} items x {opts.days} days into {settings.data_dir}")
    data = ingest_synthetic(settings, opts.users, opts.items, opts.days, opts.seed)

    say(f"2/4 validation: batch through {validation_day - dt.timedelta(days=1)}, replay {validation_day}")
    val = synthetic_split(settings, data, validation_day, log)
    val_serving = serving_model(val.run_dir, settings.popular_n)
    default = BlendParams.from_settings(settings)
    points = grid(default, opts)
    results = []
    for i, params in enumerate(points, 1):
        replay = evaluate_replay(
            val_serving, val.replay_events, (10,), opts.seed, opts.max_sessions, params, variants=("hybrid",)
        )
        results.append({"params": blend_dict(params), METRIC: _hit_rate(replay, "hybrid")})
        say(
            f"  [{i:>2}/{len(points)}] weight_user={params.weight_user:<5} "
            f"weight_popularity={params.weight_popularity:<5} HitRate@10={results[-1][METRIC]:.4f}"
        )
    val_data = replay["data"]
    best_i = max(range(len(results)), key=lambda i: (results[i][METRIC], -i))  # first of the best
    best = points[best_i]
    say(f"  best: {blend_dict(best)} validation HitRate@10 {results[best_i][METRIC]:.4f}")

    say(f"3/4 test: batch through {validation_day}, replay {SYNTHETIC_END} with the default and the tuned blend")
    test = synthetic_split(settings, data, SYNTHETIC_END, log)
    test_serving = serving_model(test.run_dir, settings.popular_n)
    test_scores = {}
    for name, params in (("default", default), ("tuned", best)):
        replay = evaluate_replay(
            test_serving,
            test.replay_events,
            (10,),
            opts.seed,
            opts.max_sessions,
            params,
            variants=("batch_only", "hybrid"),
        )
        test_scores[name] = {
            "params": blend_dict(params),
            METRIC: _hit_rate(replay, "hybrid"),
            "batch_only_hit_rate_at_10": _hit_rate(replay, "batch_only"),
            "n_sessions": replay["data"]["n_sessions"],
            "n_targets": replay["data"]["n_targets"],
        }

    result = {
        "best": blend_dict(best),
        "metric": METRIC,
        "best_validation": results[best_i][METRIC],
        "validation": {"n_sessions": val_data["n_sessions"], "n_targets": val_data["n_targets"]},
        "grid": results,
        "split": {
            "validation_train_through": str(validation_day - dt.timedelta(days=1)),
            "validation_replay_day": str(validation_day),
            "test_train_through": str(validation_day),
            "test_replay_day": str(SYNTHETIC_END),
        },
        "seed": opts.seed,
        "data": {"name": "synthetic", "users": opts.users, "items": opts.items, "days": opts.days},
        "max_sessions": opts.max_sessions,
        "test": test_scores,
    }
    say(f"4/4 writing {opts.result_path} (the next batch run in that data dir publishes the blend)")
    opts.result_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(opts.result_path, result)
    return result

"""``hybridrec tune`` on a log without time order (Last.fm plays): the ALS choice on a random split.

Such a log has no later sessions to replay, so the blend and the re-ranker cannot be tuned; ``best``
keeps the configured blend and the result says so. The ALS params are chosen by the static protocol
(``lab.static``: full ranking, each user's train items excluded), with the same split seeds as
``hybridrec evaluate`` on that log:

- test: ``lab.splits.random_split(log, 0.2, seed)``, the split ``evaluate`` reports;
- validation: the rest of the log split again, ``random_split(rest, 0.2, seed + 1)``. Every point is
  fitted on its train part and scored by NDCG@10 on its held-out part, so no choice sees a test pair.

One pass of coordinate search (``lab.search``) from the Settings point, as the temporal protocol does;
then the test split scores popularity, the Settings ALS and the chosen ALS, each fitted on everything
but the test pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from batch.candidates import CANDIDATE_MODELS
from batch.ease import EaseParams
from batch.train import AlsParams
from lab.baselines import ALS, EASE, STATIC_EASE_MAX_ITEMS, Baseline, Fused, Popularity
from lab.ownlog import OwnLog
from lab.search import ALS_AXES, coordinate_search, first_argmax, n_scores
from lab.splits import RandomHoldout, random_split
from lab.static import run_static_protocol
from online.blend import BlendParams
from shared.config import Settings
from shared.schemas import BLEND_FIELDS

if TYPE_CHECKING:
    from lab.tune import TuneOptions

STATIC_METRIC = "ndcg_at_10"
TEST_FRACTION = 0.2
KS = (10, 20)


def tune_random(settings: Settings, own: OwnLog, opts: TuneOptions, say: Callable[[str], None]) -> dict:
    """The random-protocol result dict, without timings."""
    frame, seed = own.frame, opts.seed
    rest, _ = random_split(frame, TEST_FRACTION, seed)
    start = AlsParams.from_settings(settings)
    rows: list[dict] = []

    def static(data: pd.DataFrame, models: dict, split_seed: int) -> dict:
        return run_static_protocol(
            data,
            RandomHoldout(TEST_FRACTION),
            models,
            ks=KS,
            seed=split_seed,
            scheme=settings.confidence,
            max_users=settings.eval_max_users,
        )

    def score(als: AlsParams) -> float:
        t0 = time.perf_counter()
        result = static(rest, {"als": ALS(als, seed)}, seed + 1)
        row = {
            "params": {n: getattr(als, n) for n in ALS_AXES},
            STATIC_METRIC: result["models"]["als"]["10"]["ndcg"],
            "recall_at_20": result["models"]["als"]["20"]["recall"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        rows.append(row)
        say(
            f"  [{len(rows):>2}/{total}] factors={als.factors:<4} regularization={als.regularization:<5} "
            f"alpha={als.alpha:<5} iterations={als.iterations:<3} NDCG@10={row[STATIC_METRIC]:.4f} "
            f"(Recall@20 {row['recall_at_20']:.4f}) {row['seconds']:5.1f}s"
        )
        return row[STATIC_METRIC]

    total = n_scores(start, opts.als_grid)
    say("2/6 ALS search on a random validation split (20% of each user's items left after the test's 20%)")
    best, _ = coordinate_search(start, opts.als_grid, score)
    best_row = next(r for r in rows if r["params"] == {n: getattr(best, n) for n in ALS_AXES})
    say(f"  best ALS: {best_row['params']} validation NDCG@10 {best_row[STATIC_METRIC]:.4f}")
    ease = EaseParams(settings.ease_l2, settings.ease_max_items)
    kinds, note = candidate_kinds(settings, opts, int(frame["item_id"].nunique()))
    candidate_rows: list[dict] = []
    chosen = settings.candidate_model
    if len(kinds) > 1:
        say(f"2b/6 candidate model on the same validation split: {', '.join(kinds)} ({note})")
        als_model = ALS(best, seed)
        pool: dict[str, Baseline] = {"als": als_model, "ease": EASE(ease)}
        pool["als+ease"] = Fused(als_model, pool["ease"], settings.ease_fusion_weight)
        result = static(rest, {k: pool[k] for k in kinds}, seed + 1)
        for kind in kinds:
            by_k = result["models"][kind]
            candidate_rows.append(
                {"model": kind, STATIC_METRIC: by_k["10"]["ndcg"], "recall_at_20": by_k["20"]["recall"]}
            )
            say(f"  {kind:<9} NDCG@10={by_k['10']['ndcg']:.4f} (Recall@20 {by_k['20']['recall']:.4f})")
        chosen = candidate_rows[first_argmax([r[STATIC_METRIC] for r in candidate_rows])]["model"]
        say(f"  chosen candidate model: {chosen}")
    say("3/6 no blend search and 4/6 no re-ranker: the log has no time order, so no session to replay")
    say("5/6 test: the random 80/20 split that `hybridrec evaluate` reports; Settings and tuned ALS")
    models: dict[str, Baseline] = {
        "popularity": Popularity(),
        "als_settings": ALS(start, seed),
        "als_tuned": ALS(best, seed),
    }
    if chosen != "als":
        tuned_ease = EASE(ease)
        models[f"{chosen}_tuned"] = tuned_ease if chosen == "ease" else Fused(models["als_tuned"], tuned_ease)
    test = static(frame, models, seed)
    blend = BlendParams.from_settings(settings)
    return {
        "protocol": "random",
        "reason": own.plan.reason,
        "als": best_row["params"],
        "candidates": {"model": chosen, "ease_l2": settings.ease_l2},
        "candidate_search": candidate_rows,
        "best": {name: float(getattr(blend, name)) for name in BLEND_FIELDS},
        "blend_tuned": False,
        "note": (
            "no time order: ALS chosen on a random validation split by NDCG@10; 'best' is the configured "
            "blend (the next batch run publishes it as is; no session exists to tune it on); no re-ranker"
        ),
        "metric": STATIC_METRIC,
        "als_search": {
            "method": "coordinate search, one pass from the Settings point (lab.search), static random split",
            "start": {n: getattr(start, n) for n in ALS_AXES},
            "grid": opts.als_grid.as_dict(),
            "points": rows,
            "best_validation": best_row[STATIC_METRIC],
        },
        "split": {"test": f"random_split(log, {TEST_FRACTION}, seed)", "validation": "random_split(rest, 0.2, seed+1)"},
        "seed": seed,
        "test": {
            name: {f"ndcg_at_{k}": by_k[str(k)]["ndcg"] for k in KS}
            | {f"recall_at_{k}": by_k[str(k)]["recall"] for k in KS}
            for name, by_k in test["models"].items()
        },
        "test_data": test["data"],
    }


def candidate_kinds(settings: Settings, opts: TuneOptions, n_items: int) -> tuple[list[str], str]:
    """The candidate models the search tries, and why: ``opts.candidate_models`` when given; otherwise
    all three on catalogues of at most ``STATIC_EASE_MAX_ITEMS`` items (an EASE fit takes seconds there)
    and ALS alone above (minutes per fit; ask for EASE explicitly)."""
    if opts.candidate_models:
        return list(opts.candidate_models), "as asked"
    if n_items <= STATIC_EASE_MAX_ITEMS:
        return list(CANDIDATE_MODELS), f"{n_items:,} items"
    return [settings.candidate_model], (
        f"{n_items:,} items > {STATIC_EASE_MAX_ITEMS:,}: EASE not tried by default; "
        "--candidate-models als,ease,als+ease tries it"
    )

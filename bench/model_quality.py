"""Candidate-model quality on logs of different shapes: ALS regularization (fixed values vs "auto") and
EASE vs ALS vs their fusion, on the static protocol of ``hybridrec evaluate`` (lab.static).

Data sets, each read or generated in place (nothing is copied into the repository):

* ``synthetic``: the project's generator, 5,000 users x 2,000 items x 15 days (event log with repeats),
  per-user temporal holdout (each user's last item);
* ``synthetic-norepeat``: the same with ``repeats=False`` (a rating-log shape: nobody meets an item
  twice), temporal holdout;
* ``lastfm-plays``: HetRec 2011 ``user_artists.dat`` play counts (no timestamps), seeded random 80/20
  holdout, read from ``--lastfm-dir``.

Models: ALS (64 factors, alpha 4, 15 iterations, the Settings defaults) at regularization 0.05 (the old
default), 1, 10, 30, 100 and ``auto`` (batch.train: 4 x the median observed confidence); with ``--ease``
also EASE (``--ease-l2``, binary) and the ALS(auto)+EASE reciprocal-rank fusion of the production
candidate model ``als+ease``, plus on Last.fm the ALS point ``hybridrec tune`` chose there
(``--lastfm-tuned``, default 256 factors, regularization 100, alpha 4).

    .venv/bin/python bench/model_quality.py                 # ALS regularization only (about 1 minute)
    .venv/bin/python bench/model_quality.py --ease          # + EASE and the fusion (Last.fm EASE: minutes)

Prints a table and writes ``bench/results/model_quality.json``. Seeded: the same arguments give the
same numbers on the same machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd

from batch.ease import EaseParams
from batch.matrix import build_id_maps, confidence_matrix
from batch.synthetic.generate import generate
from batch.train import AUTO, AlsParams, auto_regularization
from lab.baselines import ALS, EASE, Baseline, Fused
from lab.lastfm import load_user_artists
from lab.splits import RandomHoldout, SplitProtocol, TemporalHoldout
from lab.static import run_static_protocol

from common import REPO_DIR, RESULTS_DIR, console, git_state, machine_info, write_json

FIXED_REGULARIZATION = (0.05, 1.0, 10.0, 30.0, 100.0)
SEED = 42


def datasets(lastfm_dir: Path) -> dict[str, tuple[pd.DataFrame, SplitProtocol]]:
    out: dict[str, tuple[pd.DataFrame, SplitProtocol]] = {}
    for name, repeats in (("synthetic", True), ("synthetic-norepeat", False)):
        data = generate(5_000, 2_000, 15, SEED, dt.date(2026, 1, 31), repeats=repeats)
        out[name] = (data.interactions[["user_id", "item_id", "event_type", "ts", "weight"]], TemporalHoldout())
    if (lastfm_dir / "user_artists.dat").exists():
        out["lastfm-plays"] = (load_user_artists(lastfm_dir), RandomHoldout())
    else:
        console.print(f"[yellow]skipping Last.fm: {lastfm_dir / 'user_artists.dat'} not found[/]")
    return out


def median_confidence(frame: pd.DataFrame, alpha: float) -> tuple[float, float]:
    """(median observed confidence, the "auto" regularization) of the whole log's matrix."""
    matrix = confidence_matrix(frame, build_id_maps(frame), scheme="log")
    median = float(np.median(1.0 + alpha * matrix.data[matrix.data > 0]))
    return median, auto_regularization(matrix, alpha)


def models_for(name: str, args: argparse.Namespace) -> dict[str, Baseline]:
    base = AlsParams(factors=64, regularization=AUTO, alpha=4.0, iterations=15)
    models: dict[str, Baseline] = {f"als reg={r:g}": ALS(AlsParams(64, r, 4.0, 15), SEED) for r in FIXED_REGULARIZATION}
    models["als reg=auto"] = ALS(base, SEED)
    if name == "lastfm-plays" and args.lastfm_tuned:
        f, reg, alpha = args.lastfm_tuned
        models["als tuned"] = ALS(AlsParams(int(f), reg, alpha, 15), SEED)
    if args.ease:
        ease = EASE(EaseParams(args.ease_l2, max_items=25_000))
        models["ease"] = ease
        models["als(auto)+ease"] = Fused(models["als reg=auto"], ease)
        if "als tuned" in models:
            models["als tuned+ease"] = Fused(models["als tuned"], ease)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lastfm-dir", type=Path, default=REPO_DIR.parent / "shared/datasets/lastfm-hetrec2011-2k")
    parser.add_argument("--ease", action="store_true", help="also EASE and the ALS+EASE fusion")
    parser.add_argument("--ease-l2", type=float, default=200.0)
    parser.add_argument("--lastfm-tuned", type=float, nargs=3, default=(256, 100.0, 4.0), metavar=("F", "REG", "A"))
    parser.add_argument("--only", nargs="*", help="data set names to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "model_quality.json")
    args = parser.parse_args()

    results: dict = {}
    for name, (frame, protocol) in datasets(args.lastfm_dir).items():
        if args.only and name not in args.only:
            continue
        median, auto = median_confidence(frame, 4.0)
        t0 = time.perf_counter()
        res = run_static_protocol(frame, protocol, models_for(name, args), ks=(10, 20), seed=SEED)
        results[name] = {
            "protocol": res["protocol"],
            "data": res["data"],
            "median_confidence": round(median, 3),
            "auto_regularization": auto,
            "models": {
                m: {"ndcg_at_10": r["10"]["ndcg"], "recall_at_20": r["20"]["recall"]} for m, r in res["models"].items()
            },
            "timings_s": res["timings_s"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        console.print(
            f"\n[bold]{name}[/] ({res['protocol']['name']} holdout; {res['data']['n_users']:,} users, "
            f"{res['data']['n_items']:,} items; median confidence {median:.2f} -> auto regularization {auto:g}; "
            f"{results[name]['seconds']:.0f} s)"
        )
        best = max(r["ndcg_at_10"] for r in results[name]["models"].values())
        console.print(f"  {'model':<20} {'NDCG@10':>8} {'Recall@20':>10} {'vs best NDCG':>13}")
        for model, row in results[name]["models"].items():
            console.print(
                f"  {model:<20} {row['ndcg_at_10']:>8.4f} {row['recall_at_20']:>10.4f} {row['ndcg_at_10'] / best:>12.1%}"
            )
    write_json(args.out, {"results": results, "args": vars(args), "git": git_state(), "machine": machine_info()})
    console.print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

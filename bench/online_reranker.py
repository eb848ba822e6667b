"""A learned re-ranker for the bench's batch run, so the API serves the ``reranked`` tier under load.

The bench measures what the re-ranker COSTS per request, not what it gains: ``hybridrec tune`` measures
the gain, on validation sessions a model trained before them. Here the training sessions are the last
day of the bench data, which the run itself trained on, so the weights are in-sample and say nothing
about quality. They are real weights of the real trainer over the real features, though, which is all
the latency needs: the API computes every feature the spec names, whatever the weights.

How: ``lab.serving.serving_model`` (the run as the API would hold it), a seeded sample of the
last day's sessions (``lab.replay.sample_sessions``), ``lab.train_reranker.collect_queries`` +
``train_reranker``; then ``<data_dir>/tuning/best.json`` = {"best": the configured blend, "reranker":
spec} (no ``als``: ALS still trains with Settings), and the next ``run_batch`` publishes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from common import console

if TYPE_CHECKING:
    import pandas as pd

LAST_DAYS = 1  # the last day holds ~8,700 sessions at the default size: plenty for 1,000


def replay_frame(data_dir: Path, end: str, days: int = LAST_DAYS) -> pd.DataFrame:
    """Events of the last ``days`` days with ``position`` = order within the session by ``ts``."""
    import numpy as np

    from batch.dataset import load_interactions
    from shared.ids import parse_date

    df = load_interactions(data_dir / "interactions", parse_date(end), days)
    df = df[df["session_id"].notna()].sort_values(["session_id", "ts"], kind="stable")
    df = df.assign(position=df.groupby("session_id").cumcount().astype(np.int32))
    return df[["session_id", "user_id", "item_id", "event_type", "position", "ts"]].reset_index(drop=True)


def train_bench_reranker(run_dir: Path, data_dir: Path, end: str, sessions: int, seed: int) -> dict:
    """Train on the run as served; write the tuning file the next ``run_batch`` of ``data_dir`` reads.

    Returns the spec (what the manifest's ``params.reranker`` will hold).
    """
    from batch.artifacts import write_json
    from lab.replay import sample_sessions
    from lab.serving import serving_model
    from lab.train_reranker import collect_queries, train_reranker
    from lab.tune import blend_dict
    from online.blend import BlendParams
    from shared.config import get_settings

    settings = get_settings(data_dir=data_dir)
    blend = BlendParams.from_settings(settings)
    serving = serving_model(run_dir)
    sample = sample_sessions(replay_frame(data_dir, end), sessions, seed)
    # The last day is in every user's training history (in-sample), so with history exclusion on each
    # target would be skipped as already seen and no query would remain: collect with it off.
    queries = collect_queries(serving, sample, replace(blend, exclude_seen=False))
    spec = train_reranker(queries, seed=seed, blend=blend)
    spec["bench_note"] = (
        f"bench/online_reranker.py: trained on {queries.counts['n_sessions']} sessions of the last "
        f"{LAST_DAYS} day(s) up to {end}, which the run also trained on; for measuring cost, not quality"
    )
    settings.tuning_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(settings.tuning_path, {"best": blend_dict(blend), "reranker": spec})
    return spec


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(spec: dict) -> dict:
    """What the bench JSON records of the re-ranker (the weights stay in the run's manifest)."""
    keep = ("features", "weights", "c", "seed", "data", "bench_note")
    out = {k: spec[k] for k in keep if k in spec}
    # In-pool HitRate@10 of its own held-out 20% of the training sessions: in-sample for the ALS run,
    # so kept as provenance only; the README does not quote it as a gain.
    out["in_sample_hit_rate_at_10_in_pool"] = {
        "reranker": spec.get("c_grid_hit_rate_at_10_in_pool", {}).get(str(spec.get("c"))),
        "blend": spec.get("blend_hit_rate_at_10_in_pool"),
    }
    return out


def describe(spec: dict) -> None:
    data = spec.get("data", {})
    console.print(
        f"  re-ranker: {len(spec['features'])} features, C={spec.get('c')}, "
        f"{data.get('n_queries_used', '?'):,} queries of {data.get('n_sessions', '?'):,} sessions "
        "(in-sample: measures cost, not quality)"
    )


def manifest_reranker(run_dir: Path) -> dict | None:
    path = run_dir / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("params", {}).get("reranker")

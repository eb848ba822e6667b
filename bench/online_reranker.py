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
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

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
    queries = collect_queries(serving, sample, blend)
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


def rank_cost(run_dir: Path, data_dir: Path, events: list[dict], k: int, repeats: int = 3) -> dict:
    """In process, no HTTP: ``rank()`` of every seeded live session with the blend and with the re-ranker.

    The same sessions, user records, version and blend the API serves, the two scorers back to back per
    request (which goes first alternates by repeat). The HTTP mixes add the store read, the web stack and
    the machine's scheduling on top; this is the ranking work alone, the only part the re-ranker changes.
    Returns {"known"|"unknown": {"blend"|"reranked": {p50, p99, max}, "added_ms_p50_of_pairs", ...}}.
    """
    import time

    import numpy as np

    from feature_store.base import RequestFeatures, SessionEvent
    from lab.serving import serving_model
    from online.blend import BlendParams
    from online.ranking import rank
    from online.reranker import LinearReranker
    from shared.config import get_settings

    settings = get_settings(data_dir=data_dir)
    serving = serving_model(run_dir)
    meta = serving.model.bundle.meta
    reranker, params = LinearReranker.for_version(meta), BlendParams.from_settings(settings).for_version(meta)
    if reranker is None:
        raise RuntimeError(f"{run_dir} has no re-ranker to time")
    sessions: dict[str, tuple[str, list[SessionEvent]]] = {}
    for e in events:  # oldest first, as the store returns a session
        ev = SessionEvent(e["item_id"], e["event_type"], 0.0, "", e["user_id"], e["session_id"])
        sessions.setdefault(e["session_id"], (e["user_id"], []))[1].append(ev)
    ms: dict[tuple[str, str], list[float]] = {}
    strategies: dict[str, dict[str, int]] = {}
    for rep in range(repeats):
        for user, evs in sessions.values():
            features = RequestFeatures(serving.users.get(user), evs)
            who = "known" if features.user is not None else "unknown"
            order = (("blend", None), ("reranked", reranker))
            for kind, scorer in order if rep % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                got = rank(serving.model, features, k, None, params, scorer)
                ms.setdefault((who, kind), []).append((time.perf_counter() - t) * 1000)
                counts = strategies.setdefault(f"{who}/{kind}", {})
                counts[got.strategy] = counts.get(got.strategy, 0) + 1
    out: dict = {"repeats": repeats, "sessions": len(sessions), "k": k, "strategies": strategies}
    for who in ("known", "unknown"):
        blend, rr = np.array(ms.get((who, "blend"), [])), np.array(ms.get((who, "reranked"), []))
        if blend.size == 0:
            continue
        pct = {"p50": 50, "p99": 99, "max": 100}
        out[who] = {
            "requests": int(blend.size),
            **{
                kind: {n: round(float(np.percentile(a, q)), 3) for n, q in pct.items()}
                for kind, a in (("blend", blend), ("reranked", rr))
            },
            "added_ms_p50_of_pairs": round(float(np.median(rr - blend)), 3),
            "added_ms_p99_of_pairs": round(float(np.percentile(rr - blend, 99)), 3),
        }
    return out


def print_rank_cost(rc: dict) -> None:
    """The in-process ``rank()`` timing (bench/online_reranker.py ``rank_cost``)."""
    t = Table(
        title=f"rank() in process, no HTTP: the {rc['sessions']:,} seeded sessions x {rc['repeats']}, blend and "
        "re-ranker back to back per request (ms)"
    )
    for col in (
        "user",
        "requests",
        "blend p50",
        "blend p99",
        "re-ranker p50",
        "re-ranker p99",
        "added p50",
        "added p99",
    ):
        t.add_column(col, justify="left" if col == "user" else "right")
    for who in ("known", "unknown"):
        if who in rc:
            r = rc[who]
            t.add_row(
                who,
                f"{r['requests']:,}",
                f"{r['blend']['p50']:.2f}",
                f"{r['blend']['p99']:.2f}",
                f"{r['reranked']['p50']:.2f}",
                f"{r['reranked']['p99']:.2f}",
                f"{r['added_ms_p50_of_pairs']:+.2f}",
                f"{r['added_ms_p99_of_pairs']:+.2f}",
            )
    console.print(t)
    console.print("  strategies: " + "; ".join(f"{k}: {v}" for k, v in sorted(rc["strategies"].items())))

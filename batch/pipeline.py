"""The batch pipeline for one partition date: the same steps Airflow runs, as one call.

``run_batch(settings, date)`` reads interactions in the window ending at ``date`` (inclusive), holds
out each user's latest items, trains ALS on the rest, evaluates ALS and popularity on the holdout,
continues that model on all data (so every item has a vector, and the newest events count), refreshes
user vectors, and precomputes candidates, item neighbours, co-visitation neighbours, seen sets,
popularity and the popular lists into
``runs/date=YYYY-MM-DD/`` (see batch.artifacts). Idempotent: a rerun replaces the run atomically and,
with the same input and settings, produces the same bytes. A tuning result in
``<data_dir>/tuning/best.json`` (``hybridrec tune``, see batch.tuning_file) supplies the ALS params (manifest
``params.als_source`` says "tuning" or "settings"), the blend recorded as ``params.blend`` and the
learned re-ranker recorded as ``params.reranker`` (the API serves session requests with it).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from batch import artifacts as art
from batch.candidates import (
    candidate_lists,
    decayed_popularity,
    item_neighbours,
    popular_lists,
    popularity_from_codes,
    utc_times,
)
from batch.covisit import covisit_neighbours
from batch.dataset import load_items, read_window, training_window
from batch.ease import EaseParams, train_ease
from batch.holdout import temporal_holdout
from batch.holdout_metrics import holdout_metrics
from batch.matrix import build_id_maps, confidence_from_codes
from batch.memory import release_freed, use_system_allocator
from batch.quality import GateInputs
from batch.seen import last_touches, seen_items
from batch.textfile import run_families, write_families
from batch.train import AUTO, AlsParams, continue_als, refresh_users, train_als
from batch.tuning_file import CandidateChoice, Tuning, read_tuning
from shared.config import Settings
from shared.schemas import DATE_FORMAT, ITEM_COLUMNS

StepLog = Callable[[str, float], None]
# What a sharded run's staging directory holds besides the run's files (batch.shards reads them).
SHARD_HISTORY = "history.npz"  # the users' rows of the full matrix (CSR: indptr, indices, data)
SHARD_TOUCHES = "touches.npz"  # batch.seen.last_touches
SHARD_EASE = "ease.npz"  # the fitted EASE weights, when the candidate model uses EASE
# The event columns the steps read (event_type is not among them: weights carry it).
PIPELINE_COLUMNS = ("user_id", "item_id", "ts", "weight", "session_id")
# ALS sweeps that carry the holdout-blind model over to the full data (batch.train.continue_als).
FULL_DATA_SWEEPS = 5
logger = logging.getLogger("hybridrec.batch")


def _noop(_: str, __: float) -> None:
    return None


@contextmanager
def _step(name: str, timings: dict[str, float], log: StepLog, partition: dt.date) -> Iterator[None]:
    start = time.perf_counter()
    yield
    release_freed()  # a step's temporaries would otherwise stay resident under the next step's peak
    timings[name] = round(time.perf_counter() - start, 3)
    fields = {"step": f"run_batch.{name}", "partition": partition.isoformat(), "seconds": timings[name]}
    logger.info("run_batch %s took %.2fs", name, timings[name], extra={"fields": fields})
    log(name, timings[name])


def partition_end(partition: dt.date) -> pd.Timestamp:
    """End of the partition's data interval: midnight UTC after ``partition``."""
    return pd.Timestamp(partition + dt.timedelta(days=1), tz="UTC")


def run_batch(settings: Settings, partition: dt.date, log: StepLog = _noop) -> Path:
    """Build the complete run directory for ``partition`` and return its path."""
    tuning = read_tuning(settings.tuning_path)  # read first: a bad file fails before any work
    final = art.run_dir_for(settings.runs_dir, partition)
    with art.atomic_dir(final) as out:
        manifest, metrics = _build(settings, partition, tuning, out, log, sharded=False)
        manifest["content_hash"] = art.content_hash(out)
        art.write_json(out / "manifest.json", manifest)
    # a sharded run of the same day staged earlier is obsolete now: never seal it over this one
    shutil.rmtree(art.staging_dir_for(settings.runs_dir, partition), ignore_errors=True)
    write_families(settings.textfile_dir / "hybridrec_run_batch.prom", run_families(manifest, metrics))
    return final


def stage_run(settings: Settings, partition: dt.date, log: StepLog = _noop) -> tuple[Path, dict]:
    """The shared part of a sharded run (``batch.shards``): everything ``run_batch`` builds but the
    per-user candidate lists and seen sets, plus what building those takes (the users' histories, their
    last touches, a fitted EASE model), in the staging directory. Returns it and the run's manifest so
    far (no content hash: the run is not complete)."""
    tuning = read_tuning(settings.tuning_path)  # read first: a bad file fails before any work
    with art.atomic_dir(art.staging_dir_for(settings.runs_dir, partition)) as out:
        manifest, _ = _build(settings, partition, tuning, out, log, sharded=True)
    return art.staging_dir_for(settings.runs_dir, partition), manifest


def _build(
    settings: Settings, partition: dt.date, tuning: Tuning, out: Path, log: StepLog, sharded: bool
) -> tuple[dict, dict]:
    """Every step of the run into ``out``; returns (manifest without its content hash, metrics). ``sharded``:
    per-user candidates and seen sets are left to ``batch.shards.build_shard``; their inputs are saved."""
    timings: dict[str, float] = {}
    use_system_allocator()  # Arrow's freed buffers then go back to the OS with glibc's (batch.memory)
    params = tuning.als or AlsParams.from_settings(settings)
    blend, reranker = tuning.blend, tuning.reranker
    candidates = tuning.candidates or CandidateChoice.from_settings(settings)
    ease_l2 = candidates.ease_l2 if candidates.ease_l2 is not None else settings.ease_l2
    reference_ts = partition_end(partition)
    with _step("load", timings, log, partition):
        window = training_window(settings.interactions_dir, partition, settings.training_window_days)
        every = read_window(window, PIPELINE_COLUMNS)
        # user models train on the events with a user; anonymous visitors' events (always with a
        # session) join what needs no user: co-visitation and popularity, for the items users know
        interactions, anonymous = _split_anonymous(every)
        del every  # the two parts hold its rows (or are it)
        n_interactions, n_anonymous = len(interactions), len(anonymous)
        maps = build_id_maps(interactions)
        known_items = anonymous[anonymous["item_id"].isin(maps.item_index)]
        sessions = pd.concat([interactions, known_items], ignore_index=True) if len(known_items) else interactions
        del anonymous, known_items
        items = load_items(settings.items_path, maps.item_ids)[list(ITEM_COLUMNS)]

    # Everything that reads the events runs first, so that the event frames are freed before the
    # model steps (train, candidates) allocate theirs: that keeps the run's peak memory down.
    with _step("split", timings, log, partition):
        removed, holdout = temporal_holdout(interactions, settings.holdout_per_user)
        # both matrices and the train popularity from one set of codes: the train rows are a mask,
        # not a copy of the events
        users, items_ = maps.user_codes(interactions["user_id"]), maps.item_codes(interactions["item_id"])
        weight = interactions["weight"].to_numpy(dtype=np.float64, na_value=np.nan)
        train = ~removed
        shape, scheme = (maps.n_users, maps.n_items), (settings.confidence, settings.bm25_k1, settings.bm25_b)
        full_matrix = confidence_from_codes(users, items_, weight, shape, *scheme)
        train_matrix = confidence_from_codes(users[train], items_[train], weight[train], shape, *scheme)
        train_pop = popularity_from_codes(
            items_[train],
            weight[train],
            utc_times(interactions["ts"])[train],
            maps.n_items,
            reference_ts,
            settings.popularity_half_life_days,
        )
        del users, items_, weight, train, removed
        # "auto" becomes a number once, on the training matrix; every fit of the run uses that number
        regularization_rule = "auto" if params.regularization == AUTO else "fixed"
        params = params.resolved(train_matrix)
        holdout_idx = {
            maps.user_index[u]: np.fromiter((maps.item_index[i] for i in its), dtype=np.int64)
            for u, its in holdout.items()
        }
        n_holdout_users = len(holdout)
        del holdout
        gate_inputs = GateInputs.build(partition, interactions, maps, holdout_idx, train_matrix, train_pop)
        holdout_idx = gate_inputs.held_out()  # the same rows, as a view over its arrays
    with _step("covisit", timings, log, partition):  # all events of the window, anonymous ones too, like popularity
        cov_items, cov_scores = covisit_neighbours(
            sessions, maps, settings.n_covisit, settings.covisit_window, settings.session_gap_minutes * 60.0
        )
    with _step("seen", timings, log, partition):
        if not sharded:
            seen = seen_items(interactions, maps, settings.seen_max_items)
        elif settings.seen_max_items and len(interactions):  # a shard builds its users' sets from these
            art.save_npz(out / SHARD_TOUCHES, **last_touches(interactions, maps))
        else:
            art.save_npz(out / SHARD_TOUCHES, **{k: np.empty(0, np.int64) for k in ("users", "items", "ts")})
    with _step("popularity", timings, log, partition):
        popularity = decayed_popularity(sessions, maps, reference_ts, settings.popularity_half_life_days)
        popular = popular_lists(popularity, items, settings.popular_n)
        del interactions, sessions
    with _step("train", timings, log, partition):
        model = train_als(train_matrix, params, settings.seed)
    with _step("holdout_metrics", timings, log, partition):
        if holdout_idx:
            metrics = holdout_metrics(
                model, train_matrix, holdout_idx, settings.eval_k, settings.eval_max_users, settings.seed, train_pop
            )
        else:  # too little history to hold anything out: say so instead of failing the run
            metrics = {
                "k": settings.eval_k,
                "n_users_evaluated": 0,
                "note": "no user has enough history for a holdout",
            }
        # holdout-blind: what the metrics measured, kept for the quality gate; written now, so
        # that it need not stay in memory while the final model is built
        art.save_npz(out / "eval_model.npz", user_factors=model.user_factors, item_factors=model.item_factors)
    with _step("train_full", timings, log, partition):
        model = continue_als(model, full_matrix, params, FULL_DATA_SWEEPS)
    with _step("refresh_users", timings, log, partition):
        model = refresh_users(model, full_matrix, params)
    with _step("candidates", timings, log, partition):
        ease = EaseParams(ease_l2, settings.ease_max_items)
        if sharded:  # what every shard needs: the users' histories (rows to exclude) and EASE, fitted once
            art.save_npz(
                out / SHARD_HISTORY, indptr=full_matrix.indptr, indices=full_matrix.indices, data=full_matrix.data
            )
            if candidates.model != "als":
                art.save_npz(out / SHARD_EASE, weights=train_ease(full_matrix, ease).weights)
        else:
            cand_items, cand_scores = candidate_lists(
                candidates.model, model, full_matrix, settings.n_candidates, ease, settings.ease_fusion_weight
            )
            art.save_npz(out / "candidates.npz", items=cand_items, scores=cand_scores)  # the largest artifact
            del cand_items, cand_scores
    with _step("neighbours", timings, log, partition):
        nbr_items, nbr_scores = item_neighbours(model.item_factors, settings.n_neighbours)
    with _step("write", timings, log, partition):
        pd.DataFrame({"user_id": maps.user_ids}).to_parquet(out / "users.parquet", index=False)
        items.to_parquet(out / "items.parquet", index=False)
        art.save_npz(out / "model.npz", user_factors=model.user_factors, item_factors=model.item_factors)
        gate_inputs.save(out)
        if not sharded:
            art.save_npz(out / "seen.npz", indptr=seen.indptr, items=seen.values)
        art.save_npz(out / "neighbours.npz", items=nbr_items, scores=nbr_scores)
        art.save_npz(out / "covisit.npz", items=cov_items, scores=cov_scores)
        art.save_npz(out / "popularity.npz", scores=popularity)
        art.save_popular(out / art.POPULAR_FILE, popular)
        art.write_json(out / "metrics.json", metrics)
        art.write_json(out / "serving.json", {"blend": blend, "reranker": reranker})
        manifest = {
            "partition": partition.strftime(DATE_FORMAT),
            "window_days": settings.training_window_days,
            "window": window.to_dict(),
            "n_interactions": n_interactions,
            "n_anonymous_events": n_anonymous,
            "n_users": len(maps.user_ids),
            "n_items": len(maps.item_ids),
            "n_holdout_users": n_holdout_users,
            "params": {
                **params.__dict__,
                "als_source": "settings" if tuning.als is None else "tuning",
                "regularization_rule": regularization_rule,
                "seed": settings.seed,
                "confidence": settings.confidence,
                "n_candidates": settings.n_candidates,
                "candidate_model": candidates.model,
                **({"ease_l2": ease_l2} if candidates.model != "als" else {}),
                "candidates_source": "settings" if tuning.candidates is None else "tuning",
                "n_neighbours": settings.n_neighbours,
                "n_covisit": settings.n_covisit,
                "seen_max_items": settings.seen_max_items,
                "covisit_window": settings.covisit_window,
                "session_gap_minutes": settings.session_gap_minutes,
                "popularity_half_life_days": settings.popularity_half_life_days,
                "popular_n": settings.popular_n,
                **({"blend": blend} if blend is not None else {}),
                **({"reranker": reranker} if reranker is not None else {}),
            },
            "timings_s": timings,
            "files": list(art.HASHED_FILES),
        }
        if sharded:
            manifest["shard_params"] = {
                "candidate_model": candidates.model,
                "n_candidates": settings.n_candidates,
                "fusion_weight": settings.ease_fusion_weight,
                "seen_max_items": settings.seen_max_items,
            }
    return manifest, metrics


def _split_anonymous(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events with a user, anonymous events): the contract lets an event without a user in only
    with a session id."""
    anonymous = interactions["user_id"].isna()
    if not anonymous.any():
        return interactions, interactions.iloc[:0]
    return interactions[~anonymous].reset_index(drop=True), interactions[anonymous].reset_index(drop=True)


def is_complete(settings: Settings, partition: dt.date) -> bool:
    return (art.run_dir_for(settings.runs_dir, partition) / "manifest.json").exists()

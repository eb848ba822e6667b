"""Turn a data set into what the harness needs: a batch run, held-out replay sessions, static interactions.

Synthetic (ordered sessions). ``batch.synthetic.generate`` data over ``days`` days ending ``SYNTHETIC_END`` is
ingested into ``work_dir``; the batch pipeline runs for the day BEFORE the last (so it trains on days
1..n-1); the sessions that start on the last day are replayed in their real event order. The static
protocols use the interactions of the training days only, so no replayed event is seen by them either.
``hybridrec tune`` uses the same data shifted one day back (``synthetic_split`` with the day before the
last): trained through day n-2, replaying the sessions that start on day n-1 (validation, never test).

Last.fm (HetRec 2011, read in place). There is no time split: the batch pipeline trains on ALL
``user_artists.dat`` plays (ingested as one partition, ``LASTFM_PARTITION``) and the tag sessions of
``lab.lastfm.load_tag_sessions`` are replayed. Their order within a session is unknown
(file order, by artistID) and they overlap the training plays in time; the report says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch.ingest import ingest_interactions, ingest_items
from batch.pipeline import partition_end, run_batch
from batch.synthetic.generate import SyntheticData, generate, write_synthetic
from lab.lastfm import USER_ARTISTS, load_tag_sessions, load_user_artists
from shared.config import Settings

SYNTHETIC_END = dt.date(2026, 1, 31)  # fixed, so the same arguments give the same report
LASTFM_PARTITION = dt.date(2011, 5, 31)  # HetRec 2011 plays carry no date; one partition holds them all

StepLog = Callable[[str, float], None]


@dataclass(frozen=True)
class Prepared:
    """A data set ready for both protocols."""

    name: str
    run_dir: Path  # complete batch run the replay is served from
    replay_events: pd.DataFrame  # session_id, user_id, item_id, event_type, position (+ ts)
    static_interactions: pd.DataFrame  # user_id, item_id, weight (+ ts when the data has times)
    item_ids: list[str]  # catalogue items (widen the static ranking and the coverage denominator)
    notes: list[str]


def prepare_synthetic(settings: Settings, users: int, items: int, days: int, seed: int, log: StepLog) -> Prepared:
    """Generate, ingest and run batch for the day before the last into ``settings.data_dir``."""
    data = ingest_synthetic(settings, users, items, days, seed)
    return synthetic_split(
        settings, data, SYNTHETIC_END, log, note=f"{users} users, {items} items, {days} days, seed {seed}"
    )


def ingest_synthetic(settings: Settings, users: int, items: int, days: int, seed: int) -> SyntheticData:
    """Generate ``days`` days ending ``SYNTHETIC_END`` and ingest them into ``settings.data_dir``."""
    if days < 2:
        raise ValueError(f"the synthetic protocol needs >= 2 days (train, then replay), got {days}")
    data = generate(users, items, days, seed, SYNTHETIC_END, n_categories=min(20, items))
    paths = write_synthetic(data, settings.raw_dir)
    ingest_items(paths["items"], settings.items_path)
    ingest_interactions(paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir)
    return data


def synthetic_split(
    settings: Settings, data: SyntheticData, replay_day: dt.date, log: StepLog, note: str = ""
) -> Prepared:
    """Batch run trained through the day before ``replay_day``; replay the sessions starting ON ``replay_day``.

    ``replay_day = SYNTHETIC_END`` is the test split ``hybridrec evaluate`` reports; the day before it is
    the validation split ``hybridrec tune`` searches on, so tuning never sees a test session.
    """
    train_day = replay_day - dt.timedelta(days=1)
    run_dir = run_batch(settings, train_day, log=log)
    frame = data.interactions
    cutoff, end = partition_end(train_day), partition_end(replay_day)
    starts = frame.groupby("session_id")["ts"].transform("min")
    held = frame[(starts >= cutoff) & (starts < end)].sort_values(["session_id", "ts", "event_id"], kind="stable")
    held = held.assign(position=held.groupby("session_id").cumcount().astype(np.int32))
    return Prepared(
        name="synthetic",
        run_dir=run_dir,
        replay_events=held[["session_id", "user_id", "item_id", "event_type", "position", "ts"]].reset_index(drop=True),
        static_interactions=frame[frame["ts"] < cutoff].reset_index(drop=True),
        item_ids=data.items["item_id"].astype(str).tolist(),
        notes=[
            f"synthetic: {note + ', ' if note else ''}ending {SYNTHETIC_END}; "
            f"batch trained on the days up to {train_day}, replay on the sessions starting {replay_day} "
            "in their real event order; the static protocols use the training days only.",
        ],
    )


def prepare_lastfm(settings: Settings, lastfm_dir: Path, log: StepLog) -> Prepared:
    """Ingest ``user_artists.dat`` as one partition, run batch on it, load the tag sessions for replay."""
    ingest_interactions(
        lastfm_dir / USER_ARTISTS, "lastfm", settings.interactions_dir, settings.quarantine_dir, LASTFM_PARTITION
    )
    run_dir = run_batch(settings, LASTFM_PARTITION, log=log)
    sessions = load_tag_sessions(lastfm_dir).assign(event_type="view")
    plays = load_user_artists(lastfm_dir)
    return Prepared(
        name="lastfm",
        run_dir=run_dir,
        replay_events=sessions,
        static_interactions=plays,
        item_ids=sorted(set(plays["item_id"]) | set(sessions["item_id"])),
        notes=[
            "lastfm: the batch model trains on ALL user_artists plays (no time split exists), and the replay "
            "uses the per-user-month tag sessions of user_taggedartists.dat. The order within a session is "
            "unknown (file order, by artistID), so next-item here means 'another artist tagged that month'.",
            "lastfm: the static protocol is the random 80/20 holdout only (plays carry no timestamps).",
        ],
    )

"""Turn a data set into what the harness needs: a batch run, held-out replay sessions, static interactions.

Synthetic. ``batch.synthetic.generate`` data over ``days`` days ending ``SYNTHETIC_END`` is generated and
ingested into a data dir (``synthetic_data_dir``), which ``hybridrec evaluate`` and ``tune`` then treat
exactly as a user's own ingested log (``lab.ownlog``: periods from the data, a batch run per stage,
the period's sessions replayed).

Last.fm (HetRec 2011, read in place; ``--data lastfm``). There is no time split: the batch pipeline
trains on ALL ``user_artists.dat`` plays (ingested as one partition, ``LASTFM_PARTITION``) and the tag
sessions of ``lab.lastfm.load_tag_sessions`` are replayed. Their order within a session is unknown
(file order, by artistID) and they overlap the training plays in time; the report says so. The
issue-8 protocol on Last.fm is the tag log ingested as a data dir (README, "Offline evaluation").
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from batch.ingest import ingest_interactions, ingest_items
from batch.pipeline import run_batch
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


def ingest_synthetic(
    settings: Settings, users: int, items: int, days: int, seed: int, repeats: bool = True
) -> SyntheticData:
    """Generate ``days`` days ending ``SYNTHETIC_END`` and ingest them into ``settings.data_dir``.

    ``repeats=False`` is the generator's rating-log mode (nobody consumes an item twice)."""
    if days < 2:
        raise ValueError(f"the synthetic protocol needs >= 2 days (train, then replay), got {days}")
    data = generate(users, items, days, seed, SYNTHETIC_END, n_categories=min(20, items), repeats=repeats)
    paths = write_synthetic(data, settings.raw_dir)
    ingest_items(paths["items"], settings.items_path)
    ingest_interactions(paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir)
    return data


def synthetic_data_dir(
    settings: Settings, path: Path, users: int, items: int, days: int, seed: int, repeats: bool
) -> tuple[Path, str]:
    """A fresh data dir at ``path`` holding the synthetic log, as ``hybridrec generate`` + ``ingest``
    would leave it; returns it and a one-line description for reports."""
    shutil.rmtree(path, ignore_errors=True)  # a stale partition would leak into training
    ingest_synthetic(settings.model_copy(update={"data_dir": path}), users, items, days, seed, repeats)
    mode = "" if repeats else " (no repeats: a rating log, one rating per user and item)"
    return path, f"synthetic{mode}: {users} users, {items} items, {days} days ending {SYNTHETIC_END}, seed {seed}"


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

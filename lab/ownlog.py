"""A user's own ingested log (``--data-dir DIR``) as evaluation and tuning data, never written to.

``DIR`` is a data dir as ``hybridrec ingest`` fills it: ``DIR/interactions/date=*/part-*.parquet`` and
optionally ``DIR/items/items.parquet``. Batch runs happen in a **scratch** data dir whose
``interactions`` and ``items`` are symlinks to DIR's (``scratch_data_dir``): Settings derives every
path from ``data_dir``, so the runs read DIR's partitions and write their ``runs/`` into the scratch
only. ``hybridrec tune`` writes one file into DIR, ``DIR/tuning/best.json``, at the very end.

Temporal protocol (``lab.periods``): a stage is a batch run keyed by the day before a period plus the
period's events replayed as live sessions:

- validation: run through ``train_end`` (training days only), replay the validation period;
- test: run through the end of validation, replay the test period.

Sessions: the log's ``session_id`` when a row has one; a row without one joins its user's single
session of that period (``<user_id>|<period start>``), so a log without session ids is replayed as one
session per user per period, in time order (rows of one timestamp keep their order in the file).
Only users the stage's model knows are replayed (the protocol of issue 8: a known user's later events);
sessions of other users are counted and dropped.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from batch.artifacts import read_json
from batch.dataset import list_partitions, load_interactions
from batch.pipeline import StepLog, partition_end, run_batch
from lab.periods import Periods, PeriodSpec, Plan, day_counts, plan_periods
from shared.config import Settings
from shared.errors import ConfigError

SHARED = ("interactions", "items")  # what a scratch data dir reads from DIR, through symlinks
REPLAY_COLUMNS = ["session_id", "user_id", "item_id", "event_type", "position", "ts"]


def check_source(source: Path) -> None:
    """ConfigError unless ``source`` holds ingested interaction partitions."""
    if not list_partitions(source / "interactions"):
        raise ConfigError(
            f"{source} has no interactions (no {source / 'interactions'}/date=*/part-*.parquet): ingest your log "
            f"first, e.g. `hybridrec ingest events.csv --data-dir {source}`"
        )


def _inside(path: Path, other: Path) -> bool:
    path, other = path.resolve(), other.resolve()
    return path == other or other in path.parents


def scratch_data_dir(source: Path, scratch: Path) -> Path:
    """Empty ``scratch`` and make it a data dir that reads ``source``'s interactions and items.

    Refuses (ConfigError) when either directory lies inside the other: the scratch is deleted and
    rewritten, DIR must never be. Returns ``scratch``.
    """
    check_source(source)
    if _inside(scratch, source) or _inside(source, scratch):
        raise ConfigError(
            f"the scratch dir {scratch} and the data dir {source} overlap; batch runs never write into the data "
            "dir: pass --out outside it (e.g. --out /tmp/hybridrec-tune)"
        )
    shutil.rmtree(scratch, ignore_errors=True)  # start clean: a stale run or tuning file would leak in
    scratch.mkdir(parents=True)
    for name in SHARED:
        if (source / name).is_dir():
            os.symlink((source / name).resolve(), scratch / name, target_is_directory=True)
    return scratch


@dataclass(frozen=True)
class Stage:
    """One batch run and the period replayed on it."""

    name: str  # "validation" or "test"
    run_partition: dt.date  # the run trains on every partition up to this day
    start: dt.date  # the replayed period, inclusive
    end: dt.date

    def to_dict(self) -> dict:
        return {"train_through": str(self.run_partition), "replay": [str(self.start), str(self.end)]}


@dataclass
class StageData:
    """A stage ready to replay: the run, its sessions (known users only) and what the replay counted."""

    stage: Stage
    run_dir: Path
    events: pd.DataFrame  # REPLAY_COLUMNS, sorted by session then position
    counts: dict[str, int | str]
    history: dict[str, frozenset[str]] = field(repr=False)  # user -> item ids of the run's training window


@dataclass
class OwnLog:
    """DIR's log, read through the scratch data dir of ``settings``, and its protocol plan."""

    interactions_dir: Path
    plan: Plan
    frame: pd.DataFrame = field(repr=False)  # the whole log, as ``batch.dataset.load_interactions`` returns it

    @classmethod
    def open(cls, settings: Settings, spec: PeriodSpec) -> OwnLog:
        counts = day_counts(settings.interactions_dir)
        if not counts:
            raise ConfigError(f"{settings.interactions_dir} holds partitions but no events; ingest your log first")
        plan = plan_periods(counts, spec)
        frame = load_interactions(settings.interactions_dir, max(counts), 0)
        return cls(settings.interactions_dir, plan, frame)

    @property
    def periods(self) -> Periods:
        if self.plan.periods is None:
            raise ConfigError(f"no temporal periods: {self.plan.reason}")
        return self.plan.periods

    def stage(self, name: str) -> Stage:
        p = self.periods
        if name == "validation":
            return Stage(name, p.train_end, *p.validation)
        if name == "test":
            return Stage(name, p.validation[1], *p.test)
        raise ValueError(f"unknown stage {name!r}")

    def before(self, day: dt.date) -> pd.DataFrame:
        """Every event before ``day`` (UTC midnight): the static protocols' data for a stage."""
        return self.frame[self.frame["ts"] < pd.Timestamp(day, tz="UTC")].reset_index(drop=True)

    def session_source(self) -> str:
        ids = self.frame["session_id"].notna()
        return "session_id" if ids.all() else "user_period" if not ids.any() else "mixed"

    def prepare(self, settings: Settings, stage: Stage, log: StepLog | None = None) -> StageData:
        """Run batch for ``stage`` in ``settings.data_dir`` and collect its replay sessions."""
        run_dir = run_batch(settings, stage.run_partition, log=log or _quiet)
        known = set(pd.read_parquet(run_dir / "users.parquet")["user_id"].astype(str))
        events, counts = period_sessions(self.frame, stage.start, stage.end, known)
        first = read_json(run_dir / "manifest.json")["window"]["first_day"]  # the run's own training window
        ts = self.frame["ts"]
        window = self.frame[(ts >= pd.Timestamp(first, tz="UTC")) & (ts < partition_end(stage.run_partition))]
        return StageData(stage, run_dir, events, counts, training_history(window, set(events["user_id"])))


def period_sessions(
    frame: pd.DataFrame, start: dt.date, end: dt.date, known_users: set[str]
) -> tuple[pd.DataFrame, dict[str, int | str]]:
    """The events of days ``start..end`` as replay sessions of known users (module docstring).

    ``frame``: the log sorted by ts (stable), as ``load_interactions`` returns it. Returns the sessions
    (``REPLAY_COLUMNS``, position = order in time within the session) and counts of events and sessions
    kept and dropped for an unknown user.
    """
    lo, hi = pd.Timestamp(start, tz="UTC"), partition_end(end)
    period = frame[(frame["ts"] >= lo) & (frame["ts"] < hi)]
    key = period["session_id"].astype(object).where(period["session_id"].notna(), period["user_id"] + f"|{start}")
    period = period.assign(session_id=key.astype(str))
    known = period["user_id"].isin(known_users)
    sessions = period[known].sort_values(["session_id", "ts"], kind="stable")
    sessions = sessions.assign(position=sessions.groupby("session_id").cumcount().astype(np.int32))
    counts: dict[str, int | str] = {
        "n_events": len(period),
        "n_sessions": int(period["session_id"].nunique()),
        "n_sessions_unknown_user": int(period.loc[~known, "session_id"].nunique()),
        "n_events_unknown_user": int((~known).sum()),
    }
    return sessions[REPLAY_COLUMNS].reset_index(drop=True), counts


def training_history(window: pd.DataFrame, users: set[str]) -> dict[str, frozenset[str]]:
    """user_id -> every item_id the user has in ``window`` (the run's training events), for ``users``."""
    rows = window[window["user_id"].isin(users)]
    return {str(u): frozenset(items) for u, items in rows.groupby("user_id")["item_id"]}


def history_indices(history: Mapping[str, frozenset[str]], item_index: Mapping[str, int]) -> dict[str, frozenset[int]]:
    """``training_history`` in a serving model's item index space (items it does not know are left out)."""
    return {u: frozenset(item_index[i] for i in items if i in item_index) for u, items in history.items()}


def _quiet(_name: str, _seconds: float) -> None:
    return None

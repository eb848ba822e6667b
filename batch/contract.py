"""The interaction contract: when an event row may enter the training data, and how it is stored.

Two roads lead into ``interactions/date=YYYY-MM-DD/``: file ingest (:mod:`batch.ingest`, a whole file
as one frame) and the live events' compaction (:mod:`batch.compaction`, one stream batch as one
frame). Both judge rows with :func:`check_interactions` and write the rows that pass with
:func:`write_partitions`, so a row meets the same rules, under the same problem kinds and messages,
whichever road it takes. The limits are declared once, in ``shared.schemas``, which the API's request
model uses too.

Rules, with the problem kind each adds (a row may break several; its reason joins their messages
with "; ", in this order):

* ``item_id``: not empty [missing_item_id] and at most MAX_ID_LENGTH characters [long_item_id],
  after stripping surrounding white space;
* ``user_id``: at most MAX_ID_LENGTH characters [long_user_id]; it may be empty only for an
  anonymous visitor's event, which then needs a ``session_id`` [missing_user_id]: such events train
  what needs no user (co-visitation within sessions, popularity), never the user models;
* ``session_id``, ``event_id``: optional, at most MAX_ID_LENGTH characters [long_<column>]; the
  event_id is required where it is what de-duplicates (live events) [missing_event_id];
* ``event_type``: one of EVENT_TYPES, compared stripped and lower-cased [bad_event_type];
* ``ts``: a time (a timestamp, a number of epoch seconds, or text holding ISO-8601 or epoch seconds;
  naive times are UTC) inside TS_WINDOW_S [bad_ts];
* ``weight``: absent (then the event type's EVENT_WEIGHTS entry) or a finite number in
  [0, MAX_EVENT_WEIGHT] [bad_weight].

Messages name a column as the source calls it (``labels``: MovieLens' ``rating`` is our weight) and
quote the offending value as the source holds it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batch.dataset import INTERACTION_SCHEMA, partition_dir, write_parquet_atomic
from shared.schemas import EVENT_TYPES, EVENT_WEIGHTS, MAX_EVENT_WEIGHT, MAX_ID_LENGTH, TS_WINDOW_S

OPTIONAL_IDS = ("session_id", "event_id")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_US_PER_DAY = 86_400 * 1_000_000
_WINDOW_YEARS = "..".join(str(dt.datetime.fromtimestamp(s, dt.UTC).year) for s in (TS_WINDOW_S[0], TS_WINDOW_S[1] - 1))


class Problems:
    """Per-row problems of n rows: a bad mask (n,), a joined reason per row (n,) and counts per kind."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.kinds: Counter[str] = Counter()

    def add(self, kind: str, mask: np.ndarray, message: str | Callable[[np.ndarray], Sequence[str]]) -> None:
        """Flag the rows of ``mask`` (bool (n,)) as ``kind``; ``message`` is one text for all, or a
        function of the flagged row positions that returns one text per row (only bad rows are formatted)."""
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        text = np.asarray([message] * len(idx) if isinstance(message, str) else list(message(idx)), dtype=object)
        old = self.reason[idx]
        self.reason[idx] = np.where(old == "", text, old + "; " + text)
        self.bad[idx] = True
        self.kinds[kind] += len(idx)


@dataclass(frozen=True)
class CheckedRows:
    """The n input rows as the dataset stores them, in input order; meaningful where the row is good.

    ``user_id`` object (n,), stripped, None for an anonymous event; ``item_id``, ``event_type`` object
    (n,), stripped (event types lower-cased);
    ``ts_us`` int64 (n,) µs since the epoch, UTC; ``weight`` float64 (n,), the type's default where
    none was given; ``session_id``, ``event_id`` object (n,), None where absent.
    """

    user_id: np.ndarray
    item_id: np.ndarray
    event_type: np.ndarray
    ts_us: np.ndarray
    weight: np.ndarray
    session_id: np.ndarray
    event_id: np.ndarray

    def table(self, rows: np.ndarray) -> pa.Table:
        """The rows at positions ``rows`` (int (m,)), in that order, as INTERACTION_SCHEMA."""
        return pa.table(
            {
                "user_id": pa.array(self.user_id[rows], pa.string()),
                "item_id": pa.array(self.item_id[rows], pa.string()),
                "event_type": pa.array(self.event_type[rows], pa.string()),
                "ts": pa.array(self.ts_us[rows], pa.timestamp("us", tz="UTC")),
                "weight": pa.array(self.weight[rows], pa.float64()),
                "session_id": pa.array(self.session_id[rows], pa.string()),
                "event_id": pa.array(self.event_id[rows], pa.string()),
            },
            schema=INTERACTION_SCHEMA,
        )


def check_interactions(
    frame: pd.DataFrame,
    problems: Problems,
    where: np.ndarray,
    labels: Mapping[str, str] | None = None,
    require_event_id: bool = False,
) -> CheckedRows:
    """Apply the module's rules to the n rows of ``frame``, recording what rows in ``where`` break.

    ``frame`` holds ``user_id``, ``item_id``, ``event_type``, ``ts`` and optionally ``weight``,
    ``session_id``, ``event_id``, with the values as the source has them (text, numbers, timestamps).
    ``where`` bool (n,): the rows to judge; the others (already known bad, e.g. a line that could not
    be split into fields) get no further messages. ``labels`` maps a column to the source's name for it.
    ``require_event_id``: the road where the event_id is what de-duplicates (live events) needs one.
    """
    label = labels or {}

    def name(column: str) -> str:
        return label.get(column, column)

    sessions = stripped(frame["session_id"]).to_numpy() if "session_id" in frame.columns else np.full(len(frame), "")
    user = check_id(frame["user_id"], "user_id", problems, where, name("user_id"), required=False)
    problems.add(
        "missing_user_id",
        (user == "") & (sessions == "") & where,
        f"{name('user_id')} is empty (an anonymous event needs a session_id)",
    )
    item = check_id(frame["item_id"], "item_id", problems, where, name("item_id"))
    optional = {}
    for column in OPTIONAL_IDS:
        given = frame[column] if column in frame.columns else pd.Series("", index=frame.index)
        required = require_event_id and column == "event_id"
        ids = check_id(given, column, problems, where, name(column), required)
        optional[column] = np.where(ids == "", None, ids)
    user = np.where(user == "", None, user)
    event = stripped(frame["event_type"]).str.lower()
    unknown = ~event.isin(EVENT_TYPES).to_numpy() & where
    allowed = ", ".join(EVENT_TYPES)
    problems.add(
        "bad_event_type", unknown, lambda i: [f"event_type {v!r} is not one of {allowed}" for v in event.iloc[i]]
    )
    ts_us = _parse_ts(frame["ts"], problems, where, name("ts"))
    weight = _parse_weight(frame.get("weight"), event, problems, where, name("weight"))
    return CheckedRows(
        user_id=user,
        item_id=item,
        event_type=event.to_numpy(dtype=object),
        ts_us=ts_us,
        weight=weight,
        session_id=optional["session_id"],
        event_id=optional["event_id"],
    )


def write_partitions(rows: CheckedRows, keep: np.ndarray, interactions_dir: Path, name: str) -> dict[dt.date, Path]:
    """Write the rows of ``keep`` (bool (n,)) as one part file ``name`` per UTC date of their ts.

    Rows keep their input order inside a part. Each file is written to a temporary name and renamed
    (``batch.dataset.write_parquet_atomic``), so writing the same rows under the same name again gives
    the same bytes. Returns {date: path}, by date.
    """
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return {}
    day = rows.ts_us[idx] // _US_PER_DAY
    order = np.argsort(day, kind="stable")
    days, starts = np.unique(day[order], return_index=True)
    written = {}
    for d, part in zip(days, np.split(idx[order], starts[1:]), strict=True):
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
        written[date] = partition_dir(interactions_dir, date) / name
        write_parquet_atomic(rows.table(part), written[date])
    return written


def partitions_text(partitions: Sequence[str]) -> str:
    """``"3 partition(s) 2026-03-01..2026-03-03"`` for a report: where the good rows went."""
    where = f"{len(partitions)} partition(s)"
    return f"{where} {partitions[0]}..{partitions[-1]}" if partitions else where


def kinds_text(kinds: Mapping[str, int]) -> str:
    """``"bad_ts=2, missing_user_id=1"`` for a report: what was wrong with the bad rows, by kind."""
    return ", ".join(f"{k}={n}" for k, n in sorted(kinds.items()))


def stripped(col: pd.Series) -> pd.Series:
    """Strings without surrounding whitespace; missing values become ""."""
    return col.astype("str").fillna("").str.strip()


def check_id(
    col: pd.Series,
    column: str,
    problems: Problems,
    where: np.ndarray,
    label: str | None = None,
    required: bool = True,
) -> np.ndarray:
    """Stripped ids (n,) as an object array; flags over-long ones, and empty ones when ``required``
    (messages say ``label``)."""
    name = label or column
    ids = stripped(col)
    if required:
        problems.add(f"missing_{column}", (ids == "").to_numpy() & where, f"{name} is empty")
    length = ids.str.len().to_numpy()
    problems.add(
        f"long_{column}",
        (length > MAX_ID_LENGTH) & where,
        lambda i: [f"{name} is {n} characters long (max {MAX_ID_LENGTH})" for n in length[i]],
    )
    return ids.to_numpy(dtype=object)


def _to_float(col: pd.Series) -> np.ndarray:
    """float64 (n,), NaN where the value is not a number. Arrow's cast first: fast when all parse."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    values = stripped(col)
    try:
        return pc.cast(pa.array(values, pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_ts(col: pd.Series, problems: Problems, where: np.ndarray, label: str) -> np.ndarray:
    """int64 µs since the epoch, UTC (n,): timestamps as they are, naive ones as UTC, numbers as epoch
    seconds, strings as ISO-8601 or epoch seconds. Unparseable or out-of-window values are flagged."""
    n = len(col)
    seconds = np.full(n, np.nan)
    if pd.api.types.is_datetime64_any_dtype(col):
        stamps = pd.DatetimeIndex(col if col.dt.tz is not None else col.dt.tz_localize("UTC"))
        seconds = stamps.tz_convert("UTC").as_unit("us").asi8 / 1e6
        seconds[stamps.isna()] = np.nan
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        seconds = _to_float(col)
    else:
        values = stripped(col)
        numeric = pc.match_substring_regex(pa.array(values, pa.string()), _NUMBER).to_numpy(zero_copy_only=False)
        seconds[numeric] = _to_float(values[numeric])
        iso = ~numeric & (values != "").to_numpy()
        parsed = pd.to_datetime(values[iso], format="ISO8601", utc=True, errors="coerce")
        ok = parsed.notna().to_numpy()
        seconds[np.flatnonzero(iso)[ok]] = pd.DatetimeIndex(parsed[ok]).as_unit("us").asi8 / 1e6
    unreadable = np.isnan(seconds) & where
    problems.add(
        "bad_ts",
        unreadable,
        lambda i: [f"{label} {v!r} is not an ISO-8601 time or epoch seconds" for v in _shown(col, i)],
    )
    lo, hi = TS_WINDOW_S
    outside = ~np.isnan(seconds) & ((seconds < lo) | (seconds >= hi)) & where
    problems.add(
        "bad_ts",
        outside,
        lambda i: [
            f"{label} {v!r} is outside {_WINDOW_YEARS} (epoch times must be in seconds)" for v in _shown(col, i)
        ],
    )
    us = np.where(np.isnan(seconds) | outside, 0, np.round(np.nan_to_num(seconds) * 1e6))
    return us.astype(np.int64)


def _parse_weight(
    col: pd.Series | None, event: pd.Series, problems: Problems, where: np.ndarray, label: str
) -> np.ndarray:
    """float64 (n,): the given weight, or EVENT_WEIGHTS[event_type] where none is given; flags
    non-numbers, non-finite values and values outside [0, MAX_EVENT_WEIGHT]."""
    codes = pd.Index(list(EVENT_WEIGHTS)).get_indexer(event)
    default = np.append(np.array(list(EVENT_WEIGHTS.values())), np.nan)[codes]  # code -1 (unknown) -> NaN
    if col is None:
        return default
    given = _to_float(col)
    empty = col.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(col):
        empty = empty | (stripped(col) == "").to_numpy()
    problems.add(
        "bad_weight",
        ~empty & np.isnan(given) & where,
        lambda i: [f"{label} {v!r} is not a number" for v in _shown(col, i)],
    )
    problems.add(
        "bad_weight", np.isinf(given) & where, lambda i: [f"{label} {v!r} is not finite" for v in _shown(col, i)]
    )
    problems.add("bad_weight", (given < 0) & where, lambda i: [f"{label} {v!r} is negative" for v in _shown(col, i)])
    problems.add(
        "bad_weight",
        np.isfinite(given) & (given > MAX_EVENT_WEIGHT) & where,
        lambda i: [f"{label} {v!r} is above the maximum {MAX_EVENT_WEIGHT:,.0f}" for v in _shown(col, i)],
    )
    return np.where(empty, default, given)


def _shown(col: pd.Series, rows: np.ndarray) -> list[str]:
    """The values at ``rows`` as text, for messages: only the bad rows are ever formatted."""
    return [str(v) for v in col.iloc[rows]]

"""The on-disk interaction dataset and item catalogue: layout, atomic writes, and windowed reads.

Layout (written by :mod:`batch.ingest`, read by every later batch step)::

    <interactions_dir>/date=YYYY-MM-DD/part-<digest>.parquet   INTERACTION_SCHEMA, one file per source
    <items_path>                                                item_id, category, title, available, ...

A part is written under a hidden temporary name and renamed into place, so a reader never sees half a
file, and names starting with ``.`` (crash leftovers) are ignored here.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from batch.memory import release_freed
from shared.errors import ArtifactNotFound, ConfigError, DataValidationError
from shared.ids import parse_date
from shared.schemas import DATE_FORMAT, ITEM_COLUMNS, PARTITION_COLUMN

# What every part file holds. session_id and event_id are always present (nullable) so that all parts
# share one schema and a dataset scan never has to reconcile them.
INTERACTION_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("weight", pa.float64()),
        ("session_id", pa.string()),
        ("event_id", pa.string()),
    ]
)
LOADED_COLUMNS = ("user_id", "item_id", "event_type", "ts", "weight", "session_id")
UNKNOWN_CATEGORY = "unknown"


def partition_dir(interactions_dir: Path, day: dt.date) -> Path:
    """``<interactions_dir>/date=YYYY-MM-DD``: the one place that spells a partition's path."""
    return interactions_dir / f"{PARTITION_COLUMN}={day.strftime(DATE_FORMAT)}"


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a hidden temporary sibling and ``os.replace``.

    A crash leaves at most a ``.<name>.tmp-*`` file, which readers skip; identical tables give
    identical bytes, so rewriting the same data is a no-op for anyone comparing files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def list_partitions(interactions_dir: Path) -> dict[dt.date, list[Path]]:
    """Dates that hold at least one part file, each with its part files sorted by name."""
    found: dict[dt.date, list[Path]] = {}
    if not interactions_dir.is_dir():
        return found
    prefix = f"{PARTITION_COLUMN}="
    for sub in interactions_dir.iterdir():
        if not sub.is_dir() or not sub.name.startswith(prefix):
            continue
        try:
            day = parse_date(sub.name[len(prefix) :])
        except ConfigError:
            continue  # not one of ours (e.g. date=latest); never guess
        parts = sorted(p for p in sub.glob("part-*.parquet") if p.is_file())
        if parts:
            found[day] = parts
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Window:
    """Which partitions a run reads: ``days`` up to ``end`` (0 = every partition up to ``end``), and
    what the window leaves out (partitions before it), so a run can say so instead of silently
    training on part of the log."""

    days: int
    end: dt.date
    parts: list[Path]  # part files inside the window
    first_day: dt.date | None  # oldest partition inside the window
    dropped_partitions: int
    dropped_rows: int  # raw rows of the partitions before the window (from Parquet footers)

    def to_dict(self) -> dict:
        return {
            "days": self.days or "all",
            "first_day": self.first_day.strftime(DATE_FORMAT) if self.first_day else None,
            "end": self.end.strftime(DATE_FORMAT),
            "dropped_partitions": self.dropped_partitions,
            "dropped_events": self.dropped_rows,
        }

    def summary(self) -> str:
        span = "the whole log" if not self.days else f"the {self.days}-day window"
        text = f"{span} {self.first_day}..{self.end}"
        if self.dropped_rows:
            text += (
                f" leaves out {self.dropped_rows:,} events in {self.dropped_partitions} older partition(s)"
                " (HYBRIDREC_TRAINING_WINDOW_DAYS=0 trains on all of them)"
            )
        return text


def training_window(interactions_dir: Path, end_date: dt.date, window_days: int) -> Window:
    """The partitions ``end_date - window_days < date <= end_date`` (every one up to ``end_date`` when
    ``window_days`` is 0); ArtifactNotFound, naming the dates that exist, when there are none."""
    if window_days < 0:
        raise ConfigError(f"window_days must be >= 0 (0 = all data), got {window_days}")
    start = end_date - dt.timedelta(days=window_days) if window_days else dt.date.min
    partitions = list_partitions(interactions_dir)
    inside = {day: parts for day, parts in partitions.items() if start < day <= end_date}
    if not inside:
        if partitions:
            days = list(partitions)
            have = f"{len(days)} partition(s) from {days[0]} to {days[-1]}"
        else:
            have = "no partitions at all"
        span = f"the {window_days} day(s) ending {end_date} ({start + dt.timedelta(days=1)}..{end_date})"
        raise ArtifactNotFound(
            f"no interaction partitions in {interactions_dir} for {span if window_days else f'dates up to {end_date}'}; "
            f"found {have}. Ingest data for these dates first, or choose an end date inside the data."
        )
    before = [p for day, parts in partitions.items() if day <= start for p in parts]
    return Window(
        days=window_days,
        end=end_date,
        parts=[p for parts in inside.values() for p in parts],
        first_day=min(inside),
        dropped_partitions=len({p.parent for p in before}),
        dropped_rows=sum(_rows(p) for p in before),
    )


def _rows(part: Path) -> int:
    """Rows of a part file from its footer; 0 for a file that is not readable Parquet (it is outside the
    window, so it must not break the run; a run whose window holds it fails on it with its own error)."""
    try:
        return pq.ParquetFile(part).metadata.num_rows
    except (pa.ArrowInvalid, OSError):
        return 0


def load_interactions(interactions_dir: Path, end_date: dt.date, window_days: int) -> pd.DataFrame:
    """Interactions of ``training_window(...)``, de-duplicated, sorted by ts.

    Only the part files of partitions inside the window are opened. Rows sharing a non-null
    ``event_id`` are kept once (the earliest; a live event ingested twice counts once); rows without
    an event_id are all kept. Returns columns user_id (str, null for an anonymous visitor's event,
    which always has a session_id), item_id, event_type (str), ts (datetime64[us, UTC]), weight
    (float64), session_id (str, may be null), one row per event, in stable ts order.
    """
    return read_window(training_window(interactions_dir, end_date, window_days))


def read_window(window: Window, columns: Sequence[str] = LOADED_COLUMNS) -> pd.DataFrame:
    """The interactions of ``window`` (see ``load_interactions``), ``columns`` of LOADED_COLUMNS only.

    Sorted and de-duplicated in Arrow with one ``take`` of the rows kept, then converted: the events
    are held about twice at the peak (pandas' sort, filter and column selection made three copies).
    String columns stay Arrow strings (pandas' ``str``), about 15 bytes per value instead of ~60.
    """
    try:
        table = pads.dataset(window.parts, schema=INTERACTION_SCHEMA, format="parquet").to_table(
            columns=[*columns, "event_id"]
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(f"cannot read interaction parts of {window.end}: {exc}") from exc
    order = np.argsort(table.column("ts").to_numpy(), kind="stable")
    dup = _repeated(table.column("event_id").take(order))
    table = table.select(list(columns))  # the ids' buffers go with the last reference to them
    keep = order[~dup]
    del order
    # One column at a time (take, convert, drop the source column): the events are held once plus one
    # column, not twice as a whole-table take would hold them.
    out: dict[str, pd.Series] = {}
    for name in columns:
        out[name] = table.column(name).take(keep).to_pandas()
        table = table.drop_columns([name])
        release_freed()  # Arrow's allocator would keep the dropped column's pages
    del table, keep
    return pd.DataFrame(out, copy=False)


def _repeated(ids: pa.ChunkedArray) -> np.ndarray:
    """bool (n,): True where a non-null id already occurred earlier in ``ids``.

    By sorting (a stable sort keeps equal ids in position order, so all but the first of a run of equal
    ids are repeats): about 50 MB for 1M ids, where pandas' ``duplicated`` or a dictionary encoding (hash
    tables over every distinct string) peaked 100-140 MB higher.
    """
    flat = ids.combine_chunks()
    order = pc.sort_indices(flat).to_numpy()  # stable; nulls last
    ordered = flat.take(order)
    del flat
    same = pc.equal(ordered[1:], ordered[:-1]).fill_null(False).to_numpy(zero_copy_only=False)
    repeated = np.zeros(len(order), dtype=bool)
    repeated[order[1:][same]] = True  # nulls never equal: a null id is never a repeat
    return repeated


def read_items_file(items_path: Path) -> pd.DataFrame:
    """The catalogue Parquet as written by ``batch.ingest.ingest_items``; DataValidationError if unusable."""
    try:
        items = pq.read_table(items_path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(f"cannot read item catalogue {items_path}: {exc}") from exc
    if "item_id" not in items.columns:
        found = ", ".join(map(str, items.columns)) or "(none)"
        raise DataValidationError(f"item catalogue {items_path} has no item_id column; found: {found}")
    return items


def load_items(items_path: Path, item_ids: Iterable[str]) -> pd.DataFrame:
    """The catalogue rows for ``item_ids``, in that order: row j describes ``item_ids[j]``.

    Items missing from the catalogue (or every item, when ``items_path`` does not exist) get category
    ``"unknown"``, title = item_id and available = True, so an item seen in interactions is never lost
    for lack of metadata. Extra attribute columns of the catalogue are kept (null where unknown).
    Returns item_id, category, title (str), available (bool), then any extra columns.
    """
    ids = pd.DataFrame({"item_id": pd.Series(list(item_ids), dtype="str")})
    if items_path.exists():
        catalogue = read_items_file(items_path)
        catalogue = catalogue.assign(item_id=catalogue["item_id"].astype("str"))
        catalogue = catalogue.drop_duplicates("item_id", keep="first")
        out = ids.merge(catalogue, on="item_id", how="left", sort=False)
    else:
        out = ids
    for column in ("category", "title", "available"):
        if column not in out.columns:
            out[column] = pd.NA
    out["category"] = out["category"].astype("str").fillna(UNKNOWN_CATEGORY)
    out["title"] = out["title"].astype("str").fillna(out["item_id"])
    out["available"] = out["available"].astype("boolean").fillna(True).astype(bool)
    extras = [c for c in out.columns if c not in ITEM_COLUMNS]
    return out[[*ITEM_COLUMNS, *extras]].reset_index(drop=True)

"""Ingest interaction and item files: validate every row, write good rows, quarantine bad ones.

An interaction file is read by :mod:`batch.readers` (CSV, Parquet, MovieLens ``u.data``, Last.fm
``user_artists.dat`` and ``user_taggedartists.dat``: every column as the file has it), each row is judged by the interaction contract
(:mod:`batch.contract`, the rules live compaction applies too), and the rows that pass go to the
date-partitioned dataset of :mod:`batch.dataset`, one part per source file and date:
``date=YYYY-MM-DD/part-<digest>.parquet`` where digest is the first 16 hex characters of the sha256 of
the source bytes. Re-ingesting a file therefore overwrites its own parts with the same bytes
(idempotent) and a different file adds parts. Bad rows go to ``<quarantine_dir>/<stem>-<digest>.parquet``
with every original column as a string plus ``line`` (where the row is in the source, see
batch.readers) and ``reason``. No row is dropped silently: rows_good + rows_bad + rows_merged ==
rows_read (blank lines and lines with the wrong number of fields are bad rows too; only blank lines at
the very end of a file are not rows; ``rows_merged`` counts rows that repeat an earlier row's event,
which only Last.fm tags have: ``batch.readers.repeated_events``). Extra columns are kept in quarantine
but not in the dataset.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from batch.contract import (
    Problems,
    check_id,
    check_interactions,
    kinds_text,
    partitions_text,
    stripped,
    write_partitions,
)
from batch.dataset import UNKNOWN_CATEGORY, write_parquet_atomic
from batch.readers import (
    Format,
    Source,
    file_digest,
    interaction_frame,
    read_source,
    repeated_events,
    require_columns,
    resolve_format,
    table_format,
)
from shared.errors import ConfigError
from shared.schemas import DATE_FORMAT

_TRUE, _FALSE = {"true", "t", "1", "yes", "y"}, {"false", "f", "0", "no", "n"}


@dataclass
class IngestReport:
    """What one ingest did. ``bad_reasons`` counts problem kinds; a row with two problems counts twice.
    ``rows_merged``: rows folded into an earlier row of the same event (Last.fm tags), neither good nor bad."""

    source: Path
    rows_read: int
    rows_good: int
    rows_bad: int
    partitions: list[str]
    quarantine_path: Path | None
    bad_reasons: Counter[str] = field(default_factory=Counter)
    rows_merged: int = 0

    def summary(self) -> str:
        where = partitions_text(self.partitions)
        merged = (
            f", {self.rows_merged} merged into the first row of their event (one per user, artist and day)"
            if self.rows_merged
            else ""
        )
        text = (
            f"{self.source.name}: {self.rows_read} rows read{merged}, {self.rows_good} good -> {where}, "
            f"{self.rows_bad} bad"
        )
        if self.quarantine_path is not None:
            text += f" -> {self.quarantine_path} ({kinds_text(self.bad_reasons)})"
        return text


@dataclass
class ItemsReport:
    """What one catalogue ingest did; duplicates and rows without a usable item_id are the bad rows."""

    source: Path
    items_path: Path
    rows_read: int
    rows_good: int
    rows_bad: int
    quarantine_path: Path | None
    bad_reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"{self.source.name}: {self.rows_read} rows read, {self.rows_good} items -> {self.items_path}"
        if self.quarantine_path is not None:
            text += f", {self.rows_bad} bad -> {self.quarantine_path} ({kinds_text(self.bad_reasons)})"
        return text


def ingest_interactions(
    path: Path,
    fmt: Format,
    interactions_dir: Path,
    quarantine_dir: Path,
    default_date: dt.date | None = None,
) -> IngestReport:
    """Validate ``path`` row by row and write it into the partitioned dataset (see module docstring).

    ``default_date`` is the day given to Last.fm plays, which carry no timestamp (required for lastfm).
    ``lastfm-tags`` (``user_taggedartists.dat``): one ``view`` per user, artist and day, at 00:00 UTC of
    that day, from the day's first tag row in file order; the user's other tags of that artist and day
    are counted in ``rows_merged`` (see ``batch.readers``).
    """
    kind = resolve_format(path, fmt)
    if kind == "lastfm" and default_date is None:
        raise ConfigError(f"{path.name} is Last.fm data without timestamps: pass the date the plays belong to (--date)")
    digest = file_digest(path)
    src = read_source(path, kind)
    frame, labels = interaction_frame(src.raw, kind, path, default_date)
    problems = Problems(len(src.raw))
    unsplit = _flag_unsplit(src, problems)
    merged = repeated_events(frame, kind, ~unsplit)  # the same event as an earlier row: judged there
    rows = check_interactions(frame, problems, ~unsplit & ~merged, labels)
    good = ~problems.bad & ~merged
    written = write_partitions(rows, good, interactions_dir, f"part-{digest}.parquet")
    quarantine = None
    if problems.bad.any():
        quarantine = quarantine_dir / f"{path.stem}-{digest}.parquet"
        _write_quarantine(src, problems, quarantine)
    partitions = [day.strftime(DATE_FORMAT) for day in written]
    return IngestReport(
        path,
        len(src.raw),
        int(good.sum()),
        int(problems.bad.sum()),
        partitions,
        quarantine,
        problems.kinds,
        int(merged.sum()),
    )


def ingest_items(path: Path, items_path: Path) -> ItemsReport:
    """Validate a catalogue (CSV or Parquet with at least ``item_id``) and write it to ``items_path``.

    Rows without a usable item_id, with an unreadable ``available`` or repeating an earlier item_id
    (the first is kept) go to ``<items_stem>.quarantine.parquet`` next to items_path. Defaults: category
    "unknown", title = item_id, available = True. Extra attribute columns are kept.
    """
    src = read_source(path, table_format(path, "item file"))
    raw = src.raw
    require_columns(raw, ("item_id",), path)
    problems = Problems(len(raw))
    broken = _flag_unsplit(src, problems)
    item = check_id(raw["item_id"], "item_id", problems, ~broken)
    available = np.ones(len(raw), dtype=bool)
    if "available" in raw.columns:
        if pd.api.types.is_bool_dtype(raw["available"]):
            flag = raw["available"].astype("boolean").fillna(True).to_numpy(dtype=bool)
            available, unreadable = flag, np.zeros(len(raw), dtype=bool)
        else:
            values = stripped(raw["available"]).str.lower()
            available = ~values.isin(_FALSE).to_numpy()
            unreadable = (~values.isin(_TRUE | _FALSE) & (values != "")).to_numpy() & ~broken
            msg = "available {!r} is not true/false"
            problems.add("bad_available", unreadable, lambda i: [msg.format(v) for v in raw["available"].iloc[i]])
    ok = pd.Series(item).where(~problems.bad)
    dup = (ok.duplicated(keep="first") & ok.notna()).to_numpy()
    first_line = pd.Series(src.lines).groupby(ok).transform("first")
    problems.add(
        "duplicate_item_id", dup, lambda i: [f"item_id {item[j]!r} repeats line {int(first_line.iloc[j])}" for j in i]
    )

    good = ~problems.bad
    out = raw.loc[good].copy()
    out["item_id"] = item[good]
    category = stripped(out["category"]) if "category" in out.columns else pd.Series("", index=out.index)
    out["category"] = category.where(category != "", UNKNOWN_CATEGORY)
    title = stripped(out["title"]) if "title" in out.columns else pd.Series("", index=out.index)
    out["title"] = title.where(title != "", out["item_id"])
    out["available"] = available[good]
    extras = [c for c in out.columns if c not in ("item_id", "category", "title", "available")]
    out = out[["item_id", "category", "title", "available", *extras]].reset_index(drop=True)
    write_parquet_atomic(pa.Table.from_pandas(out, preserve_index=False), items_path)
    quarantine = items_path.with_name(f"{items_path.stem}.quarantine.parquet")
    if problems.bad.any():
        _write_quarantine(src, problems, quarantine)
    else:
        quarantine.unlink(missing_ok=True)  # a stale one would describe an older catalogue
        quarantine = None
    return ItemsReport(path, items_path, len(raw), int(good.sum()), int(problems.bad.sum()), quarantine, problems.kinds)


def _flag_unsplit(src: Source, problems: Problems) -> np.ndarray:
    """Record lines with the wrong number of fields and blank lines; return their mask (n,)."""
    wrong = np.zeros(len(src.raw), dtype=bool)
    wrong[list(src.broken)] = True
    problems.add("bad_field_count", wrong, lambda i: [src.broken[j] for j in i])
    problems.add("blank_line", src.blank, "blank line")
    return wrong | src.blank


def _write_quarantine(src: Source, problems: Problems, path: Path) -> None:
    """Bad rows with every original column as a string, plus ``line`` and ``reason``."""
    idx = np.flatnonzero(problems.bad)
    bad = src.raw.iloc[idx].astype("str").reset_index(drop=True)
    bad.columns = [f"source_{c}" if c in ("line", "reason") else str(c) for c in bad.columns]
    bad["line"] = src.lines[idx]
    bad["reason"] = problems.reason[idx].astype(str)
    write_parquet_atomic(pa.Table.from_pandas(bad, preserve_index=False), path)

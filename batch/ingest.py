"""Ingest interaction and item files: validate every row, write good rows, quarantine bad ones.

Interactions go to the date-partitioned dataset of :mod:`batch.dataset`, one part per source file and
date: ``date=YYYY-MM-DD/part-<digest>.parquet`` where digest is the first 16 hex characters of the
sha256 of the source bytes. Re-ingesting a file therefore overwrites its own parts with the same bytes
(idempotent) and a different file adds parts. Bad rows go to ``<quarantine_dir>/<stem>-<digest>.parquet``
with every original column as a string plus ``line`` (where the row is in the source: the line number
in a text file, header = line 1, assuming no quoted newlines; the 1-based row number in Parquet) and
``reason``. No row is dropped silently: rows_good + rows_bad == rows_read (blank lines and lines with
the wrong number of fields are bad rows too; only blank lines at the very end of a file are not rows).

Accepted inputs: CSV or Parquet in the shared.schemas interaction schema (``weight``, ``session_id``,
``event_id`` optional; ts as ISO-8601, naive = UTC, or epoch seconds), MovieLens ``u.data`` and Last.fm
hetrec ``user_artists.dat``. A file that is not what it claims raises DataValidationError; bad
arguments raise ConfigError. Ids and event types are stripped of surrounding whitespace and event types
lower-cased; extra columns are kept in quarantine but not in the dataset.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batch.dataset import INTERACTION_SCHEMA, UNKNOWN_CATEGORY, partition_dir, write_parquet_atomic
from shared.errors import ConfigError, DataValidationError
from shared.schemas import DATE_FORMAT, EVENT_TYPES, EVENT_WEIGHTS, MAX_ID_LENGTH

Format = Literal["auto", "csv", "parquet", "movielens", "lastfm"]
FORMATS = ("auto", "csv", "parquet", "movielens", "lastfm")
REQUIRED_COLUMNS = ("user_id", "item_id", "event_type", "ts")
MOVIELENS_COLUMNS = ("user", "item", "rating", "timestamp")
LASTFM_COLUMNS = ("userID", "artistID", "weight")
TS_RANGE_S = (0, 4_102_444_800)  # 1970-01-01 .. 2100-01-01 UTC: catches millisecond epochs
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip data",
}
_TRUE, _FALSE = {"true", "t", "1", "yes", "y"}, {"false", "f", "0", "no", "n"}


@dataclass
class IngestReport:
    """What one ingest did. ``bad_reasons`` counts problem kinds; a row with two problems counts twice."""

    source: Path
    rows_read: int
    rows_good: int
    rows_bad: int
    partitions: list[str]
    quarantine_path: Path | None
    bad_reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        where = f"{len(self.partitions)} partition(s)"
        if self.partitions:
            where += f" {self.partitions[0]}..{self.partitions[-1]}"
        text = f"{self.source.name}: {self.rows_read} rows read, {self.rows_good} good -> {where}, {self.rows_bad} bad"
        if self.quarantine_path is not None:
            kinds = ", ".join(f"{k}={n}" for k, n in sorted(self.bad_reasons.items()))
            text += f" -> {self.quarantine_path} ({kinds})"
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
            kinds = ", ".join(f"{k}={n}" for k, n in sorted(self.bad_reasons.items()))
            text += f", {self.rows_bad} bad -> {self.quarantine_path} ({kinds})"
        return text


class _Problems:
    """Per-row problems of one file (n rows): a bad mask, a joined reason per row and counts per kind."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.kinds: Counter[str] = Counter()

    def add(self, kind: str, mask: np.ndarray, message: str | Callable[[np.ndarray], Sequence[str]]) -> None:
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        text = np.asarray([message] * len(idx) if isinstance(message, str) else list(message(idx)), dtype=object)
        old = self.reason[idx]
        self.reason[idx] = np.where(old == "", text, old + "; " + text)
        self.bad[idx] = True
        self.kinds[kind] += len(idx)


def ingest_interactions(
    path: Path,
    fmt: Format,
    interactions_dir: Path,
    quarantine_dir: Path,
    default_date: dt.date | None = None,
) -> IngestReport:
    """Validate ``path`` row by row and write it into the partitioned dataset (see module docstring).

    ``default_date`` is the day given to Last.fm plays, which carry no timestamp (required for lastfm).
    """
    kind = _resolve_format(path, fmt)
    if kind == "lastfm" and default_date is None:
        raise ConfigError(f"{path.name} is Last.fm data without timestamps: pass the date the plays belong to (--date)")
    digest = _digest(path)
    src = _read(path, kind)
    frame, label = _interaction_columns(src.raw, kind, path, default_date)
    problems = _Problems(len(src.raw))
    broken = src.flag(problems)
    user = _check_id(frame["user_id"], "user_id", problems, ~broken, label.get("user_id"))
    item = _check_id(frame["item_id"], "item_id", problems, ~broken, label.get("item_id"))
    event = _text(frame["event_type"]).str.lower()
    unknown = ~event.isin(EVENT_TYPES).to_numpy() & ~broken
    allowed = ", ".join(EVENT_TYPES)
    problems.add(
        "bad_event_type", unknown, lambda i: [f"event_type {v!r} is not one of {allowed}" for v in event.iloc[i]]
    )
    ts_us = _parse_ts(frame["ts"], problems, ~broken, label.get("ts", "ts"))
    weight = _parse_weight(frame.get("weight"), event, problems, ~broken, label.get("weight", "weight"))

    good = ~problems.bad
    table = pa.table(
        {
            "user_id": pa.array(user[good], pa.string()),
            "item_id": pa.array(item[good], pa.string()),
            "event_type": pa.array(event[good], pa.string()),
            "ts": pa.array(ts_us[good], pa.timestamp("us", tz="UTC")),
            "weight": pa.array(weight[good], pa.float64()),
            "session_id": _optional_id(frame.get("session_id"), good),
            "event_id": _optional_id(frame.get("event_id"), good),
        },
        schema=INTERACTION_SCHEMA,
    )
    partitions = _write_partitions(table, ts_us[good], interactions_dir, digest)
    quarantine = None
    if problems.bad.any():
        quarantine = quarantine_dir / f"{path.stem}-{digest}.parquet"
        _write_quarantine(src, problems, quarantine)
    return IngestReport(
        path, len(src.raw), int(good.sum()), int(problems.bad.sum()), partitions, quarantine, problems.kinds
    )


def ingest_items(path: Path, items_path: Path) -> ItemsReport:
    """Validate a catalogue (CSV or Parquet with at least ``item_id``) and write it to ``items_path``.

    Rows without a usable item_id, with an unreadable ``available`` or repeating an earlier item_id
    (the first is kept) go to ``<items_stem>.quarantine.parquet`` next to items_path. Defaults: category
    "unknown", title = item_id, available = True. Extra attribute columns are kept.
    """
    kind = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot tell the format of item file {path.name}: expected a .csv or .parquet suffix")
    src = _read(path, kind)
    raw = src.raw
    _require_columns(raw, ("item_id",), path)
    problems = _Problems(len(raw))
    broken = src.flag(problems)
    item = _check_id(raw["item_id"], "item_id", problems, ~broken)
    available = np.ones(len(raw), dtype=bool)
    if "available" in raw.columns:
        if pd.api.types.is_bool_dtype(raw["available"]):
            flag = raw["available"].astype("boolean").fillna(True).to_numpy(dtype=bool)
            available, unreadable = flag, np.zeros(len(raw), dtype=bool)
        else:
            text = _text(raw["available"]).str.lower()
            available = ~text.isin(_FALSE).to_numpy()
            unreadable = (~text.isin(_TRUE | _FALSE) & (text != "")).to_numpy() & ~broken
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
    category = _text(out["category"]) if "category" in out.columns else pd.Series("", index=out.index)
    out["category"] = category.where(category != "", UNKNOWN_CATEGORY)
    title = _text(out["title"]) if "title" in out.columns else pd.Series("", index=out.index)
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


def _resolve_format(path: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"input file {path} does not exist (or is not a file)")
    if fmt != "auto":
        return fmt
    by_suffix = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
    if by_suffix is None:
        raise ConfigError(
            f"cannot tell the format of {path.name} from its suffix {path.suffix!r}; "
            "pass --format csv, parquet, movielens or lastfm"
        )
    return by_suffix


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class _Source:
    """A source file's rows (n,): ``raw`` holds every column (text formats: as strings), ``lines`` where
    each row is in the file, ``broken`` a reason for rows that could not be split into columns."""

    raw: pd.DataFrame
    lines: np.ndarray
    broken: dict[int, str]
    is_text: bool

    def flag(self, problems: _Problems) -> np.ndarray:
        """Record lines with the wrong number of fields and blank lines; return their mask (n,)."""
        wrong = np.zeros(len(self.raw), dtype=bool)
        wrong[list(self.broken)] = True
        problems.add("bad_field_count", wrong, lambda i: [self.broken[j] for j in i])
        blank = np.zeros(len(self.raw), dtype=bool)
        if self.is_text:
            blank = ~wrong
            for name in self.raw.columns:
                blank &= (_text(self.raw[name]) == "").to_numpy()
            problems.add("blank_line", blank, "blank line")
        return wrong | blank


def _read(path: Path, kind: str) -> _Source:
    """Read the whole source; DataValidationError (naming the file and the problem) if it is not ``kind``."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise DataValidationError(f"{path} is empty (0 bytes); expected {kind} data")
    if kind == "parquet":
        try:
            raw = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataValidationError(f"{path} is not a readable Parquet file: {exc}") from exc
        return _Source(raw, np.arange(1, len(raw) + 1), {}, is_text=False)
    what = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if what is None and b"\x00" in head:
        what = "binary data"
    if what is None:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            what = "not UTF-8 text" if exc.start < len(head) - 4 else None  # a cut multi-byte char is fine
    if what is not None:
        raise DataValidationError(f"{path} is not a {kind} text file: it looks like {what} (starts with {head[:8]!r})")
    sep = "," if kind == "csv" else "\t"
    if kind == "movielens":
        names, skip = list(MOVIELENS_COLUMNS), 0
    else:
        first = head.decode("utf-8-sig", errors="replace").splitlines()[0] if head.strip() else ""
        names = [c.strip() for c in next(csv.reader([first], delimiter=sep), [])]
        if not any(names):
            raise DataValidationError(f"{path} has no header row (its first line is empty)")
        skip = 1
    broken: dict[int, str] = {}

    def on_invalid(row: pacsv.InvalidRow) -> str:
        text = row.text if len(row.text) <= 200 else row.text[:200] + "..."
        broken[row.number] = f"line has {row.actual_columns} field(s), expected {row.expected_columns}: {text!r}"
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            # single-threaded so that invalid rows know their line number
            read_options=pacsv.ReadOptions(use_threads=False, skip_rows=skip, column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(f"{path} cannot be parsed as {kind}: {exc}") from exc
    if table.num_rows == 0 and broken:
        raise DataValidationError(
            f"{path} is not {kind} data: no line has the expected {len(names)} {sep!r}-separated fields "
            f"({', '.join(names)}); e.g. {next(iter(broken.values()))}"
        )
    n = table.num_rows + len(broken)
    lines = np.arange(skip + 1, skip + 1 + n)
    is_row = ~np.isin(lines, list(broken))
    raw = table.to_pandas()
    if broken:
        raw.index = np.flatnonzero(is_row)
        raw = raw.reindex(range(n), fill_value="")
    by_position = {int(i): broken[int(lines[i])] for i in np.flatnonzero(~is_row)}
    # Blank lines at the very end are an editor's artefact, not rows; blank lines elsewhere are reported.
    filled = ~is_row
    for name in raw.columns:
        filled |= (raw[name].str.strip() != "").to_numpy()
    n_rows = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 0
    return _Source(raw.iloc[:n_rows], lines[:n_rows], by_position, is_text=True)


def _require_columns(raw: pd.DataFrame, required: Sequence[str], path: Path) -> None:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns)) or "(none)"
        raise DataValidationError(f"{path} is missing required column(s): {', '.join(missing)}; found: {found}")


def _interaction_columns(
    raw: pd.DataFrame, kind: str, path: Path, default_date: dt.date | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The source's columns under the interaction schema's names (values untouched), and the source's
    own name for each renamed field, so that messages name the column a person sees in the file."""
    if kind in ("csv", "parquet"):
        _require_columns(raw, REQUIRED_COLUMNS, path)
        return raw, {}
    if kind == "movielens":
        names = dict(zip(("user_id", "item_id", "weight", "ts"), MOVIELENS_COLUMNS, strict=True))
        frame = pd.DataFrame({field: raw[name] for field, name in names.items()}).assign(event_type="rating")
        return frame, names
    _require_columns(raw, LASTFM_COLUMNS, path)
    names = dict(zip(("user_id", "item_id", "weight"), LASTFM_COLUMNS, strict=True))
    frame = pd.DataFrame({field: raw[name] for field, name in names.items()}).assign(event_type="play")
    frame["ts"] = default_date.strftime(DATE_FORMAT) if default_date else ""
    return frame, names


def _text(col: pd.Series) -> pd.Series:
    """Strings without surrounding whitespace; missing values become ""."""
    return col.astype("str").fillna("").str.strip()


def _check_id(
    col: pd.Series, name: str, problems: _Problems, where: np.ndarray, label: str | None = None
) -> np.ndarray:
    """Stripped ids (n,) as an object array; flags empty and over-long ones (messages say ``label``)."""
    kind, name = name, label or name
    ids = _text(col)
    problems.add(f"missing_{kind}", (ids == "").to_numpy() & where, f"{name} is empty")
    length = ids.str.len().to_numpy()
    problems.add(
        f"long_{kind}",
        (length > MAX_ID_LENGTH) & where,
        lambda i: [f"{name} is {n} characters long (max {MAX_ID_LENGTH})" for n in length[i]],
    )
    return ids.to_numpy(dtype=object)


def _to_float(col: pd.Series) -> np.ndarray:
    """float64 (n,), NaN where the value is not a number. Arrow's cast first: fast when all parse."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    text = _text(col)
    try:
        return pc.cast(pa.array(text, pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _parse_ts(col: pd.Series, problems: _Problems, where: np.ndarray, label: str) -> np.ndarray:
    """int64 µs since the epoch, UTC (n,): timestamps as they are, naive ones as UTC, numbers as epoch
    seconds, strings as ISO-8601 or epoch seconds. Unparseable or out-of-range values are flagged."""
    n = len(col)
    seconds = np.full(n, np.nan)
    if pd.api.types.is_datetime64_any_dtype(col):
        stamps = pd.DatetimeIndex(col if col.dt.tz is not None else col.dt.tz_localize("UTC"))
        seconds = stamps.tz_convert("UTC").as_unit("us").asi8 / 1e6
        seconds[stamps.isna()] = np.nan
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        seconds = _to_float(col)
    else:
        text = _text(col)
        numeric = pc.match_substring_regex(pa.array(text, pa.string()), _NUMBER).to_numpy(zero_copy_only=False)
        seconds[numeric] = _to_float(text[numeric])
        iso = ~numeric & (text != "").to_numpy()
        parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
        ok = parsed.notna().to_numpy()
        seconds[np.flatnonzero(iso)[ok]] = pd.DatetimeIndex(parsed[ok]).as_unit("us").asi8 / 1e6
    unreadable = np.isnan(seconds) & where
    problems.add(
        "bad_ts",
        unreadable,
        lambda i: [f"{label} {v!r} is not an ISO-8601 time or epoch seconds" for v in _shown(col, i)],
    )
    lo, hi = TS_RANGE_S
    out_of_range = ~np.isnan(seconds) & ((seconds < lo) | (seconds >= hi)) & where
    problems.add(
        "bad_ts",
        out_of_range,
        lambda i: [f"{label} {v!r} is outside 1970..2099 (epoch times must be in seconds)" for v in _shown(col, i)],
    )
    us = np.where(np.isnan(seconds) | out_of_range, 0, np.round(np.nan_to_num(seconds) * 1e6))
    return us.astype(np.int64)


def _parse_weight(
    col: pd.Series | None, event: pd.Series, problems: _Problems, where: np.ndarray, label: str
) -> np.ndarray:
    """float64 (n,): the given weight, or EVENT_WEIGHTS[event_type] where none is given; flags
    non-numbers, non-finite and negative values."""
    codes = pd.Index(list(EVENT_WEIGHTS)).get_indexer(event)
    default = np.append(np.array(list(EVENT_WEIGHTS.values())), np.nan)[codes]  # code -1 (unknown) -> NaN
    if col is None:
        return default
    given = _to_float(col)
    empty = col.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(col):
        empty = empty | (_text(col) == "").to_numpy()
    problems.add(
        "bad_weight",
        ~empty & np.isnan(given) & where,
        lambda i: [f"{label} {v!r} is not a number" for v in _shown(col, i)],
    )
    problems.add(
        "bad_weight", np.isinf(given) & where, lambda i: [f"{label} {v!r} is not finite" for v in _shown(col, i)]
    )
    problems.add("bad_weight", (given < 0) & where, lambda i: [f"{label} {v!r} is negative" for v in _shown(col, i)])
    return np.where(empty, default, given)


def _shown(col: pd.Series, rows: np.ndarray) -> list[str]:
    """The values at ``rows`` as text, for messages: only the bad rows are ever formatted."""
    return [str(v) for v in col.iloc[rows]]


def _optional_id(col: pd.Series | None, good: np.ndarray) -> pa.Array:
    if col is None:
        return pa.nulls(int(good.sum()), pa.string())
    text = _text(col)[good]
    return pa.array(text.where(text != ""), pa.string())


def _write_partitions(table: pa.Table, ts_us: np.ndarray, interactions_dir: Path, digest: str) -> list[str]:
    """One part per UTC date of ``ts_us`` (aligned with table rows), rows in source order."""
    if table.num_rows == 0:
        return []
    day = ts_us // (86_400 * 1_000_000)
    order = np.argsort(day, kind="stable")
    days, starts = np.unique(day[order], return_index=True)
    written = []
    for d, rows in zip(days, np.split(order, starts[1:]), strict=True):
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
        write_parquet_atomic(
            table.take(pa.array(rows)), partition_dir(interactions_dir, date) / f"part-{digest}.parquet"
        )
        written.append(date.strftime(DATE_FORMAT))
    return written


def _write_quarantine(src: _Source, problems: _Problems, path: Path) -> None:
    """Bad rows with every original column as a string, plus ``line`` and ``reason``."""
    idx = np.flatnonzero(problems.bad)
    bad = src.raw.iloc[idx].astype("str").reset_index(drop=True)
    bad.columns = [f"source_{c}" if c in ("line", "reason") else str(c) for c in bad.columns]
    bad["line"] = src.lines[idx]
    bad["reason"] = problems.reason[idx].astype(str)
    write_parquet_atomic(pa.Table.from_pandas(bad, preserve_index=False), path)

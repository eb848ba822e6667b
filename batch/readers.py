"""Read an upstream file into a raw frame: CSV, Parquet, MovieLens ``u.data``, Last.fm ``user_artists.dat`` and
``user_taggedartists.dat``.

Readers judge the FILE (is it what it claims, does it have the columns, which lines cannot be split
into fields); whether each row is acceptable is the interaction contract's business
(:mod:`batch.contract`), applied by :mod:`batch.ingest`. A file that is not what it claims raises
DataValidationError; bad arguments raise ConfigError.

Text files are read with every column as a string, so that nothing is coerced before the contract
sees it, and every row keeps ``line``, where it is in the file (header = line 1, assuming no quoted
newlines; the 1-based row number in Parquet). Lines with the wrong number of fields and blank lines
are rows too (the ingest reports them as bad), except blank lines at the very end of a file.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.errors import ConfigError, DataValidationError
from shared.schemas import DATE_FORMAT

Format = Literal["auto", "csv", "parquet", "movielens", "lastfm", "lastfm-tags"]
FORMATS = ("auto", "csv", "parquet", "movielens", "lastfm", "lastfm-tags")
REQUIRED_COLUMNS = ("user_id", "item_id", "event_type", "ts")
MOVIELENS_COLUMNS = ("user", "item", "rating", "timestamp")
LASTFM_COLUMNS = ("userID", "artistID", "weight")
LASTFM_TAGS_COLUMNS = ("userID", "artistID", "tagID", "day", "month", "year")
LASTFM_TAGS_DATE = "year-month-day"  # how messages name the date a tag row's three columns make
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip data",
}


@dataclass
class Source:
    """A source file's n rows: ``raw`` holds every column (text formats: as strings), ``lines`` (n,)
    where each row is in the file, ``broken`` a reason for rows (by position) that could not be split
    into columns, ``blank`` bool (n,) the blank lines of a text file."""

    raw: pd.DataFrame
    lines: np.ndarray
    broken: dict[int, str]
    blank: np.ndarray


def resolve_format(path: Path, fmt: str) -> str:
    """The concrete format of ``path``: ``fmt``, or for "auto" the one its suffix names."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"input file {path} does not exist (or is not a file)")
    if fmt != "auto":
        return fmt
    by_suffix = _SUFFIXES.get(path.suffix.lower())
    if by_suffix is None:
        raise ConfigError(
            f"cannot tell the format of {path.name} from its suffix {path.suffix!r}; "
            "pass --format csv, parquet, movielens, lastfm or lastfm-tags"
        )
    return by_suffix


def table_format(path: Path, what: str) -> str:
    """ "csv" or "parquet" for a table file (``what`` names it in the error when its suffix is neither)."""
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot tell the format of {what} {path.name}: expected a .csv or .parquet suffix")
    return kind


def file_digest(path: Path) -> str:
    """The first 16 hex characters of the sha256 of the file's bytes: names what the file produces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_source(path: Path, kind: str) -> Source:
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
        return Source(raw, np.arange(1, len(raw) + 1), {}, np.zeros(len(raw), dtype=bool))
    _check_text(path, head, kind)
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
    return Source(raw.iloc[:n_rows], lines[:n_rows], by_position, ~filled[:n_rows])


def _check_text(path: Path, head: bytes, kind: str) -> None:
    """DataValidationError when the first bytes of a supposed text file say it is something else."""
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


def require_columns(raw: pd.DataFrame, required: Sequence[str], path: Path) -> None:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns)) or "(none)"
        raise DataValidationError(f"{path} is missing required column(s): {', '.join(missing)}; found: {found}")


def interaction_frame(
    raw: pd.DataFrame, kind: str, path: Path, default_date: dt.date | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The source's columns under the interaction schema's names (values untouched), and the source's
    own name for each renamed field, so that messages name the column a person sees in the file.

    MovieLens rows are ``rating`` events (weight = the rating); Last.fm rows are ``play`` events
    (weight = the play count) on ``default_date``, since the file has no times. Last.fm tag rows
    (``user_taggedartists.dat``) are ``view`` events of the artist at 00:00 UTC of the row's day, the
    text ``YYYY-MM-DD`` built from its ``year``, ``month`` and ``day`` (a date that does not exist or lies
    outside the time window is the contract's ``bad_ts``); ``repeated_events`` says which of them
    repeat an earlier one.
    """
    if kind in ("csv", "parquet"):
        require_columns(raw, REQUIRED_COLUMNS, path)
        return raw, {}
    if kind == "movielens":
        names = dict(zip(("user_id", "item_id", "weight", "ts"), MOVIELENS_COLUMNS, strict=True))
        frame = pd.DataFrame({field: raw[name] for field, name in names.items()}).assign(event_type="rating")
        return frame, names
    if kind == "lastfm-tags":
        require_columns(raw, LASTFM_TAGS_COLUMNS, path)
        year, month, day = (raw[c].str.strip() for c in ("year", "month", "day"))
        frame = pd.DataFrame(
            {
                "user_id": raw["userID"],
                "item_id": raw["artistID"],
                "event_type": "view",
                "ts": year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2),
            }
        )
        return frame, {"user_id": "userID", "item_id": "artistID", "ts": LASTFM_TAGS_DATE}
    require_columns(raw, LASTFM_COLUMNS, path)
    names = dict(zip(("user_id", "item_id", "weight"), LASTFM_COLUMNS, strict=True))
    frame = pd.DataFrame({field: raw[name] for field, name in names.items()}).assign(event_type="play")
    frame["ts"] = default_date.strftime(DATE_FORMAT) if default_date else ""
    return frame, names


def repeated_events(frame: pd.DataFrame, kind: str, where: np.ndarray) -> np.ndarray:
    """bool (n,): rows of ``where`` that repeat an earlier row's event and are merged into it.

    Only Last.fm tags have such rows: tagging an artist with several tags on one day is one event
    (one ``view`` per user, artist and day, the day's first tag row in file order). Rows are compared
    as ``interaction_frame`` gives them (ids stripped; the date zero-padded, so "4" and "04" are one
    month). Every other format: none.
    """
    out = np.zeros(len(frame), dtype=bool)
    if kind != "lastfm-tags":
        return out
    rows = frame[where]
    key = rows["user_id"].str.strip() + "\t" + rows["item_id"].str.strip() + "\t" + rows["ts"]
    out[np.flatnonzero(where)] = key.duplicated(keep="first").to_numpy()
    return out

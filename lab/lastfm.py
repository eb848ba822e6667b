"""Readers for the HetRec 2011 Last.fm 2K files, read in place (the data set is licensed for
non-commercial use: it is never copied into the repository or the data directory).

``user_artists.dat`` (userID, artistID, weight = play count) has no timestamps, so it only supports
the *random* static holdout: ``TemporalHoldout`` refuses it (no ``ts`` column) instead of splitting on
invented times. ``user_taggedartists.dat`` (userID, artistID, tagID, day, month, year) is the only
dated signal; it feeds the session protocol via ``load_tag_sessions``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import DataValidationError

USER_ARTISTS = "user_artists.dat"
USER_TAGGED_ARTISTS = "user_taggedartists.dat"
MIN_SESSION_ITEMS = 2


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A tab-separated HetRec file with a header row, as int64 columns; DataValidationError if it is not one."""
    if not path.is_file():
        raise DataValidationError(f"{path} does not exist; pass the hetrec2011-lastfm-2k directory")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{path} is not a tab-separated HetRec file: {exc}") from exc
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{path} lacks column(s) {missing}; its header is {list(frame.columns)}")
    out = {}
    for c in columns:
        values = pd.to_numeric(frame[c].str.strip(), errors="coerce")
        bad = values.isna() | (values < 0) | (values != values.round())
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise DataValidationError(f"{path} line {line}: {c} {frame[c].iloc[line - 2]!r} is not an integer >= 0")
        out[c] = values.astype(np.int64)
    return pd.DataFrame(out)


def load_user_artists(dataset_dir: Path) -> pd.DataFrame:
    """``user_artists.dat`` as interactions: user_id, item_id (str ids), event_type ``"play"``, weight.

    One row per (user, artist) in file order; ``weight`` float64 is the total play count. There is no
    ``ts`` column (see the module docstring). Rows with weight 0 carry no signal but are kept, as in
    the file; ``batch.matrix.confidence_matrix`` drops zero sums.
    """
    raw = _read_table(dataset_dir / USER_ARTISTS, ("userID", "artistID", "weight"))
    return pd.DataFrame(
        {
            "user_id": raw["userID"].astype(str),
            "item_id": raw["artistID"].astype(str),
            "event_type": "play",
            "weight": raw["weight"].astype(np.float64),
        }
    )


def load_tag_sessions(dataset_dir: Path, min_items: int = MIN_SESSION_ITEMS) -> pd.DataFrame:
    """Tagging activity of ``user_taggedartists.dat`` grouped into per-user-month sessions.

    The dates have month resolution in practice (``day`` is 1 in ~98% of rows and is ignored), so a
    session is one user's tag assignments in one calendar month. Within it each artist appears once,
    at its first row (tagging an artist with several tags is one event), and a session needs at least
    ``min_items`` distinct artists (a one-artist session has no next item to predict).

    **The order within a session is unknown.** Positions follow the file, and the file lists each
    user's rows by ascending artistID, so ``position`` is a replay order, not a time order; a
    next-item metric on these sessions measures "another artist of the same month", and a report must
    say so. Dates are taken as they are: the file has 5 rows dated 1956-1979, before Last.fm existed;
    none of them falls in a session of two artists.

    Returns one row per (session, artist), sessions in order of their first row in the file:
    session_id str (``"<userID>:<YYYY-MM>"``), user_id str, item_id str, position int32 (0-based
    within the session), ts datetime64[us, UTC] (the month's first day, identical within a session).
    """
    if min_items < 1:
        raise DataValidationError(f"min_items must be >= 1, got {min_items}")
    raw = _read_table(dataset_dir / USER_TAGGED_ARTISTS, ("userID", "artistID", "tagID", "day", "month", "year"))
    if not raw["month"].between(1, 12).all() or not raw["year"].between(1900, 2100).all():
        line = int(np.flatnonzero(~(raw["month"].between(1, 12) & raw["year"].between(1900, 2100)))[0]) + 2
        raise DataValidationError(f"{dataset_dir / USER_TAGGED_ARTISTS} line {line}: month or year out of range")
    events = raw.drop_duplicates(["userID", "year", "month", "artistID"], keep="first")
    key = ["userID", "year", "month"]
    size = events.groupby(key, sort=False)["artistID"].transform("size")
    events = events[size >= min_items]
    session = events.groupby(key, sort=False).ngroup()  # numbered by first appearance in the file
    order = np.argsort(session.to_numpy(), kind="stable")
    events, session = events.iloc[order], session.iloc[order]
    ts = pd.to_datetime(pd.DataFrame({"year": events["year"], "month": events["month"], "day": 1}), utc=True)
    user = events["userID"].astype(str)
    return pd.DataFrame(
        {
            "session_id": (user + ":" + ts.dt.strftime("%Y-%m")).to_numpy(dtype=object),
            "user_id": user.to_numpy(dtype=object),
            "item_id": events["artistID"].astype(str).to_numpy(dtype=object),
            "position": events.groupby(session.to_numpy(), sort=False).cumcount().to_numpy(dtype=np.int32),
            "ts": ts.astype("datetime64[us, UTC]").reset_index(drop=True),
        }
    )

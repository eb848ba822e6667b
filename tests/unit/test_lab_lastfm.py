"""The Last.fm readers on tiny hand-written files (never the real data set)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lab.lastfm import load_tag_sessions, load_user_artists
from lab.splits import RandomHoldout, TemporalHoldout
from shared.errors import DataValidationError

TAGGED = """userID\tartistID\ttagID\tday\tmonth\tyear
2\t52\t13\t1\t4\t2009
2\t52\t15\t1\t4\t2009
2\t63\t13\t1\t4\t2009
2\t70\t13\t1\t5\t2009
3\t10\t1\t1\t4\t2009
2\t73\t14\t1\t4\t2009
2\t80\t14\t5\t4\t2009
3\t11\t1\t1\t4\t2009
3\t10\t2\t1\t6\t2010
3\t12\t2\t1\t6\t2010
2\t90\t3\t1\t4\t2010
"""
# Per user-month, distinct artists at their first row, in file order:
#   2:2009-04 -> 52 (twice: one event), 63, 73, 80 (day 5 is still April)    -> kept, 4 items
#   2:2009-05 -> 70                                                           -> one artist: dropped
#   3:2009-04 -> 10, 11 (same month as user 2's, another user)                -> kept
#   3:2010-06 -> 10, 12                                                       -> kept
#   2:2010-04 -> 90 (April again, another year)                               -> one artist: dropped
# Sessions come in order of their first row: 2:2009-04 (line 2), 3:2009-04 (line 6), 3:2010-06 (line 10).


def _write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    (tmp_path / name).write_bytes(text.replace("\n", newline).encode())
    return tmp_path


def test_tag_sessions_group_per_user_month_in_file_order(tmp_path: Path) -> None:
    sessions = load_tag_sessions(_write(tmp_path, "user_taggedartists.dat", TAGGED))
    rows = list(zip(sessions["session_id"], sessions["item_id"], sessions["position"], strict=True))
    assert rows == [
        ("2:2009-04", "52", 0),
        ("2:2009-04", "63", 1),
        ("2:2009-04", "73", 2),
        ("2:2009-04", "80", 3),
        ("3:2009-04", "10", 0),
        ("3:2009-04", "11", 1),
        ("3:2010-06", "10", 0),
        ("3:2010-06", "12", 1),
    ]
    assert sessions["user_id"].tolist() == ["2"] * 4 + ["3"] * 4
    assert sessions["ts"].dt.tz is not None
    assert sessions.groupby("session_id")["ts"].first().to_dict() == {
        "2:2009-04": pd.Timestamp("2009-04-01", tz="UTC"),
        "3:2009-04": pd.Timestamp("2009-04-01", tz="UTC"),
        "3:2010-06": pd.Timestamp("2010-06-01", tz="UTC"),
    }
    assert list(sessions.columns) == ["session_id", "user_id", "item_id", "position", "ts"]


def test_tag_sessions_min_items_keeps_single_artist_months_when_asked(tmp_path: Path) -> None:
    sessions = load_tag_sessions(_write(tmp_path, "user_taggedartists.dat", TAGGED), min_items=1)
    assert sessions["session_id"].unique().tolist() == ["2:2009-04", "2:2009-05", "3:2009-04", "3:2010-06", "2:2010-04"]


def test_tag_sessions_reject_a_malformed_file(tmp_path: Path) -> None:
    bad = TAGGED.replace("3\t11\t1\t1\t4\t2009", "3\televen\t1\t1\t4\t2009")
    with pytest.raises(DataValidationError, match="line 9: artistID 'eleven'"):
        load_tag_sessions(_write(tmp_path, "user_taggedartists.dat", bad))
    with pytest.raises(DataValidationError, match="month or year"):
        load_tag_sessions(_write(tmp_path, "user_taggedartists.dat", TAGGED.replace("\t4\t2009\n", "\t13\t2009\n", 1)))
    with pytest.raises(DataValidationError, match="does not exist"):
        load_tag_sessions(tmp_path / "nowhere")


def test_user_artists_read_as_play_interactions_without_timestamps(tmp_path: Path) -> None:
    # The real file has CRLF line endings and a header row.
    text = "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t7\n"
    plays = load_user_artists(_write(tmp_path, "user_artists.dat", text, newline="\r\n"))
    assert list(zip(plays["user_id"], plays["item_id"], plays["weight"], strict=True)) == [
        ("2", "51", 13883.0),
        ("2", "52", 11690.0),
        ("3", "51", 7.0),
    ]
    assert set(plays["event_type"]) == {"play"} and "ts" not in plays.columns
    _, holdout = RandomHoldout(0.2).split(plays, seed=0)  # user 2: 2 items -> 1 held out; user 3: 1 item -> none
    assert list(holdout) == ["2"] and len(holdout["2"]) == 1
    with pytest.raises(DataValidationError, match="ts"):
        TemporalHoldout().split(plays, seed=0)

"""Ingest: every row validated, good rows partitioned by date, bad rows quarantined with a reason."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.dataset import load_interactions
from batch.ingest import ingest_interactions, ingest_items
from batch.synthetic.generate import generate, write_synthetic
from shared.errors import ConfigError, DataValidationError

GOOD_AND_TWO_BAD = (
    "user_id,item_id,event_type,ts,weight,session_id\n"
    "u1,i1,view,2024-01-01T10:00:00,,s1\n"  # line 2: naive ISO = UTC, default weight
    "u1,i2,like,2024-01-01T10:01:00Z,,s1\n"  # line 3: bad event_type
    "u2,i1,purchase,1704153600,,\n"  # line 4: epoch seconds = 2024-01-02T00:00Z
    "u2,i3,click,2024-01-02T23:30:00+02:00,5,\n"  # line 5: offset -> 2024-01-02T21:30Z, explicit weight
    "u3,i2,view,yesterday,,\n"  # line 6: bad ts
    " u3 ,i2, VIEW ,2024-01-03 08:00:00,0.5,s9\n"  # line 7: whitespace and case are normalised
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _ingest(src: Path, tmp_path: Path, fmt: str = "auto", **kw):
    return ingest_interactions(src, fmt, tmp_path / "interactions", tmp_path / "quarantine", **kw)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_rows_are_partitioned_and_bad_rows_quarantined(tmp_path: Path) -> None:
    src = _write(tmp_path / "events.csv", GOOD_AND_TWO_BAD)
    report = _ingest(src, tmp_path)

    assert (report.rows_read, report.rows_good, report.rows_bad) == (6, 4, 2)
    assert report.partitions == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert report.bad_reasons == Counter({"bad_event_type": 1, "bad_ts": 1})
    assert "6 rows read, 4 good" in report.summary() and "2 bad" in report.summary()

    quarantined = pd.read_parquet(report.quarantine_path)
    assert report.quarantine_path.name.startswith("events-") and report.quarantine_path.parent.name == "quarantine"
    assert quarantined["line"].tolist() == [3, 6]
    assert quarantined["reason"].tolist() == [
        "event_type 'like' is not one of view, click, add_to_cart, purchase, play, rating",
        "ts 'yesterday' is not an ISO-8601 time or epoch seconds",
    ]
    assert quarantined["event_type"].tolist() == ["like", "view"]  # original values, as strings
    assert quarantined["ts"].tolist() == ["2024-01-01T10:01:00Z", "yesterday"]

    days = sorted(p.parent.name for p in (tmp_path / "interactions").rglob("part-*.parquet"))
    assert days == ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"]
    got = load_interactions(tmp_path / "interactions", dt.date(2024, 1, 3), 3)
    assert got["user_id"].tolist() == ["u1", "u2", "u2", "u3"]
    assert got["event_type"].tolist() == ["view", "purchase", "click", "view"]
    assert got["ts"].tolist() == [
        pd.Timestamp("2024-01-01T10:00:00Z"),
        pd.Timestamp("2024-01-02T00:00:00Z"),
        pd.Timestamp("2024-01-02T21:30:00Z"),
        pd.Timestamp("2024-01-03T08:00:00Z"),
    ]
    assert got["weight"].tolist() == [1.0, 8.0, 5.0, 0.5]
    assert got["session_id"].isna().tolist() == [False, True, True, False]


def test_reingesting_the_same_file_rewrites_the_same_bytes(tmp_path: Path) -> None:
    src = _write(tmp_path / "events.csv", GOOD_AND_TWO_BAD)
    first = _ingest(src, tmp_path)
    before = _snapshot(tmp_path / "interactions") | _snapshot(tmp_path / "quarantine")
    second = _ingest(src, tmp_path)
    after = _snapshot(tmp_path / "interactions") | _snapshot(tmp_path / "quarantine")
    assert first == second
    assert before == after and len(before) == 4  # 3 parts + 1 quarantine file, nothing added
    assert not list(tmp_path.rglob(".*"))  # no temporary files left


def test_a_different_file_adds_parts_next_to_the_old_ones(tmp_path: Path) -> None:
    _ingest(_write(tmp_path / "a.csv", GOOD_AND_TWO_BAD), tmp_path)
    _ingest(_write(tmp_path / "b.csv", "user_id,item_id,event_type,ts\nu9,i9,view,2024-01-01T12:00:00\n"), tmp_path)
    parts = sorted((tmp_path / "interactions" / "date=2024-01-01").glob("part-*.parquet"))
    assert len(parts) == 2
    got = load_interactions(tmp_path / "interactions", dt.date(2024, 1, 1), 1)
    assert got["user_id"].tolist() == ["u1", "u9"]


@pytest.mark.parametrize(
    ("row", "kind", "reason"),
    [
        (",i1,view,2024-01-01,,", "missing_user_id", "user_id is empty (an anonymous event needs a session_id)"),
        ("u1,   ,view,2024-01-01,,", "missing_item_id", "item_id is empty"),
        ("u" + "x" * 129 + ",i1,view,2024-01-01,,", "long_user_id", "user_id is 130 characters long (max 128)"),
        ("u1,i1,view,2024-01-01,," + "s" * 129, "long_session_id", "session_id is 129 characters long (max 128)"),
        ("u1,i1,view,1704067200000,,", "bad_ts", "ts '1704067200000' is outside 1970..2099"),
        ("u1,i1,view,,,", "bad_ts", "ts '' is not an ISO-8601 time or epoch seconds"),
        ("u1,i1,view,2024-01-01,abc,", "bad_weight", "weight 'abc' is not a number"),
        ("u1,i1,view,2024-01-01,inf,", "bad_weight", "weight 'inf' is not finite"),
        ("u1,i1,view,2024-01-01,-2,", "bad_weight", "weight '-2' is negative"),
        ("u1,i1,view,2024-01-01,1e7,", "bad_weight", "weight '1e7' is above the maximum 1,000,000"),
        ("u1,i1,view", "bad_field_count", "line has 3 field(s), expected 6"),
        ("u1,i1,view,2024-01-01,1,s,extra", "bad_field_count", "line has 7 field(s), expected 6"),
        (",,,,,", "blank_line", "blank line"),
    ],
)
def test_each_kind_of_bad_row_is_caught(tmp_path: Path, row: str, kind: str, reason: str) -> None:
    header = "user_id,item_id,event_type,ts,weight,session_id\n"
    src = _write(tmp_path / "one.csv", header + "u0,i0,view,2024-01-01,,\n" + row + "\nu0,i0,view,2024-01-01,,\n")
    report = _ingest(src, tmp_path)
    assert (report.rows_read, report.rows_good, report.rows_bad) == (3, 2, 1)
    assert report.bad_reasons == Counter({kind: 1})
    quarantined = pd.read_parquet(report.quarantine_path)
    assert quarantined["line"].tolist() == [3]
    assert quarantined["reason"].iloc[0].startswith(reason)


def test_a_row_with_several_problems_lists_them_all(tmp_path: Path) -> None:
    src = _write(tmp_path / "e.csv", "user_id,item_id,event_type,ts\n,i1,like,soon\n")
    report = _ingest(src, tmp_path)
    assert report.rows_bad == 1
    assert report.bad_reasons == Counter({"missing_user_id": 1, "bad_event_type": 1, "bad_ts": 1})
    reason = pd.read_parquet(report.quarantine_path)["reason"].iloc[0]
    assert (
        reason.split("; ")[0] == "user_id is empty (an anonymous event needs a session_id)"
        and len(reason.split("; ")) == 3
    )


def test_lastfm_needs_a_date_and_then_uses_it(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "user_artists.dat", "userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t51\tx\r\n"
    )
    with pytest.raises(ConfigError, match="--date"):
        _ingest(src, tmp_path, "lastfm")
    report = _ingest(src, tmp_path, "lastfm", default_date=dt.date(2011, 5, 1))
    assert (report.rows_good, report.rows_bad, report.partitions) == (2, 1, ["2011-05-01"])
    assert pd.read_parquet(report.quarantine_path)["reason"].tolist() == ["weight 'x' is not a number"]
    got = load_interactions(tmp_path / "interactions", dt.date(2011, 5, 1), 1)
    assert got[["user_id", "item_id", "event_type", "weight"]].values.tolist() == [
        ["2", "51", "play", 13883.0],
        ["2", "52", "play", 11690.0],
    ]
    assert (got["ts"] == pd.Timestamp("2011-05-01", tz="UTC")).all()


TAGS = (
    "userID\tartistID\ttagID\tday\tmonth\tyear\n"
    "2\t52\t13\t1\t4\t2009\n"  # line 2: user 2 views artist 52 on 2009-04-01
    "2\t52\t15\t1\t04\t2009\n"  # line 3: another tag, same user, artist and day ("04" = "4"): merged
    "2\t51\t13\t1\t4\t2009\n"  # line 4: the same day, a later row: comes after artist 52
    "2\t52\t13\t1\t5\t2009\n"  # line 5: artist 52 again, on another day: its own event
    "3\t7\t1\t1\t6\t1956\n"  # line 6: before 1970: quarantined
    "3\t7\t2\t1\t6\t1956\n"  # line 7: a repeat of line 6's event: merged, not bad a second time
    "3\t8\t1\t30\t2\t2009\n"  # line 8: 2009-02-30 does not exist
    "3\t9\t1\t1\n"  # line 9: two fields short
    "4\t52\t13\t9\t4\t2009\n"  # line 10: another user, a day in the month
)


def test_lastfm_tags_are_one_view_per_user_artist_and_day(tmp_path: Path) -> None:
    src = _write(tmp_path / "user_taggedartists.dat", TAGS)
    report = _ingest(src, tmp_path, "lastfm-tags")

    assert (report.rows_read, report.rows_merged, report.rows_good, report.rows_bad) == (9, 2, 4, 3)
    assert report.rows_good + report.rows_bad + report.rows_merged == report.rows_read
    assert "2 merged into the first row of their event" in report.summary()
    assert report.partitions == ["2009-04-01", "2009-04-09", "2009-05-01"]
    got = load_interactions(tmp_path / "interactions", dt.date(2009, 5, 1), 0)
    assert got[["user_id", "item_id", "event_type", "weight"]].values.tolist() == [
        ["2", "52", "view", 1.0],  # file order kept within the day
        ["2", "51", "view", 1.0],
        ["4", "52", "view", 1.0],
        ["2", "52", "view", 1.0],
    ]
    assert got["ts"].tolist() == [
        pd.Timestamp(d, tz="UTC") for d in ("2009-04-01", "2009-04-01", "2009-04-09", "2009-05-01")
    ]
    assert report.bad_reasons == Counter({"bad_ts": 2, "bad_field_count": 1})
    quarantined = pd.read_parquet(report.quarantine_path)
    assert quarantined["line"].tolist() == [6, 8, 9]
    assert quarantined["reason"].tolist()[:2] == [
        "year-month-day '1956-06-01' is outside 1970..2099 (epoch times must be in seconds)",
        "year-month-day '2009-02-30' is not an ISO-8601 time or epoch seconds",
    ]
    assert quarantined["tagID"].tolist()[:2] == ["1", "1"]  # the source's own columns


def test_lastfm_tags_need_their_columns(tmp_path: Path) -> None:
    src = _write(tmp_path / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n")
    with pytest.raises(DataValidationError, match="missing required column"):
        _ingest(src, tmp_path, "lastfm-tags")


def test_movielens_ratings_become_weights(tmp_path: Path) -> None:
    src = _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t4.5\t891717742\n22\t377\t1\n")
    report = _ingest(src, tmp_path, "movielens")
    assert (report.rows_read, report.rows_good, report.rows_bad) == (3, 2, 1)
    assert report.partitions == ["1997-12-04", "1998-04-04"]
    got = load_interactions(tmp_path / "interactions", dt.date(1998, 4, 4), 365)
    assert got["weight"].tolist() == [3.0, 4.5] and set(got["event_type"]) == {"rating"}
    assert got["ts"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")
    assert pd.read_parquet(report.quarantine_path)["line"].tolist() == [3]  # no header: row 3 is line 3


def test_typed_parquet_input(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": pa.array([1, 2, 3]),
            "item_id": ["a", "b", None],
            "event_type": ["view", "click", "view"],
            "ts": pa.array([dt.datetime(2024, 2, 1, 9), dt.datetime(2024, 2, 2, 9), dt.datetime(2024, 2, 2, 10)]),
            "weight": [None, 3.0, 1.0],
            "event_id": ["e1", "e2", "e3"],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    report = _ingest(tmp_path / "in.parquet", tmp_path)
    assert (report.rows_good, report.rows_bad, report.partitions) == (2, 1, ["2024-02-01", "2024-02-02"])
    quarantined = pd.read_parquet(report.quarantine_path)
    assert quarantined["line"].tolist() == [3] and quarantined["reason"].tolist() == ["item_id is empty"]
    got = load_interactions(tmp_path / "interactions", dt.date(2024, 2, 2), 2)
    assert got["user_id"].tolist() == ["1", "2"] and got["weight"].tolist() == [1.0, 3.0]
    assert got["ts"].tolist() == [pd.Timestamp("2024-02-01T09:00Z"), pd.Timestamp("2024-02-02T09:00Z")]


def test_generated_csv_round_trips_exactly(tmp_path: Path) -> None:
    data = generate(n_users=60, n_items=40, n_days=3, seed=5, end_date=dt.date(2024, 6, 3), n_categories=4)
    paths = write_synthetic(data, tmp_path / "raw", "csv")
    report = _ingest(paths["interactions"], tmp_path)
    assert report.rows_bad == 0 and report.rows_good == len(data.interactions)
    got = load_interactions(tmp_path / "interactions", dt.date(2024, 6, 3), 3)
    expected = data.interactions.drop(columns="event_id")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert str(got["ts"].dtype) == "datetime64[us, UTC]"


def test_files_that_are_not_what_they_claim(tmp_path: Path) -> None:
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(DataValidationError, match=r"photo\.csv.*PNG"):
        _ingest(png, tmp_path)
    no_user = _write(tmp_path / "no_user.csv", "item_id,event_type,ts\ni1,view,2024-01-01\n")
    with pytest.raises(
        DataValidationError, match=r"missing required column\(s\): user_id; found: item_id, event_type, ts"
    ):
        _ingest(no_user, tmp_path)
    with pytest.raises(DataValidationError, match="empty"):
        _ingest(_write(tmp_path / "empty.csv", ""), tmp_path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataValidationError, match=r"broken\.parquet.*Parquet"):
        _ingest(broken, tmp_path)
    with pytest.raises(DataValidationError, match="expected 4"):
        _ingest(_write(tmp_path / "u.data", "1,2,3,4\n5,6,7,8\n"), tmp_path, "movielens")
    assert not (tmp_path / "interactions").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    dat = _write(tmp_path / "u.data", "1\t2\t3\t4\n")
    with pytest.raises(ConfigError, match="--format"):
        _ingest(dat, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        _ingest(tmp_path / "missing.csv", tmp_path)
    with pytest.raises(ConfigError, match="unknown format"):
        _ingest(dat, tmp_path, "xml")


def test_items_keep_the_first_duplicate_and_fill_defaults(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "items.csv",
        "item_id,category,title,available,brand\n"
        "i1,shoes,Red shoe,true,acme\n"
        "i2,,,0,\n"
        "i1,hats,Other,true,x\n"  # duplicate: quarantined, first kept
        ",hats,No id,true,\n"  # no id
        "i3,hats,Hat,maybe,\n",  # unreadable flag
    )
    items_path = tmp_path / "catalogue" / "items.parquet"
    report = ingest_items(src, items_path)
    assert (report.rows_read, report.rows_good, report.rows_bad) == (5, 2, 3)
    assert report.bad_reasons == Counter({"duplicate_item_id": 1, "missing_item_id": 1, "bad_available": 1})
    items = pd.read_parquet(items_path)
    assert items.to_dict("list") == {
        "item_id": ["i1", "i2"],
        "category": ["shoes", "unknown"],
        "title": ["Red shoe", "i2"],
        "available": [True, False],
        "brand": ["acme", ""],
    }
    quarantined = pd.read_parquet(report.quarantine_path)
    assert report.quarantine_path.parent == items_path.parent
    assert quarantined["line"].tolist() == [4, 5, 6]
    assert quarantined["reason"].tolist() == [
        "item_id 'i1' repeats line 2",
        "item_id is empty",
        "available 'maybe' is not true/false",
    ]
    # a clean catalogue replaces the old one and removes the stale quarantine file
    clean = ingest_items(_write(tmp_path / "clean.csv", "item_id\ni7\n"), items_path)
    assert clean.quarantine_path is None and not report.quarantine_path.exists()
    assert pd.read_parquet(items_path).to_dict("list") == {
        "item_id": ["i7"],
        "category": ["unknown"],
        "title": ["i7"],
        "available": [True],
    }
    assert np.array_equal(pd.read_parquet(items_path)["available"].to_numpy(), [True])

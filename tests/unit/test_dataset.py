"""The partitioned interaction dataset and the catalogue: windows, de-duplication, defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from batch.dataset import (
    INTERACTION_SCHEMA,
    load_interactions,
    load_items,
    partition_dir,
    write_parquet_atomic,
)
from shared.errors import ArtifactNotFound, ConfigError, DataValidationError

D = dt.date(2024, 3, 1)


def _part(root: Path, day: dt.date, rows: list[tuple], name: str = "part-a.parquet") -> Path:
    """rows: (user, item, hour, event_id) on ``day``."""
    table = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["view"] * len(rows),
            "ts": pa.array(
                [dt.datetime(day.year, day.month, day.day, r[2], tzinfo=dt.UTC) for r in rows],
                pa.timestamp("us", tz="UTC"),
            ),
            "weight": [1.0] * len(rows),
            "session_id": [None] * len(rows),
            "event_id": [r[3] for r in rows],
        },
        schema=INTERACTION_SCHEMA,
    )
    path = partition_dir(root, day) / name
    write_parquet_atomic(table, path)
    return path


@pytest.fixture()
def five_days(tmp_path: Path) -> Path:
    root = tmp_path / "interactions"
    for k in range(5):
        _part(root, D + dt.timedelta(days=k), [(f"u{k}", "i1", 12, f"e{k}")])
    return root


def test_window_is_end_minus_days_exclusive_to_end_inclusive(five_days: Path) -> None:
    got = load_interactions(five_days, D + dt.timedelta(days=3), 2)
    assert got["user_id"].tolist() == ["u2", "u3"]
    assert list(got.columns) == ["user_id", "item_id", "event_type", "ts", "weight", "session_id"]
    assert str(got["ts"].dtype) == "datetime64[us, UTC]" and got["weight"].dtype == "float64"
    assert load_interactions(five_days, D + dt.timedelta(days=10), 30)["user_id"].tolist() == [
        f"u{k}" for k in range(5)
    ]


def test_a_broken_partition_outside_the_window_cannot_break_a_run(five_days: Path) -> None:
    (partition_dir(five_days, D) / "part-zzz.parquet").write_bytes(b"not parquet at all")
    assert load_interactions(five_days, D + dt.timedelta(days=4), 2)["user_id"].tolist() == ["u3", "u4"]
    with pytest.raises(DataValidationError, match="cannot read"):
        load_interactions(five_days, D, 1)


def test_leftovers_and_foreign_directories_are_ignored(five_days: Path) -> None:
    (partition_dir(five_days, D) / ".part-b.parquet.tmp-1234").write_bytes(b"half written")
    (five_days / "date=latest").mkdir()
    (five_days / "notes").mkdir()
    assert load_interactions(five_days, D, 1)["user_id"].tolist() == ["u0"]


def test_rows_sharing_an_event_id_count_once_and_null_ids_all_count(tmp_path: Path) -> None:
    root = tmp_path / "interactions"
    _part(root, D, [("u1", "i1", 9, "e1"), ("u2", "i2", 7, None), ("u2", "i2", 7, None)], "part-a.parquet")
    _part(root, D, [("u1", "i1", 9, "e1"), ("u3", "i3", 8, "e3")], "part-b.parquet")
    got = load_interactions(root, D, 1)
    assert got[["user_id", "item_id"]].values.tolist() == [["u2", "i2"], ["u2", "i2"], ["u3", "i3"], ["u1", "i1"]]
    assert got.index.tolist() == [0, 1, 2, 3]


def test_missing_window_says_which_dates_exist(five_days: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound, match=r"2024-04-01.*5 partition\(s\) from 2024-03-01 to 2024-03-05"):
        load_interactions(five_days, dt.date(2024, 4, 1), 7)
    with pytest.raises(ArtifactNotFound, match="no partitions at all"):
        load_interactions(tmp_path / "nothing-here", D, 7)
    with pytest.raises(ConfigError, match="window_days"):
        load_interactions(five_days, D, -1)


def test_window_zero_reads_the_whole_log_and_a_window_says_what_it_leaves_out(five_days: Path) -> None:
    from batch.dataset import training_window

    everything = load_interactions(five_days, dt.date(2024, 3, 5), 0)
    last_two = training_window(five_days, dt.date(2024, 3, 5), 2)
    assert last_two.dropped_partitions == 3 and last_two.first_day == dt.date(2024, 3, 4)
    kept = len(load_interactions(five_days, dt.date(2024, 3, 5), 2))
    assert last_two.dropped_rows == len(everything) - kept > 0  # no duplicates in this fixture
    assert "leaves out" in last_two.summary() and "HYBRIDREC_TRAINING_WINDOW_DAYS=0" in last_two.summary()
    whole = training_window(five_days, dt.date(2024, 3, 5), 0)
    assert (whole.dropped_rows, whole.to_dict()["days"]) == (0, "all") and "whole log" in whole.summary()


def test_items_follow_the_requested_order_with_defaults(tmp_path: Path) -> None:
    catalogue = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "category": ["c1", "c2", "c3"],
            "title": ["One", "Two", "Three"],
            "available": [True, False, True],
            "brand": ["a", "b", "c"],
        }
    )
    path = tmp_path / "items.parquet"
    write_parquet_atomic(pa.Table.from_pandas(catalogue, preserve_index=False), path)
    got = load_items(path, ["i3", "i9", "i2"])
    assert got["item_id"].tolist() == ["i3", "i9", "i2"]
    assert got["category"].tolist() == ["c3", "unknown", "c2"]
    assert got["title"].tolist() == ["Three", "i9", "Two"]
    assert got["available"].tolist() == [True, True, False] and got["available"].dtype == bool
    assert got["brand"].tolist()[0::2] == ["c", "b"] and pd.isna(got["brand"].iloc[1])

    none = load_items(tmp_path / "absent.parquet", ["x", "y"])
    assert none.to_dict("list") == {
        "item_id": ["x", "y"],
        "category": ["unknown", "unknown"],
        "title": ["x", "y"],
        "available": [True, True],
    }


def test_a_catalogue_without_item_id_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    write_parquet_atomic(pa.table({"sku": ["a"]}), path)
    with pytest.raises(DataValidationError, match="no item_id column; found: sku"):
        load_items(path, ["a"])

"""The interaction contract on its own: the rules both ingest and compaction apply, and the partition writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from batch.contract import CheckedRows, Problems, check_interactions, write_partitions
from shared.schemas import MAX_EVENT_TS_AHEAD, MAX_EVENT_WEIGHT, MAX_ID_LENGTH, MIN_EVENT_TS

DAY1, DAY2 = 1_772_323_200.0, 1_772_409_600.0  # 2026-03-01 and 2026-03-02, 00:00 UTC


def _check(frame: pd.DataFrame, require_event_id: bool = False) -> tuple[Problems, CheckedRows]:
    problems = Problems(len(frame))
    rows = check_interactions(frame, problems, np.ones(len(frame), dtype=bool), require_event_id=require_event_id)
    return problems, rows


def test_stream_shaped_rows_meet_the_same_rules_as_file_rows() -> None:
    """Compaction hands the contract float seconds and text weights; the messages are ingest's."""
    frame = pd.DataFrame(
        {
            "user_id": [" u1 ", "u2", "", "u4", "u5"],
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "event_type": ["View", "click", "like", "view", "view"],
            "ts": [DAY1 + 0.25, np.nan, DAY2, 1e12, DAY2],
            "weight": ["", "-1.0", "2.5", "inf", repr(MAX_EVENT_WEIGHT * 2)],
            "session_id": ["s1", "", "x" * (MAX_ID_LENGTH + 1), "", ""],
            "event_id": ["e1", "e2", "e3", "", "e5"],
        }
    )
    problems, rows = _check(frame, require_event_id=True)
    assert problems.bad.tolist() == [False, True, True, True, True]
    assert problems.reason.tolist() == [
        "",
        "ts 'nan' is not an ISO-8601 time or epoch seconds; weight '-1.0' is negative",
        f"session_id is {MAX_ID_LENGTH + 1} characters long (max {MAX_ID_LENGTH}); "
        "event_type 'like' is not one of view, click, add_to_cart, purchase, play, rating",
        "event_id is empty; ts '1000000000000.0' is outside 1970..2099 (epoch times must be in seconds); "
        "weight 'inf' is not finite",
        "weight '2000000.0' is above the maximum 1,000,000",
    ]
    assert problems.kinds["bad_weight"] == 3 and problems.kinds["missing_event_id"] == 1
    # the good row, as the dataset stores it: ids stripped, type lower-cased, default weight, µs UTC
    assert (rows.user_id[0], rows.event_type[0], rows.weight[0]) == ("u1", "view", 1.0)
    assert rows.ts_us[0] == int((DAY1 + 0.25) * 1e6) and rows.session_id[1] is None


def test_an_event_id_is_optional_unless_required() -> None:
    frame = pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": ["view"], "ts": [DAY1]})
    assert not _check(frame)[0].bad.any()
    assert _check(frame, require_event_id=True)[0].reason.tolist() == ["event_id is empty"]


def test_partitions_by_utc_day_keep_the_input_order(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "item_id": ["i"] * 4,
            "event_type": ["view"] * 4,
            "ts": [DAY2 + 5, DAY1 + 9, DAY2 + 1, DAY1 + 3],
        }
    )
    _, rows = _check(frame)
    keep = np.array([True, True, True, False])
    written = write_partitions(rows, keep, tmp_path, "part-x.parquet")
    assert list(written) == [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    assert written[dt.date(2026, 3, 2)] == tmp_path / "date=2026-03-02" / "part-x.parquet"
    assert pq.read_table(written[dt.date(2026, 3, 1)])["user_id"].to_pylist() == ["b"]
    assert pq.read_table(written[dt.date(2026, 3, 2)])["user_id"].to_pylist() == ["a", "c"]
    assert write_partitions(rows, np.zeros(4, dtype=bool), tmp_path, "part-y.parquet") == {}


def test_the_edges_of_the_apis_time_window_pass_the_contract_of_compaction() -> None:
    """The API accepts [MIN_EVENT_TS, now + MAX_EVENT_TS_AHEAD]; compaction must keep both edges (as
    the stream hands them: float seconds), or a 202 would be quarantined later."""
    edges = [MIN_EVENT_TS.timestamp(), (dt.datetime.now(dt.UTC) + MAX_EVENT_TS_AHEAD).timestamp()]
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "item_id": ["i1", "i2"],
            "event_type": ["view", "view"],
            "ts": edges,
            "weight": ["", ""],
            "event_id": ["e1", "e2"],
        }
    )
    problems, rows = _check(frame, require_event_id=True)
    assert not problems.bad.any(), problems.reason.tolist()
    assert rows.ts_us.tolist() == [round(t * 1_000_000) for t in edges]

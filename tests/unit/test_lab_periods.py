"""Periods of a log (lab.periods): cut from the log's own days and event counts, in whole UTC days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from batch.ingest import ingest_interactions
from lab.periods import PeriodSpec, day_counts, plan_periods
from shared.errors import ConfigError

D = dt.date(2025, 3, 1)


def _days(*counts: int, start: dt.date = D) -> dict[dt.date, int]:
    return {start + dt.timedelta(days=i): n for i, n in enumerate(counts) if n}


def test_fractions_take_the_fewest_latest_days_holding_the_share() -> None:
    plan = plan_periods(_days(*[10] * 10), PeriodSpec(0.1, 0.1))
    assert plan.protocol == "temporal"
    p = plan.periods
    assert (p.first_day, p.train_end) == (D, D + dt.timedelta(days=7))
    assert p.validation == (D + dt.timedelta(days=8),) * 2
    assert p.test == (D + dt.timedelta(days=9),) * 2
    assert dict(p.events) == {"train": 80, "validation": 10, "test": 10}


def test_a_thin_last_day_joins_the_one_before_it() -> None:
    # 100 events; the last day holds 2 (< 10%), so the test period needs the day before it too
    plan = plan_periods(_days(30, 30, 18, 20, 2), PeriodSpec(0.1, 0.1))
    p = plan.periods
    assert p.test == (D + dt.timedelta(days=3), D + dt.timedelta(days=4))
    assert p.validation == (D + dt.timedelta(days=2),) * 2  # 18 >= 10
    assert p.train_end == D + dt.timedelta(days=1)


def test_one_misdated_early_row_does_not_move_the_periods() -> None:
    log = _days(*[10] * 11)  # 10% is 11 events: two days either way (a 10% time span would be 4.6 years)
    plan = plan_periods(log, PeriodSpec())
    with_outlier = plan_periods({dt.date(1979, 5, 1): 1, **log}, PeriodSpec())
    assert (with_outlier.periods.validation, with_outlier.periods.test) == (plan.periods.validation, plan.periods.test)
    assert with_outlier.periods.first_day == dt.date(1979, 5, 1)


def test_days_are_calendar_days_ending_on_the_last_day_with_events() -> None:
    log = _days(5, 5, 5, 0, 5, 5, 0, 5)  # gaps on days 3 and 6
    p = plan_periods(log, PeriodSpec(test_days=2, validation_days=3)).periods
    assert p.test == (D + dt.timedelta(days=6), D + dt.timedelta(days=7))  # day 6 is empty, still in the period
    assert p.validation == (D + dt.timedelta(days=3), D + dt.timedelta(days=5))
    assert p.train_end == D + dt.timedelta(days=2)
    assert dict(p.events) == {"train": 15, "validation": 10, "test": 5}


def test_periods_that_leave_nothing_to_train_on_are_refused_with_the_dates() -> None:
    with pytest.raises(ConfigError, match=r"no events for train.*2025-03-01\.\.2025-03-04"):
        plan_periods(_days(5, 5, 5, 5), PeriodSpec(test_days=2, validation_days=2))
    with pytest.raises(ConfigError, match="validation"):
        plan_periods(_days(5, 5, 0, 5), PeriodSpec(test_days=1, validation_days=1))  # day 3 is empty


@pytest.mark.parametrize("counts", [{}, {D: 100}, {D: 50, D + dt.timedelta(days=1): 50}])
def test_fewer_than_three_days_take_the_random_protocol_and_say_why(counts: dict) -> None:
    plan = plan_periods(counts, PeriodSpec())
    assert (plan.protocol, plan.periods, plan.n_days) == ("random", None, len(counts))
    assert "no time order" in plan.reason and "at least 3 days" in plan.reason


def test_bad_specs_are_config_errors() -> None:
    for kwargs in (
        {"test_fraction": 0.0},
        {"validation_fraction": 1.0},
        {"test_fraction": 0.6, "validation_fraction": 0.5},
    ):
        with pytest.raises(ConfigError):
            PeriodSpec(**kwargs)
    with pytest.raises(ConfigError, match="test_days"):
        PeriodSpec(test_days=0)


def test_day_counts_read_the_ingested_partitions(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    rows = ["user_id,item_id,event_type,ts"]
    rows += [f"u{i},i{i},view,2025-03-0{1 + i % 3}T23:59:59Z" for i in range(7)]  # days 1,2,3,1,2,3,1
    csv.write_text("\n".join(rows) + "\n")
    ingest_interactions(csv, "csv", tmp_path / "interactions", tmp_path / "quarantine")
    assert day_counts(tmp_path / "interactions") == {D: 3, D + dt.timedelta(days=1): 2, D + dt.timedelta(days=2): 2}
    assert day_counts(tmp_path / "nothing") == {}

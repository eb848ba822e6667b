"""Training, validation and test periods of an interaction log, from the log itself, in whole UTC days.

A log is the partitioned dataset ``hybridrec ingest`` writes (``interactions/date=YYYY-MM-DD/``); a
batch run is keyed by a partition date and trains on every partition up to it, so each period is a
run of whole days. The **test** period is the last one, the **validation** period the one before it,
and training is everything earlier::

    first day ... train_end | validation_start ... validation_end | test_start ... last day

Period length, per period, either

- a number of calendar days (``test_days`` / ``validation_days``): the test period is the
  ``test_days`` days ending on the last day with events, validation the ``validation_days`` before it;
- or a fraction of the log's events (``test_fraction`` / ``validation_fraction``, the default 0.1 each):
  the test period is the fewest latest days holding at least that share of all events, validation the
  fewest days before it holding at least its share. Events rather than the time span because one
  mis-dated row stretches a span (the Last.fm tag log has rows dated 1956 and 1979, so 10% of its
  span would be more than five years and nearly every event), while it moves an event count by one.

Every period must hold events, and training at least one day of them; otherwise ``ConfigError`` says
which dates the log has. A log with fewer than ``MIN_DAYS`` days that hold events has no time order to
split (Last.fm plays: one partition, one timestamp): ``plan_periods`` returns the random protocol for
it, with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batch.dataset import list_partitions
from shared.errors import ConfigError

MIN_DAYS = 3  # training, validation, test: one day each at least
DEFAULT_FRACTION = 0.1
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class PeriodSpec:
    """How long validation and test are: days when given, else a fraction of the events."""

    test_fraction: float = DEFAULT_FRACTION
    validation_fraction: float = DEFAULT_FRACTION
    test_days: int | None = None
    validation_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("test_fraction", "validation_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ConfigError("test_fraction + validation_fraction must leave events to train on (sum < 1)")
        for name in ("test_days", "validation_days"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def describe(self) -> str:
        def one(days: int | None, fraction: float) -> str:
            return f"{days} day(s)" if days is not None else f"the latest days holding >= {fraction:.0%} of the events"

        return (
            f"test = {one(self.test_days, self.test_fraction)}; "
            f"validation = {one(self.validation_days, self.validation_fraction)} before it"
        )


@dataclass(frozen=True)
class Periods:
    """The three periods (inclusive date ranges) and the events each holds."""

    first_day: dt.date
    train_end: dt.date  # the validation model's run partition: trains on every day up to here
    validation: tuple[dt.date, dt.date]
    test: tuple[dt.date, dt.date]  # test[0] - 1 day = validation[1]: the test model's run partition
    events: Mapping[str, int]  # "train", "validation", "test" -> events (partition row counts)

    def to_dict(self) -> dict:
        return {
            "train": [str(self.first_day), str(self.train_end)],
            "validation": [str(d) for d in self.validation],
            "test": [str(d) for d in self.test],
            "events": dict(self.events),
        }


@dataclass(frozen=True)
class Plan:
    """``protocol`` "temporal" (with ``periods``) or "random" (no time order; ``reason`` says why)."""

    protocol: str
    reason: str
    periods: Periods | None
    n_days: int
    n_events: int


def day_counts(interactions_dir: Path) -> dict[dt.date, int]:
    """Events per partition day, from the Parquet footers (no data is read); days without rows left out."""
    counts: dict[dt.date, int] = {}
    for day, parts in list_partitions(interactions_dir).items():
        try:
            n = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ConfigError(f"cannot read the interaction parts of {day} in {interactions_dir}: {exc}") from exc
        if n:
            counts[day] = n
    return counts


def _latest_days(days: list[dt.date], counts: Mapping[dt.date, int], share: float, total: int) -> int:
    """How many of the latest ``days`` it takes to hold at least ``share`` of ``total`` events (>= 1)."""
    held = 0
    for n, day in enumerate(reversed(days), 1):
        held += counts[day]
        if held >= share * total:
            return n
    return len(days)


def plan_periods(counts: Mapping[dt.date, int], spec: PeriodSpec) -> Plan:
    """The protocol for a log with ``counts`` (day -> events, as ``day_counts``); see the module docstring."""
    days = sorted(d for d, n in counts.items() if n > 0)
    total = sum(counts[d] for d in days)
    if len(days) < MIN_DAYS:
        reason = (
            f"the log's {total:,} events fall on {len(days)} day(s) ({', '.join(map(str, days)) or 'none'}); "
            f"a temporal split needs events on at least {MIN_DAYS} days (training, validation, test), so there "
            "is no time order to replay: random protocol (a seeded random 80/20 holdout per user, full ranking)"
        )
        return Plan("random", reason, None, len(days), total)
    last = days[-1]
    if spec.test_days is not None:
        test_start = last - (spec.test_days - 1) * ONE_DAY
    else:
        test_start = days[-_latest_days(days, counts, spec.test_fraction, total)]
    before_test = [d for d in days if d < test_start]
    if spec.validation_days is not None:
        val_start = test_start - spec.validation_days * ONE_DAY
    elif before_test:
        val_start = before_test[-_latest_days(before_test, counts, spec.validation_fraction, total)]
    else:
        val_start = test_start
    periods = {
        "train": [d for d in days if d < val_start],
        "validation": [d for d in days if val_start <= d < test_start],
        "test": [d for d in days if d >= test_start],
    }
    empty = [name for name, held in periods.items() if not held]
    if empty:
        raise ConfigError(
            f"{spec.describe()} leaves no events for {' and '.join(empty)}: the log has {len(days)} days with "
            f"events, {days[0]}..{last} (test from {test_start}, validation from {val_start}); "
            "choose shorter periods (--test-days/--validation-days or the fractions)"
        )
    split = Periods(
        first_day=days[0],
        train_end=val_start - ONE_DAY,
        validation=(val_start, test_start - ONE_DAY),
        test=(test_start, last),
        events={name: sum(counts[d] for d in held) for name, held in periods.items()},
    )
    reason = (
        f"{len(days)} days with events, {days[0]}..{last}; {spec.describe()}: training {days[0]}..{split.train_end} "
        f"({split.events['train']:,} events), validation {val_start}..{split.validation[1]} "
        f"({split.events['validation']:,}), test {test_start}..{last} ({split.events['test']:,})"
    )
    return Plan("temporal", reason, split, len(days), total)

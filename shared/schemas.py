"""Data contracts shared by batch and online.

Interactions (one row per event)::

    user_id: str, item_id: str, event_type: str, ts: timestamp[us, UTC], weight: float64

Optional columns: ``session_id: str`` (events of one visit) and ``event_id: str`` (unique id, for
de-duplication of live events). ``event_type`` is one of ``EVENT_WEIGHTS`` (``play`` carries a play
count and ``rating`` an explicit rating in ``weight``). When ``weight``
is absent it defaults to the event type's weight below, so a purchase counts more than a view.

Items (one row per item)::

    item_id: str, category: str, title: str, available: bool  (+ optional attribute columns)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator

# Default implicit-feedback strength per event type. ``play`` is a count: its weight is the count.
EVENT_WEIGHTS: Final[dict[str, float]] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "purchase": 8.0,
    "play": 1.0,
    "rating": 1.0,
}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_WEIGHTS)

INTERACTION_COLUMNS: Final[tuple[str, ...]] = ("user_id", "item_id", "event_type", "ts", "weight")
OPTIONAL_INTERACTION_COLUMNS: Final[tuple[str, ...]] = ("session_id", "event_id")
ITEM_COLUMNS: Final[tuple[str, ...]] = ("item_id", "category", "title", "available")

# Partition column of the interaction dataset: ``interactions/date=YYYY-MM-DD/part-*.parquet``.
PARTITION_COLUMN: Final[str] = "date"
DATE_FORMAT: Final[str] = "%Y-%m-%d"

MAX_ID_LENGTH: Final[int] = 128
# The largest event weight accepted (a play count, a rating, or a strength given with the event). A
# larger one is a unit slip (milliseconds, cents) and would outweigh all of a user's other events in
# the confidence matrix; play counts in the Last.fm set stay below 400,000.
MAX_EVENT_WEIGHT: Final[float] = 1e6
# Event times accepted, in epoch seconds [start, end): 1970-01-01 .. 2100-01-01 UTC. The end catches
# epochs in milliseconds, which would otherwise land thousands of years ahead.
TS_WINDOW_S: Final[tuple[int, int]] = (0, 4_102_444_800)

# A timestamp lies in [MIN_EVENT_TS, now + MAX_EVENT_TS_AHEAD] for the API: earlier ones are typos or
# epoch-0 defaults, later ones a wrong clock or milliseconds read as seconds. This window lies inside
# TS_WINDOW_S (ingest and compaction: historical logs may be older), so an event the API accepts always
# passes compaction: 202 never means "dropped later".
MIN_EVENT_TS: Final[datetime] = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_TS_AHEAD: Final[timedelta] = timedelta(days=1)

# --- the tuning file: <data_dir>/tuning/best.json, written by `hybridrec tune` (lab.tune) ---------------
# One model for its whole format, read by batch.tuning_file. Numbers must be JSON numbers (no strings,
# no booleans) and finite; a section or optional field may be left out, but not given as null.


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("null is not allowed: leave the key out instead")
    return value


_NotNull = BeforeValidator(_not_null)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Weight = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]


class TunedBlend(BaseModel):
    """``best``: the online blend chosen on validation. The batch run publishes it in the version meta
    (``params.blend``) and online.blend.BlendParams applies it per version. A field the file lacks (it
    predates the field) is served at its configured value. Other keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    weight_user: Weight
    weight_session: Weight
    weight_popularity: Weight
    weight_covisit: Annotated[Weight | None, _NotNull] = None
    session_half_life: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
    precomputed_weight_popularity: Annotated[Weight | None, _NotNull] = None


def _regularization(value: object) -> float | str:
    """``"auto"`` or a finite JSON number >= 0 (not a string holding one, not a boolean)."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number or 'auto'")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must be >= 0")
    return float(value)


class TunedAls(BaseModel):
    """``als``: the ALS hyper-parameters chosen on validation (the ranges of batch.train.AlsParams)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    factors: Annotated[StrictInt, Field(ge=1)]
    regularization: Annotated[float | str, BeforeValidator(_regularization)]
    alpha: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
    iterations: Annotated[StrictInt, Field(ge=1)]


class TunedReranker(BaseModel):
    """``reranker``: the learned linear re-ranker, ``score = bias + sum(weights[i] * features[i])``.

    Checked here for shape only; whether the API computes those features is the API's check
    (online.reranker.LinearReranker). Other keys are provenance and travel with it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Literal["linear"]
    features: Annotated[list[StrictStr], Field(min_length=1)]
    weights: list[Number]
    bias: Number = 0.0

    @model_validator(mode="after")
    def _one_weight_per_feature(self) -> TunedReranker:
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct names, got {self.features}")
        if len(self.weights) != len(self.features):
            raise ValueError(f"{len(self.features)} features need as many weights, got {len(self.weights)}")
        return self


class TunedCandidates(BaseModel):
    """``candidates``: the candidate model chosen on validation (``Settings.candidate_model``) and, for
    EASE, its ridge penalty."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: Literal["als", "ease", "als+ease"]
    ease_l2: Annotated[float | None, Field(strict=True, allow_inf_nan=False, gt=0)] = None


class TuningFile(BaseModel):
    """The whole file. ``als`` absent: train with Settings (a file from before the ALS search);
    ``candidates`` absent: the configured candidate model; ``reranker`` absent: serve session requests with the blend. Other keys (the scored points, the test
    table, provenance) are the tune run's report and are not read."""

    model_config = ConfigDict(extra="allow", frozen=True)

    best: TunedBlend
    als: Annotated[TunedAls | None, _NotNull] = None
    reranker: Annotated[TunedReranker | None, _NotNull] = None
    candidates: Annotated[TunedCandidates | None, _NotNull] = None


# Online blend fields a tuning result may set, in order; and those it may lack (it predates them).
BLEND_FIELDS: Final[tuple[str, ...]] = tuple(TunedBlend.model_fields)
OPTIONAL_BLEND_FIELDS: Final[tuple[str, ...]] = tuple(
    name for name, info in TunedBlend.model_fields.items() if not info.is_required()
)

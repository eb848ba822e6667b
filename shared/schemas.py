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

from datetime import UTC, datetime, timedelta
from typing import Final

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

# Bounds of one event, for every entry point (POST /events, ingest, compaction). A weight is a finite
# number in [0, MAX_EVENT_WEIGHT]: a few 1e308 weights would overflow the ALS confidence to inf and stop
# every later training run. A timestamp lies in [MIN_EVENT_TS, now + MAX_EVENT_TS_AHEAD]: earlier ones are
# typos or epoch-0 defaults, later ones a wrong clock or milliseconds read as seconds.
MAX_EVENT_WEIGHT: Final[float] = 1e6
MIN_EVENT_TS: Final[datetime] = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_TS_AHEAD: Final[timedelta] = timedelta(days=1)

# Online blend fields a tuning result may set: batch reads them from tuning/best.json and publishes
# them in the version meta (``params.blend``); online.ranking.BlendParams applies them per version.
BLEND_FIELDS: Final[tuple[str, ...]] = (
    "weight_user",
    "weight_session",
    "weight_popularity",
    "weight_covisit",
    "session_half_life",
    "precomputed_weight_popularity",
)
# Fields a tuning file may lack (it predates them): the API then serves their configured value.
OPTIONAL_BLEND_FIELDS: Final[tuple[str, ...]] = ("weight_covisit", "precomputed_weight_popularity")

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
# The largest event weight accepted (a play count, a rating, or a strength given with the event). A
# larger one is a unit slip (milliseconds, cents) and would outweigh all of a user's other events in
# the confidence matrix; play counts in the Last.fm set stay below 400,000.
MAX_EVENT_WEIGHT: Final[float] = 1e6
# Event times accepted, in epoch seconds [start, end): 1970-01-01 .. 2100-01-01 UTC. The end catches
# epochs in milliseconds, which would otherwise land thousands of years ahead.
TS_WINDOW_S: Final[tuple[int, int]] = (0, 4_102_444_800)

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

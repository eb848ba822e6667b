"""Synthetic e-commerce interactions with structure that personalisation and session models can find.

Generative model (all draws from one ``numpy.random.Generator(seed)``, in a fixed order):

1. **Categories** ``c = 0..C-1`` have a centre ``m_c ~ N(0, I_d)`` in a ``d = 8`` latent space and a
   Zipf popularity ``rank_c^-0.8``. Each category's ``N_RELATED`` nearest centres are its *related*
   categories (where a session's topic may drift to).
2. **Items** get a category (every category at least one item; the rest ∝ category popularity^0.5),
   a latent vector ``v_i = m_c + N(0, I_d)`` and a Zipf weight ``w_i = rank_i^-1.1`` over a random
   permutation, so popularity is Zipf-like overall and inside each category. Each item's
   ``N_NEIGHBOURS`` nearest items of the same category (in latent space) are its neighbourhood.
3. **Users** have a taste: 1-4 categories drawn ∝ category popularity with Dirichlet(1) weights, a
   latent vector ``u ~ N(0, I_d / d)`` (so users differ *within* a category) and a log-normal activity.
4. **Choosing an item** in category ``c`` for user ``u`` samples ∝ ``w_i^a · exp(u·v_i / τ)``: we draw
   ``N_CANDIDATES`` items ∝ ``w_i^a`` and keep one by Gumbel-max on ``u·v_i / τ`` (sampling-importance
   resampling, so the cost does not grow with category size).
5. **Sessions**: a user has ``1 + Poisson(activity · sessions_per_user_day · n_days)`` sessions, each on
   a uniformly drawn day of the window (so users come back on several days) at a time of day peaking in
   the evening; a user's sessions never overlap and are at least ``SESSION_GAP_S`` apart. A session is a
   burst of 3-30 events: item views a few seconds to minutes apart, plus funnel events (step 6). It
   opens either on an item from one of the user's earlier sessions (``P_REPEAT_START``: repeat
   behaviour) or on a fresh pick in a category drawn from the user's taste; that category is the
   session's *topic*. At each later step the session either drifts to a related category
   (``P_SWITCH``), goes back to an item it showed before (``P_BACKTRACK``), moves to a neighbour of the
   previous item (``P_CHAIN``, weighted ∝ ``w^a exp(u·v/τ)`` over the neighbourhood) or picks afresh in
   its topic. Hence the last few items of a session predict the next one better than the user's
   long-term profile alone.
6. **Funnel**: each view may be followed, on the same item, by a click (probability rising with
   ``u·v``), an add_to_cart and a purchase, seconds apart: views ≫ clicks > add_to_cart > purchase.
   A session is cut at ``MAX_SESSION_EVENTS`` events. ``weight = EVENT_WEIGHTS[event_type]``.
7. **No re-consumption** (``repeats=False``), for rating logs (films, books), where a person rates an
   item once and rarely comes back to it. Steps 1-4 and the session counts and planned lengths are the
   default's (the draws before the walk are shared); the walk is step 5 without repeat starts and without
   backtracking, and a user never meets an item twice, in one session or across sessions. A fresh pick or
   a chain move never lands on an item the user already has: such candidates are taken out of the Gumbel
   draw, so the pick follows the same distribution restricted to new items. A chain move whose whole
   neighbourhood the user has seen becomes a fresh pick; a fresh pick that finds nothing new among
   ``MAX_DRAWS · N_CANDIDATES`` candidates ends the session there, so sessions may be shorter than 3
   steps. A session that cannot open in its topic tries ``MAX_DRAWS - 1`` more topics drawn from the
   user's taste and is dropped if none has anything new (heavy users who have seen their tastes out).
   Each consumed item gives ONE event, ``rating``, instead of step 6's funnel: a film log holds one
   rating per film, and a funnel would put several rows on every (user, item) pair, which is the repeat
   signal this mode removes. Its ``weight`` is 1-5 stars, ``1 + #RATING_CUTS below u·v + N(0, 1)`` (about
   6/11/27/34/22 % of 1..5, as in MovieLens), exactly what ``batch.ingest`` makes of a MovieLens file.
   Ratings are spaced as views are; sessions keep their ids and time order, as the replay protocol needs.
   The catalogue's titles and availability are drawn after the walk, so they differ from the default's
   (its ids and categories do not).

Timestamps lie in the ``n_days`` UTC days ending with ``end_date`` (inclusive). Output is sorted by ts
then event_id; event and session ids carry a short hash of the arguments, so datasets generated with
different arguments never share an id. The same arguments give byte-identical output.

Steps 1-4 are ``batch.synthetic.world``, the walks of steps 5 and 7 ``batch.synthetic.walk``; the rest is
here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batch.dataset import write_parquet_atomic
from batch.synthetic.walk import rank_in_group, walk_sessions, walk_sessions_once
from batch.synthetic.world import World, build_world
from shared.errors import ConfigError
from shared.ids import parse_date
from shared.schemas import EVENT_WEIGHTS

FUNNEL = ("view", "click", "add_to_cart", "purchase")
MIN_SESSION_STEPS = 3
MAX_SESSION_EVENTS = 30
STEP_GEOMETRIC_P = 0.17  # views per session = 2 + Geometric(p), at most 30: mean ≈ 7.9
CLICK_BIAS, CLICK_SLOPE = -2.8, 1.0  # P(click | view) = sigmoid(bias + slope · u·v): ≈ 0.18 overall
P_CART_GIVEN_CLICK = 0.3
P_PURCHASE_GIVEN_CART = 0.45
VIEW_GAP_MEDIAN_S = 25.0
FUNNEL_GAP_S = (2.0, 40.0)
SESSION_GAP_S = 1_800
RATING_CUTS = (-1.75, -0.8, 0.4, 1.8)  # on u·v + N(0, 1): about 6/11/27/34/22 % of 1-5 stars, as MovieLens
DAY_US = 86_400 * 1_000_000


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """``interactions``: one row per event (shared.schemas interaction columns + session_id, event_id),
    sorted by ts then event_id. ``items``: one row per item (item_id, category, title, available)."""

    interactions: pd.DataFrame
    items: pd.DataFrame


def generate(
    n_users: int,
    n_items: int,
    n_days: int,
    seed: int,
    end_date: dt.date,
    n_categories: int = 20,
    *,
    sessions_per_user_day: float = 0.25,
    repeats: bool = True,
) -> SyntheticData:
    """Generate interactions and a catalogue from the model in the module docstring.

    ``sessions_per_user_day`` sets the volume: about ``n_users · (1 + rate · n_days) · 10`` events
    (5k users x 14 days at the default 0.25: ~220k events; every user has at least one session).
    ``repeats=False`` is the no-repeat mode of step 7: one ``rating`` event per item a user consumes, and
    no user meets an item twice. ConfigError on non-positive sizes or more categories than items.
    """
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_days", n_days)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if not 1 <= n_categories <= n_items:
        raise ConfigError(
            f"n_categories must be between 1 and n_items ({n_items}), got {n_categories}: "
            "ask for fewer categories or more items"
        )
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if not sessions_per_user_day >= 0:
        raise ConfigError(f"sessions_per_user_day must be >= 0, got {sessions_per_user_day}")
    end_date = parse_date(end_date)
    rng = np.random.default_rng(seed)
    world = build_world(rng, n_users, n_items, n_categories)
    activity = rng.lognormal(-0.32, 0.8, n_users)  # mean ≈ 1
    n_sessions = 1 + rng.poisson(activity * sessions_per_user_day * n_days)
    sess_user = np.repeat(np.arange(n_users, dtype=np.int64), n_sessions)
    steps = np.minimum(MIN_SESSION_STEPS - 1 + rng.geometric(STEP_GEOMETRIC_P, len(sess_user)), MAX_SESSION_EVENTS)

    if repeats:
        step_item = walk_sessions(rng, world, sess_user, steps)
        step_session = np.repeat(np.arange(len(steps)), steps)
        row_session, row_item, row_type = _funnel(rng, world, sess_user, step_session, step_item)
        types, row_weight = FUNNEL, np.array([EVENT_WEIGHTS[e] for e in FUNNEL])[row_type]
    else:
        row_item, length = walk_sessions_once(rng, world, sess_user, steps)
        sess_user = sess_user[length > 0]  # a session with nothing new to open on never happened
        row_session = np.repeat(np.arange(len(sess_user)), length[length > 0])
        row_type = np.zeros(len(row_item), dtype=np.int64)  # spaced as views are
        types, row_weight = ("rating",), _ratings(rng, world, sess_user[row_session], row_item)
    window_start = pd.Timestamp(end_date - dt.timedelta(days=n_days - 1), tz="UTC").value // 1_000
    ts, session_start = _timestamps(rng, sess_user, row_session, row_type, n_days, window_start)

    mode = "" if repeats else "|once"  # nothing for the default, so its ids stay what they were
    tag = hashlib.sha256(
        f"{seed}|{n_users}|{n_items}|{n_days}|{end_date}|{n_categories}|{sessions_per_user_day}{mode}".encode()
    ).hexdigest()[:8]
    interactions = _interactions_table(
        tag, n_users, n_items, sess_user, row_session, row_item, (types, row_type, row_weight), ts, session_start
    )
    return SyntheticData(interactions=interactions.to_pandas(), items=_items_table(rng, world).to_pandas())


def _interactions_table(
    tag: str,
    n_users: int,
    n_items: int,
    sess_user: np.ndarray,
    row_session: np.ndarray,
    row_item: np.ndarray,
    row_event: tuple[tuple[str, ...], np.ndarray, np.ndarray],
    ts: np.ndarray,
    session_start: np.ndarray,
) -> pa.Table:
    """Rows (n_rows,) in ts order (ties: generation order) with sequential event ids; sessions are
    numbered in order of their start. ``row_event``: event type names, each row's index into them
    (n_rows,) and each row's weight (n_rows,)."""
    types, row_type, row_weight = row_event
    order = np.argsort(ts, kind="stable")
    session_rank = np.empty(len(session_start), dtype=np.int64)
    session_rank[np.argsort(session_start, kind="stable")] = np.arange(len(session_start))
    type_idx = row_type[order]
    return pa.table(
        {
            "user_id": _ids("u", n_users, 6).take(pa.array(sess_user[row_session[order]])),
            "item_id": _ids("i", n_items, 5).take(pa.array(row_item[order])),
            "event_type": pa.array(types).take(pa.array(type_idx)),
            "ts": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
            "weight": pa.array(row_weight[order]),
            "session_id": _ids(f"{tag}-s", len(session_start), 7).take(pa.array(session_rank[row_session[order]])),
            "event_id": _ids(f"{tag}-e", len(ts), 8),
        }
    )


def write_synthetic(data: SyntheticData, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> dict[str, Path]:
    """Write ``interactions.<fmt>`` and ``items.parquet`` into ``out_dir``, each atomically.

    CSV timestamps are ISO-8601 in UTC (``2024-01-31 18:02:11.250000Z``), which batch.ingest reads back.
    Returns ``{"interactions": path, "items": path}``.
    """
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"format must be 'parquet' or 'csv', got {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"interactions": out_dir / f"interactions.{fmt}", "items": out_dir / "items.parquet"}
    interactions = pa.Table.from_pandas(data.interactions, preserve_index=False)
    if fmt == "parquet":
        write_parquet_atomic(interactions, paths["interactions"])
    else:
        tmp = out_dir / f".interactions.csv.tmp-{uuid.uuid4().hex[:8]}"
        try:
            pacsv.write_csv(interactions, tmp)
            os.replace(tmp, paths["interactions"])
        finally:
            tmp.unlink(missing_ok=True)
    write_parquet_atomic(pa.Table.from_pandas(data.items, preserve_index=False), paths["items"])
    return paths


def _ids(prefix: str, n: int, min_width: int) -> pa.Array:
    """``prefix`` + zero-padded 0..n-1, e.g. ``u000123``; widened when n needs more digits."""
    width = max(min_width, len(str(max(n - 1, 0))))
    digits = pc.utf8_lpad(pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _funnel(
    rng: np.random.Generator, world: World, sess_user: np.ndarray, step_session: np.ndarray, step_item: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand each view into view [, click [, add_to_cart [, purchase]]] on the same item.

    Returns per event row (n_rows,): session index, item index, funnel stage (index into FUNNEL); rows
    stay grouped by session and each session is cut at MAX_SESSION_EVENTS rows.
    """
    affinity = world.affinity(sess_user[step_session], step_item)
    click = rng.random(len(step_item)) < 1.0 / (1.0 + np.exp(-(CLICK_BIAS + CLICK_SLOPE * affinity)))
    cart = click & (rng.random(len(step_item)) < P_CART_GIVEN_CLICK)
    buy = cart & (rng.random(len(step_item)) < P_PURCHASE_GIVEN_CART)
    n_rows = 1 + click.astype(np.int64) + cart + buy
    row_step = np.repeat(np.arange(len(step_item)), n_rows)
    row_type = np.arange(len(row_step)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    row_session = step_session[row_step]
    keep = rank_in_group(row_session) < MAX_SESSION_EVENTS
    return row_session[keep], step_item[row_step[keep]], row_type[keep]


def _ratings(rng: np.random.Generator, world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Stars 1-5 (float64 (n,)) each user gives each item: ``1 + #RATING_CUTS below u·v + N(0, 1)``."""
    latent = world.affinity(users, items) + rng.normal(size=len(items))
    return 1.0 + np.searchsorted(np.array(RATING_CUTS), latent)


def _timestamps(
    rng: np.random.Generator,
    sess_user: np.ndarray,
    row_session: np.ndarray,
    row_type: np.ndarray,
    n_days: int,
    window_start_us: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Event times (n_rows,) and session start times (n_sessions,), int64 µs since the epoch, UTC.

    Views are a log-normal few seconds to minutes apart, funnel follow-ups 2-40 s after; sessions start
    on a random day of the window, mostly in the evening, and are pushed later where they would overlap
    the same user's previous session.
    """
    n_rows, n_sessions = len(row_session), len(sess_user)
    view_gap = np.clip(rng.lognormal(np.log(VIEW_GAP_MEDIAN_S), 0.9, n_rows), 2.0, 900.0)
    gap = np.where(row_type == 0, view_gap, rng.uniform(*FUNNEL_GAP_S, n_rows))
    gap = np.round(gap * 1e6).astype(np.int64)
    first = np.flatnonzero(rank_in_group(row_session) == 0)  # every session has rows, in session order
    gap[first] = 0
    offset = _group_exclusive_cumsum(gap, row_session) + gap  # time since the session's first event
    duration = offset[np.concatenate((first[1:], [n_rows])) - 1]

    evening = rng.random(n_sessions) < 0.7
    hour = np.where(evening, rng.normal(20.0, 3.0, n_sessions) % 24.0, rng.uniform(0.0, 24.0, n_sessions))
    day = rng.integers(0, n_days, n_sessions)
    start = window_start_us + day * DAY_US + np.round(hour * 3.6e9).astype(np.int64)
    start = start[np.lexsort((start, sess_user))]  # a user's k-th session is their k-th in time
    # Space a user's sessions SESSION_GAP_S apart, keeping their order: forwards, pushing later ones
    # later (s'_k = P_k + max_{j<=k}(s_j - P_j), P_k = Σ_{j<k} space_j); then backwards, pulling the ones
    # that would end after the window earlier (s''_k = min_{j>=k}(s'_j + R_j, end + gap) - R_k, R_k = Σ_{j>=k}).
    space = duration + SESSION_GAP_S * 1_000_000
    before = _group_exclusive_cumsum(space, sess_user)
    after = _group_exclusive_cumsum(space[::-1], sess_user[::-1])[::-1] + space
    forward = pd.Series(start - before).groupby(sess_user).cummax().to_numpy() + before
    window_end = window_start_us + n_days * DAY_US - 1
    latest = pd.Series((forward + after)[::-1]).groupby(sess_user[::-1]).cummin().to_numpy()[::-1]
    start = np.maximum(np.minimum(latest, window_end + SESSION_GAP_S * 1_000_000) - after, window_start_us)
    return start[row_session] + offset, start


def _group_exclusive_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Sum of the earlier values of the same contiguous group, for each element (n,)."""
    total = np.cumsum(values) - values
    first = np.flatnonzero(rank_in_group(group) == 0)
    return total - np.repeat(total[first], np.diff(np.concatenate((first, [len(group)]))))


_ADJECTIVES = ("Amber", "Bold", "Classic", "Daily", "Eco", "Fresh", "Grand", "Handy", "Ivory", "Jolly")
_NOUNS = ("Lamp", "Mug", "Jacket", "Chair", "Kettle", "Backpack", "Sneaker", "Novel", "Speaker", "Candle")


def _items_table(rng: np.random.Generator, world: World) -> pa.Table:
    """The catalogue: item_id, category (``c07``), a made-up title, available (~97% True)."""
    n = len(world.item_cat)
    words = pc.binary_join_element_wise(
        pa.array(_ADJECTIVES).take(pa.array(rng.integers(0, len(_ADJECTIVES), n))),
        pa.array(_NOUNS).take(pa.array(rng.integers(0, len(_NOUNS), n))),
        " ",
    )
    numbers = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
    return pa.table(
        {
            "item_id": _ids("i", n, 5),
            "category": _ids("c", world.n_categories, 2).take(pa.array(world.item_cat)),
            "title": pc.binary_join_element_wise(words, numbers, " "),
            "available": pa.array(rng.random(n) < 0.97),
        }
    )

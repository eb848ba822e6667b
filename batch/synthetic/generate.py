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

Timestamps lie in the ``n_days`` UTC days ending with ``end_date`` (inclusive). Output is sorted by ts
then event_id; event and session ids carry a short hash of the arguments, so datasets generated with
different arguments never share an id. The same arguments give byte-identical output.
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
from scipy.spatial import cKDTree

from batch.dataset import write_parquet_atomic
from shared.errors import ConfigError
from shared.ids import parse_date
from shared.schemas import EVENT_WEIGHTS

FUNNEL = ("view", "click", "add_to_cart", "purchase")
MIN_SESSION_STEPS = 3
MAX_SESSION_EVENTS = 30
STEP_GEOMETRIC_P = 0.17  # views per session = 2 + Geometric(p), at most 30: mean ≈ 7.9
P_REPEAT_START = 0.3
P_SWITCH = 0.1
P_BACKTRACK = 0.05
P_CHAIN = 0.75
CLICK_BIAS, CLICK_SLOPE = -2.8, 1.0  # P(click | view) = sigmoid(bias + slope · u·v): ≈ 0.18 overall
P_CART_GIVEN_CLICK = 0.3
P_PURCHASE_GIVEN_CART = 0.45
VIEW_GAP_MEDIAN_S = 25.0
FUNNEL_GAP_S = (2.0, 40.0)
SESSION_GAP_S = 1_800
DAY_US = 86_400 * 1_000_000


LATENT_DIM = 8
CATEGORY_ZIPF, ITEM_ZIPF = 0.8, 1.1  # popularity weight = rank^-exponent
POP_POWER = 1.0  # a in w^a · exp(u·v/τ)
TEMPERATURE = 0.7  # τ
N_RELATED, N_NEIGHBOURS, N_CANDIDATES, MAX_TASTES = 3, 10, 16, 4


@dataclasses.dataclass(frozen=True)
class _World:
    """The latent state behind the data (d = LATENT_DIM, C categories, I items, U users)."""

    n_categories: int
    item_cat: np.ndarray  # int64 (I,)
    item_vec: np.ndarray  # float64 (d, I): transposed so one dimension is one contiguous row
    pop_logit: np.ndarray  # float64 (I,): a · log w_i
    cat_items: np.ndarray  # int64 (I,): item indices sorted by category
    cat_cdf: np.ndarray  # float64 (I,): category index + within-category CDF of w^a, aligned with cat_items
    neighbours: np.ndarray  # int64 (I, N_NEIGHBOURS): nearest items of the same category
    related: np.ndarray  # int64 (C, <= N_RELATED): nearest other categories
    taste_cat: np.ndarray  # int64 (U, <= MAX_TASTES)
    taste_cdf: np.ndarray  # float64 (U, <= MAX_TASTES): cumulative taste weights, 1.0 in padding slots
    user_vec: np.ndarray  # float64 (d, U)

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``u·v`` (float64) for users (n,) and items (n,) or (n, m); same shape as items.

        Summed one latent dimension at a time with plain elementwise ops (no BLAS, no SIMD reductions),
        so the result, and every argmax taken on it, is the same on every CPU.
        """
        out = np.zeros(items.shape)
        uu = users.reshape(users.shape + (1,) * (items.ndim - 1))
        for k in range(self.user_vec.shape[0]):
            out += self.user_vec[k][uu] * self.item_vec[k][items]
        return out

    def taste_topic(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """A category (n,) per user drawn from that user's taste mixture."""
        slot = (rng.random(len(users))[:, None] >= self.taste_cdf[users]).sum(axis=1)
        return self.taste_cat[users, np.minimum(slot, self.taste_cat.shape[1] - 1)]

    def pick_in_category(self, rng: np.random.Generator, users: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """One item (n,) per (user, category), ∝ w^a · exp(u·v/τ) by resampling N_CANDIDATES draws ∝ w^a."""
        query = cats[:, None] + rng.random((len(users), N_CANDIDATES)) * (1.0 - 1e-9)
        pos = np.minimum(np.searchsorted(self.cat_cdf, query, side="right"), len(self.cat_items) - 1)
        return self._choose(rng, users, self.cat_items[pos], 0.0)

    def pick_neighbour(self, rng: np.random.Generator, users: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """One item (n,) from each previous item's neighbourhood, ∝ w^a · exp(u·v/τ)."""
        cand = self.neighbours[prev]
        return self._choose(rng, users, cand, self.pop_logit[cand])

    def _choose(
        self, rng: np.random.Generator, users: np.ndarray, cand: np.ndarray, prior: np.ndarray | float
    ) -> np.ndarray:
        """Gumbel-max over candidates (n, m): one item (n,) ∝ exp(prior + u·v/τ)."""
        score = self.affinity(users, cand) / TEMPERATURE + prior + rng.gumbel(size=cand.shape)
        return cand[np.arange(len(cand)), np.argmax(score, axis=1)]


def _zipf_logit(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """log of Zipf weights rank^-exponent (n,), ranks a random permutation of 1..n."""
    return -exponent * np.log(rng.permutation(n) + 1.0)


def _build_world(rng: np.random.Generator, n_users: int, n_items: int, n_categories: int) -> _World:
    """Draw categories, items, neighbourhoods and users (steps 1-3 of the module docstring)."""
    c, d = n_categories, LATENT_DIM
    cat_logit = _zipf_logit(rng, c, CATEGORY_ZIPF)
    centre = rng.normal(size=(c, d))
    dist = ((centre[:, None, :] - centre[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    related = np.argsort(dist, axis=1, kind="stable")[:, : min(N_RELATED, c - 1)] if c > 1 else np.zeros((1, 1), int)

    size_p = np.exp(0.5 * cat_logit) / np.exp(0.5 * cat_logit).sum()
    item_cat = rng.permutation(np.concatenate((np.arange(c), rng.choice(c, n_items - c, p=size_p))))
    item_vec = centre[item_cat] + rng.normal(size=(n_items, d))
    pop_logit = POP_POWER * _zipf_logit(rng, n_items, ITEM_ZIPF)
    cat_items = np.argsort(item_cat, kind="stable")
    sorted_cat = item_cat[cat_items]
    weight = np.exp(pop_logit[cat_items])
    bounds = np.searchsorted(sorted_cat, np.arange(c + 1))
    cdf = np.cumsum(weight)
    base = np.concatenate(([0.0], cdf))[bounds[:-1]]
    total = cdf[bounds[1:] - 1] - base
    within = (cdf - np.repeat(base, np.diff(bounds))) / np.repeat(total, np.diff(bounds))
    within[bounds[1:] - 1] = 1.0
    neighbours = np.empty((n_items, N_NEIGHBOURS), dtype=np.int64)
    for k in range(c):
        members = cat_items[bounds[k] : bounds[k + 1]]
        if len(members) == 1:
            neighbours[members] = members[0]
            continue
        _, nn = cKDTree(item_vec[members]).query(item_vec[members], k=min(N_NEIGHBOURS + 1, len(members)))
        nn = members[nn[:, 1:]]  # column 0 is the item itself
        neighbours[members] = nn[:, np.arange(N_NEIGHBOURS) % nn.shape[1]]

    kt = min(MAX_TASTES, c)
    keys = cat_logit[None, :] + rng.gumbel(size=(n_users, c))
    taste_cat = np.argsort(-keys, axis=1, kind="stable")[:, :kt]  # kt categories ∝ popularity, no repeats
    n_tastes = 1 + rng.binomial(kt - 1, 0.4, n_users)
    mix = rng.gamma(1.0, size=(n_users, kt)) * (np.arange(kt)[None, :] < n_tastes[:, None])
    taste_cdf = np.cumsum(mix, axis=1) / mix.sum(axis=1, keepdims=True)
    taste_cdf[:, -1] = 1.0
    return _World(
        n_categories=c,
        item_cat=item_cat,
        item_vec=item_vec.T.copy(),
        pop_logit=pop_logit,
        cat_items=cat_items,
        cat_cdf=sorted_cat + within,
        neighbours=neighbours,
        related=related,
        taste_cat=taste_cat,
        taste_cdf=taste_cdf,
        user_vec=(rng.normal(size=(n_users, d)) / np.sqrt(d)).T.copy(),
    )


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
) -> SyntheticData:
    """Generate interactions and a catalogue from the model in the module docstring.

    ``sessions_per_user_day`` sets the volume: about ``n_users · (1 + rate · n_days) · 10`` events
    (5k users x 14 days at the default 0.25: ~220k events; every user has at least one session).
    ConfigError on non-positive sizes or more categories than items.
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
    world = _build_world(rng, n_users, n_items, n_categories)
    activity = rng.lognormal(-0.32, 0.8, n_users)  # mean ≈ 1
    n_sessions = 1 + rng.poisson(activity * sessions_per_user_day * n_days)
    sess_user = np.repeat(np.arange(n_users, dtype=np.int64), n_sessions)
    steps = np.minimum(MIN_SESSION_STEPS - 1 + rng.geometric(STEP_GEOMETRIC_P, len(sess_user)), MAX_SESSION_EVENTS)

    step_item = _walk_sessions(rng, world, sess_user, steps)
    step_session = np.repeat(np.arange(len(steps)), steps)
    row_session, row_item, row_type = _funnel(rng, world, sess_user, step_session, step_item)
    window_start = pd.Timestamp(end_date - dt.timedelta(days=n_days - 1), tz="UTC").value // 1_000
    ts, session_start = _timestamps(rng, sess_user, row_session, row_type, n_days, window_start)

    tag = hashlib.sha256(
        f"{seed}|{n_users}|{n_items}|{n_days}|{end_date}|{n_categories}|{sessions_per_user_day}".encode()
    ).hexdigest()[:8]
    interactions = _interactions_table(
        tag, n_users, n_items, sess_user, row_session, row_item, row_type, ts, session_start
    )
    return SyntheticData(interactions=interactions.to_pandas(), items=_items_table(rng, world).to_pandas())


def _interactions_table(
    tag: str,
    n_users: int,
    n_items: int,
    sess_user: np.ndarray,
    row_session: np.ndarray,
    row_item: np.ndarray,
    row_type: np.ndarray,
    ts: np.ndarray,
    session_start: np.ndarray,
) -> pa.Table:
    """Rows (n_rows,) in ts order (ties: generation order) with sequential event ids; sessions are
    numbered in order of their start."""
    order = np.argsort(ts, kind="stable")
    session_rank = np.empty(len(session_start), dtype=np.int64)
    session_rank[np.argsort(session_start, kind="stable")] = np.arange(len(session_start))
    type_idx = row_type[order]
    return pa.table(
        {
            "user_id": _ids("u", n_users, 6).take(pa.array(sess_user[row_session[order]])),
            "item_id": _ids("i", n_items, 5).take(pa.array(row_item[order])),
            "event_type": pa.array(FUNNEL).take(pa.array(type_idx)),
            "ts": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
            "weight": pa.array(np.array([EVENT_WEIGHTS[e] for e in FUNNEL])[type_idx]),
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


def _walk_sessions(rng: np.random.Generator, world: _World, sess_user: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Item of every step (n_steps,), laid out session after session, ``steps[s]`` items for session s.

    ``sess_user`` (n_sessions,) is sorted, and a user's sessions are in time order, so the user's k-th
    session is index ``first + k``. Wave k walks every user's k-th session together, which lets a session
    open on an item from the same user's earlier sessions (repeat behaviour).
    """
    rank = _rank_in_group(sess_user)
    offsets = np.cumsum(steps) - steps
    item = np.empty(int(steps.sum()), dtype=np.int64)
    for k in range(int(rank.max(initial=-1)) + 1):
        wave = np.flatnonzero(rank == k)
        _walk_wave(rng, world, k, wave[np.argsort(-steps[wave], kind="stable")], sess_user, steps, offsets, item)
    return item


def _walk_wave(
    rng: np.random.Generator,
    world: _World,
    k: int,
    sessions: np.ndarray,
    sess_user: np.ndarray,
    steps: np.ndarray,
    offsets: np.ndarray,
    item: np.ndarray,
) -> None:
    """Fill ``item`` for ``sessions`` (every user's k-th session, longest first), one vectorised step at a
    time; the sessions still running at step t are then a prefix."""
    users, lengths, offs = sess_user[sessions], steps[sessions], offsets[sessions]
    n = len(sessions)
    topic = world.taste_topic(rng, users)
    prev = np.empty(n, dtype=np.int64)
    repeat = np.flatnonzero(rng.random(n) < (P_REPEAT_START if k > 0 else 0.0))
    if len(repeat):  # open on an item of one of this user's sessions 0..k-1; its category is the topic
        earlier = sessions[repeat] - k + rng.integers(0, k, len(repeat))
        prev[repeat] = item[offsets[earlier] + (rng.random(len(repeat)) * steps[earlier]).astype(np.int64)]
        topic[repeat] = world.item_cat[prev[repeat]]
    fresh = np.setdiff1d(np.arange(n), repeat, assume_unique=True)
    prev[fresh] = world.pick_in_category(rng, users[fresh], topic[fresh])
    item[offs] = prev
    for t in range(1, int(lengths[0])):
        a = int(np.searchsorted(-lengths, -t, side="left"))  # sessions with length > t
        u, tp = users[:a], topic[:a]
        r, r_chain = rng.random(a), rng.random(a)
        p_back = P_BACKTRACK if t >= 2 else 0.0
        switch = r < P_SWITCH
        back = ~switch & (r < P_SWITCH + p_back)
        chain = ~switch & ~back & (r_chain < P_CHAIN)
        nxt = np.empty(a, dtype=np.int64)
        idx = np.flatnonzero(switch)
        tp[idx] = world.related[tp[idx], rng.integers(0, world.related.shape[1], len(idx))]
        idx = np.flatnonzero(~chain & ~back)
        nxt[idx] = world.pick_in_category(rng, u[idx], tp[idx])
        idx = np.flatnonzero(chain)
        nxt[idx] = world.pick_neighbour(rng, u[idx], prev[idx])
        if t >= 2:  # an item from steps 0..t-2 (t-1 is prev itself)
            idx = np.flatnonzero(back)
            nxt[idx] = item[offs[idx] + rng.integers(0, t - 1, len(idx))]
            tp[idx] = world.item_cat[nxt[idx]]
        item[offs[:a] + t] = nxt
        prev[:a] = nxt


def _funnel(
    rng: np.random.Generator, world: _World, sess_user: np.ndarray, step_session: np.ndarray, step_item: np.ndarray
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
    keep = _rank_in_group(row_session) < MAX_SESSION_EVENTS
    return row_session[keep], step_item[row_step[keep]], row_type[keep]


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal, contiguous group values."""
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    lengths = np.diff(np.concatenate((starts, [len(group)])))
    return np.arange(len(group)) - np.repeat(starts, lengths)


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
    first = np.flatnonzero(_rank_in_group(row_session) == 0)  # every session has rows, in session order
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
    first = np.flatnonzero(_rank_in_group(group) == 0)
    return total - np.repeat(total[first], np.diff(np.concatenate((first, [len(group)]))))


_ADJECTIVES = ("Amber", "Bold", "Classic", "Daily", "Eco", "Fresh", "Grand", "Handy", "Ivory", "Jolly")
_NOUNS = ("Lamp", "Mug", "Jacket", "Chair", "Kettle", "Backpack", "Sneaker", "Novel", "Speaker", "Candle")


def _items_table(rng: np.random.Generator, world: _World) -> pa.Table:
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

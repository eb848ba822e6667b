"""Next-item session replay through the online ranking (``online.ranking.rank``, the API's code path).

Protocol. Held-out sessions (events that happen after the model's training window) are replayed in
their order (``position``). Consecutive events on the same item (a view and its click, add_to_cart,
purchase) form one *step*; a session of ``n`` steps gives targets ``t = 1..n-1``: the context is every
event before step ``t`` (funnel events kept, so their weights count as online) and the target is step
``t``'s item. Each target asks four recommenders for ``max(ks)`` items:

- ``popularity``: the version's global popular list minus the items of the context (no ranking code);
- ``batch_only``: ``rank(model, RequestFeatures(user_record, []))``, the precomputed tier. It does not
  depend on the session, so it is computed once per session. A user unknown to the version has no
  record and is served the popular list, exactly as the API falls back;
- ``session_only``: ``rank(model, RequestFeatures(None, context))``, an anonymous visitor;
- ``hybrid``: ``rank(model, RequestFeatures(user_record, context))``, what the API serves a known user
  with a live session (for an unknown user it is the session path, as in the API).

A target is *relevant* = {target item}, so HitRate@k = Recall@k and MRR@k is the reciprocal rank
(``batch.metrics``). Targets that repeat an item already in the context are skipped (the
ranking excludes session items by design, so no variant could hit them), as are targets in the
user's training history when ``exclude_seen`` is on (the API never serves those either) and targets
unknown to the model; each count is reported. Every request is built as the API reads it after the
context was posted (``request_features``): the newest ``session_max_events`` events, and every
session item in the session's seen set. Popularity percentiles for PopBias come from the version's
recency-decayed popularity (``ItemBundle.popularity``), the only popularity the serving model has.

Seen share. For every variant, the share of its served top-10 lists that contain an item the user
already had: one of their training history (``history_of``, e.g. every item of the run's training
window; by default the version's published seen set) or, for the variants asked with the session, of
the session so far. With ``exclude_seen`` on it is 0 for every tier that knows the user;
``session_only`` is anonymous by design (the API cannot know whose history to remove), so its share
shows what exclusion prevents. ``published_seen_share_at_10`` measures against the version's
published seen sets instead (what the API is told; capped by ``HYBRIDREC_SEEN_MAX_ITEMS``): 0 there and
above 0 against the whole history means the cap, not the ranking, lets old items back in.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from batch.metrics import mean_metrics, popularity_percentile
from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from lab.serving import ServingModel
from lab.stats import paired_difference
from online.blend import BlendParams
from online.ranking import rank
from online.reranker import LinearReranker
from shared.errors import DataValidationError

VARIANTS = ("popularity", "batch_only", "session_only", "hybrid")
ALL_VARIANTS = (*VARIANTS, "reranked")  # reranked: only when a re-ranker is given
# HitRate@10 differences reported with a session-bootstrap 95% interval (lab.stats)
PAIRED_COMPARISONS = (("hybrid", "batch_only"), ("hybrid", "session_only"), ("reranked", "hybrid"))
RANKED_VARIANTS = ("batch_only", "session_only", "hybrid")
POSITION_CAP = 10  # positions >= this share one bucket, "10+"
REQUIRED_COLUMNS = ("session_id", "user_id", "item_id", "event_type", "position")


@dataclass(frozen=True)
class _Targets:
    """Replay outcome: one row per scored target."""

    ranked: dict[str, np.ndarray]  # variant -> int64 (n_targets, max_k), -1 padded
    targets: np.ndarray  # int64 (n_targets,) item index of the next item
    positions: np.ndarray  # int64 (n_targets,) t, the number of steps seen before the target
    sessions: np.ndarray  # int64 (n_targets,) ordinal of the target's session
    strategies: dict[str, Counter]  # variant -> strategy name -> count
    had_seen: dict[str, np.ndarray]  # variant -> bool (n_targets,): its top-10 holds an item the user had
    had_published: dict[str, np.ndarray]  # the same against the version's published seen set only
    skipped_repeat: int
    skipped_history: int
    skipped_unknown: int
    unknown_user_sessions: int


def sample_sessions(
    events: pd.DataFrame, max_sessions: int | None, seed: int, max_targets: int | None = None
) -> pd.DataFrame:
    """Events of a seeded sample of at most ``max_sessions`` sessions with >= 2 steps, sorted for replay.

    The sample is ``default_rng(seed).choice`` over the sorted session ids, so it does not depend on row
    order. ``max_targets`` also bounds the replay's work: sessions are taken in a seeded random order
    until their steps after the first (targets before any skip) reach it, the last one whole, so a log
    of long sessions (one per user and period) costs about as much as one of short ones. Rows come
    back sorted by (session_id, position).
    """
    missing = set(REQUIRED_COLUMNS) - set(events.columns)
    if missing:
        raise DataValidationError(f"replay sessions lack column(s) {sorted(missing)}")
    ordered = events.sort_values(["session_id", "position"], kind="stable")
    change = ordered["item_id"].ne(ordered.groupby("session_id")["item_id"].shift())
    steps = change.groupby(ordered["session_id"]).sum()
    ids = np.sort(steps[steps >= 2].index.to_numpy(dtype=object))
    if max_sessions is not None and len(ids) > max_sessions:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=max_sessions, replace=False))
    if max_targets is not None:
        order = np.random.default_rng(seed).permutation(len(ids))
        reached = np.cumsum(steps.loc[ids[order]].to_numpy() - 1) >= max_targets
        take = int(np.argmax(reached)) + 1 if reached.any() else len(ids)
        ids = np.sort(ids[order[:take]])
    return ordered[ordered["session_id"].isin(set(ids))].reset_index(drop=True)


def _session_events(frame: pd.DataFrame) -> list[SessionEvent]:
    has_ts = "ts" in frame.columns
    out = []
    for row in frame.itertuples(index=False):
        ts = pd.Timestamp(row.ts).timestamp() if has_ts else float(row.position)
        out.append(
            SessionEvent(
                item_id=str(row.item_id),
                event_type=str(row.event_type),
                ts=ts,
                event_id=f"{row.session_id}:{row.position}",
                user_id=str(row.user_id),
                session_id=str(row.session_id),
            )
        )
    return out


def _step_starts(events: Sequence[SessionEvent]) -> list[int]:
    """Index of the first event of each step (a run of consecutive events on one item)."""
    return [i for i, ev in enumerate(events) if i == 0 or ev.item_id != events[i - 1].item_id]


def _indices(serving: ServingModel, item_ids: Sequence[str], width: int) -> np.ndarray:
    index = serving.model.bundle.item_index
    out = np.full(width, -1, dtype=np.int64)
    got = [index[i] for i in item_ids if i in index][:width]
    out[: len(got)] = got
    return out


def _popular(serving: ServingModel, seen: set[int], width: int) -> np.ndarray:
    out = np.full(width, -1, dtype=np.int64)
    picks = [j for j in serving.model.popular(None).tolist() if j not in seen][:width]
    out[: len(picks)] = picks
    return out


@dataclass(frozen=True)
class Target:
    """One next-item question of the replay: ``context`` is every event before step ``position``."""

    session_id: str
    user: UserRecord | None  # the session user's record in this version; None = unknown user
    context: list[SessionEvent]
    seen: set[int]  # item indices of the context
    target: int  # item index of the next step's item
    position: int  # t, the number of steps seen before the target

    def request(self, user: UserRecord | None, params: BlendParams) -> RequestFeatures:
        """What the API reads for this step: the newest ``session_max_events`` events of the session
        list and every item of the session in its seen set."""
        return request_features(user, self.context, params)


def request_features(user: UserRecord | None, context: list[SessionEvent], params: BlendParams) -> RequestFeatures:
    """``RequestFeatures`` exactly as the API's store read returns them after ``context`` was posted."""
    return RequestFeatures(user, context[-params.session_max_events :], frozenset(e.item_id for e in context))


@dataclass
class TargetCounts:
    sessions: int = 0
    skipped_repeat: int = 0
    skipped_history: int = 0
    skipped_unknown: int = 0
    unknown_user_sessions: int = 0


def iter_targets(
    serving: ServingModel, sessions: pd.DataFrame, params: BlendParams, counts: TargetCounts | None = None
) -> Iterator[tuple[list[SessionEvent], UserRecord | None, list[Target]]]:
    """Per session (as ``sample_sessions`` returns them, in session-id order): its events, its user's
    record and its scorable targets. Skips are counted into ``counts``; ``lab.train_reranker``
    trains on exactly these targets, the replay scores them.

    A target no request could be served is skipped: an item unknown to the version, one already in
    the session (the API never serves those), and, when ``params.exclude_seen``, one in the user's
    training history (the user's seen set)."""
    counts = counts if counts is not None else TargetCounts()
    index = serving.model.bundle.item_index
    for session_id, frame in sessions.groupby("session_id", sort=True):
        events = _session_events(frame)
        user = serving.users.get(events[0].user_id or "")
        history = set(user.seen.tolist()) if user is not None and params.exclude_seen else set()
        counts.sessions += 1
        counts.unknown_user_sessions += user is None
        starts = _step_starts(events)
        found = []
        for t in range(1, len(starts)):
            context = events[: starts[t]]
            seen = {index[e.item_id] for e in context if e.item_id in index}
            target = index.get(events[starts[t]].item_id)
            if target is None:
                counts.skipped_unknown += 1
            elif target in seen:
                counts.skipped_repeat += 1
            elif target in history:
                counts.skipped_history += 1
            else:
                found.append(Target(str(session_id), user, context, seen, target, t))
        yield events, user, found


def replay_targets(
    serving: ServingModel,
    sessions: pd.DataFrame,
    max_k: int,
    params: BlendParams,
    progress: Callable[[int], None] | None = None,
    variants: Sequence[str] = VARIANTS,
    reranker: LinearReranker | None = None,
    history_of: Mapping[str, frozenset[int]] | None = None,
) -> _Targets:
    """Run ``variants`` (default: all but ``reranked``) on every target of ``sessions`` (as
    ``sample_sessions`` returns them). ``reranked`` needs ``reranker``: it is ``hybrid`` with the
    learned re-ranker passed to ``rank``, as the API routes a session request within its budget.
    ``history_of``: user_id -> item indices the user had before the replay, for the seen share
    (default: the version's published seen sets).

    Targets and skips do not depend on ``variants``; asking for fewer only saves ranking calls.
    """
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise ValueError(f"unknown replay variant(s) {sorted(unknown)}; known: {ALL_VARIANTS}")
    if "reranked" in variants and reranker is None:
        raise ValueError("the reranked variant needs a re-ranker")
    model = serving.model
    rows: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    targets: list[int] = []
    positions: list[int] = []
    session_of: list[int] = []
    strategies: dict[str, Counter] = {v: Counter() for v in (*RANKED_VARIANTS, "reranked") if v in rows}
    had_seen: dict[str, list[bool]] = {v: [] for v in variants}
    had_published: dict[str, list[bool]] = {v: [] for v in variants}
    counts = TargetCounts()
    for s, (events, user, found) in enumerate(iter_targets(serving, sessions, params, counts)):
        batch = rank(model, RequestFeatures(user, []), max_k, None, params)
        batch_row = _indices(serving, batch.item_ids, max_k)
        history = set(user.seen.tolist()) if user is not None and params.exclude_seen else set()
        published = frozenset(user.seen.tolist()) if user is not None else frozenset()
        had_before = published if history_of is None else history_of.get(events[0].user_id or "", frozenset())
        for q in found:
            served = {"batch_only": batch}
            if "session_only" in rows:
                served["session_only"] = rank(model, q.request(None, params), max_k, None, params)
            if "hybrid" in rows:
                served["hybrid"] = rank(model, q.request(user, params), max_k, None, params)
            if "reranked" in rows:
                served["reranked"] = rank(model, q.request(user, params), max_k, None, params, reranker)
            if "popularity" in rows:
                rows["popularity"].append(_popular(serving, q.seen | history, max_k))
            for name, ranked in served.items():
                if name in rows:
                    rows[name].append(batch_row if name == "batch_only" else _indices(serving, ranked.item_ids, max_k))
                    strategies[name][ranked.strategy] += 1
            for name in variants:  # batch-only is asked without the session: only the history counts there
                top = rows[name][-1][:10].tolist()
                context = frozenset() if name == "batch_only" else q.seen
                had_seen[name].append(not (had_before | context).isdisjoint(top))
                had_published[name].append(not (published | context).isdisjoint(top))
            targets.append(q.target)
            positions.append(q.position)
            session_of.append(s)
        if progress is not None:
            progress(1)
    empty = np.empty((0, max_k), dtype=np.int64)
    return _Targets(
        ranked={v: np.vstack(r) if r else empty for v, r in rows.items()},
        targets=np.asarray(targets, dtype=np.int64),
        positions=np.asarray(positions, dtype=np.int64),
        sessions=np.asarray(session_of, dtype=np.int64),
        strategies=strategies,
        had_seen={v: np.asarray(h, dtype=bool) for v, h in had_seen.items()},
        had_published={v: np.asarray(h, dtype=bool) for v, h in had_published.items()},
        skipped_repeat=counts.skipped_repeat,
        skipped_history=counts.skipped_history,
        skipped_unknown=counts.skipped_unknown,
        unknown_user_sessions=counts.unknown_user_sessions,
    )


def position_label(t: int) -> str:
    """Bucket label of target position ``t`` (steps seen before the target): "1".."9", "10+"."""
    return f"{POSITION_CAP}+" if t >= POSITION_CAP else str(t)


def evaluate_replay(
    serving: ServingModel,
    events: pd.DataFrame,
    ks: Sequence[int] = (10, 20, 50),
    seed: int = 42,
    max_sessions: int | None = 3_000,
    params: BlendParams | None = None,
    progress: Callable[[int], None] | None = None,
    variants: Sequence[str] = VARIANTS,
    reranker: LinearReranker | None = None,
    history_of: Mapping[str, frozenset[int]] | None = None,
    max_targets: int | None = None,
) -> dict:
    """Replay a seeded sample of ``events``' sessions (see the module docstring); a JSON-ready dict::

        {"protocol": {...}, "data": {"n_sessions", "n_targets", "n_skipped_repeat", "n_skipped_unknown_item",
         "n_sessions_unknown_user"}, "variants": {variant: {"<k>": {metric: float, "n_lists": int}}},
         "hit_rate_at_10_by_position": {variant: {"1".."10+": float}}, "n_by_position": {label: int},
         "strategies": {variant: {strategy: count}}, "hybrid_over_batch_hit_rate_at_10": float,
         "paired_hit_rate_at_10": {"<a>_vs_<b>": lab.stats.paired_difference(...)},
         "seen_share_at_10": {variant: float}, "published_seen_share_at_10": {variant: float},
         "timings_s": {"replay": float}}

    ``events``: session_id, user_id, item_id, event_type, position (+ optional ts); ``progress`` is
    called with 1 after each session. ``variants`` (default: all four) limits the variants ranked and
    reported; the hybrid/batch ratio is nan unless both are among them. ``history_of`` (user_id -> item
    indices) defines the seen share's history; ``max_targets`` bounds the sample (``sample_sessions``).
    """
    ks = sorted({int(k) for k in ks})
    params = params or BlendParams()
    sessions = sample_sessions(events, max_sessions, seed, max_targets)
    start = time.perf_counter()
    out = replay_targets(serving, sessions, ks[-1], params, progress, variants, reranker, history_of)
    elapsed = time.perf_counter() - start
    if len(out.targets) == 0:
        raise DataValidationError("no replayable target: every session is too short or its items are unknown")
    n_items = len(serving.model.bundle.item_ids)
    percentile = popularity_percentile(serving.model.bundle.popularity.astype(np.float64))
    relevant = [{int(t)} for t in out.targets]
    metrics = {
        v: {str(k): row for k, row in mean_metrics(out.ranked[v], relevant, ks, n_items, percentile).items()}
        for v in variants
    }
    labels = np.array([position_label(int(t)) for t in out.positions])
    order = [position_label(t) for t in range(1, POSITION_CAP + 1)]
    by_position: dict[str, dict[str, float]] = {v: {} for v in variants}
    n_by_position: dict[str, int] = {}
    for label in order:
        mask = labels == label
        n_by_position[label] = int(mask.sum())
        for v in variants:
            if mask.any():
                rel = [relevant[i] for i in np.flatnonzero(mask)]
                by_position[v][label] = mean_metrics(out.ranked[v][mask], rel, [10], n_items, percentile)[10][
                    "hit_rate"
                ]
    both = 10 in ks and {"batch_only", "hybrid"} <= set(variants)
    batch_hr = metrics["batch_only"]["10"]["hit_rate"] if both else float("nan")
    hybrid_hr = metrics["hybrid"]["10"]["hit_rate"] if both else float("nan")
    paired = {}
    if 10 in ks:
        hit10 = {v: (out.ranked[v][:, :10] == out.targets[:, None]).any(axis=1) for v in variants}
        for a, b in PAIRED_COMPARISONS:
            if a in hit10 and b in hit10:
                paired[f"{a}_vs_{b}"] = paired_difference(hit10[a], hit10[b], out.sessions, seed=seed)
    return {
        "protocol": {
            "name": "session_replay",
            "ks": ks,
            "seed": seed,
            "max_sessions": max_sessions,
            "max_targets": max_targets,
            "params": params.__dict__,
        },
        "data": {
            "n_sessions": int(sessions["session_id"].nunique()),
            "n_targets": len(out.targets),
            "n_skipped_repeat": out.skipped_repeat,
            "n_skipped_history": out.skipped_history,
            "n_skipped_unknown_item": out.skipped_unknown,
            "n_sessions_unknown_user": out.unknown_user_sessions,
        },
        "variants": metrics,
        "hit_rate_at_10_by_position": by_position,
        "n_by_position": n_by_position,
        "strategies": {v: dict(sorted(c.items())) for v, c in out.strategies.items()},
        "hybrid_over_batch_hit_rate_at_10": hybrid_hr / batch_hr if batch_hr > 0 else float("nan"),
        "paired_hit_rate_at_10": paired,
        "seen_share_at_10": {v: float(out.had_seen[v].mean()) for v in variants},
        "published_seen_share_at_10": {v: float(out.had_published[v].mean()) for v in variants},
        "timings_s": {"replay": elapsed},
    }

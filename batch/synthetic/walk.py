"""Step 5 of ``batch.synthetic.generate``'s docstring: the item of every step of every session."""

from __future__ import annotations

import dataclasses

import numpy as np

from batch.synthetic.world import N_CANDIDATES, World

P_REPEAT_START = 0.3
P_SWITCH = 0.1
P_BACKTRACK = 0.05
P_CHAIN = 0.75
MAX_DRAWS = 4  # no-repeat walk: N_CANDIDATES sets a fresh pick may draw; tastes an opening may try


def walk_sessions(rng: np.random.Generator, world: World, sess_user: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Item of every step (n_steps,), laid out session after session, ``steps[s]`` items for session s.

    ``sess_user`` (n_sessions,) is sorted, and a user's sessions are in time order, so the user's k-th
    session is index ``first + k``. Wave k walks every user's k-th session together, which lets a session
    open on an item from the same user's earlier sessions (repeat behaviour).
    """
    rank = rank_in_group(sess_user)
    offsets = np.cumsum(steps) - steps
    item = np.empty(int(steps.sum()), dtype=np.int64)
    for k in range(int(rank.max(initial=-1)) + 1):
        wave = np.flatnonzero(rank == k)
        _walk_wave(rng, world, k, wave[np.argsort(-steps[wave], kind="stable")], sess_user, steps, offsets, item)
    return item


def _walk_wave(
    rng: np.random.Generator,
    world: World,
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


def rank_in_group(group: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal, contiguous group values."""
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    lengths = np.diff(np.concatenate((starts, [len(group)])))
    return np.arange(len(group)) - np.repeat(starts, lengths)


def walk_sessions_once(
    rng: np.random.Generator, world: World, sess_user: np.ndarray, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The no-repeat walk: a user never meets an item twice, in one session or across sessions.

    As ``walk_sessions`` (same waves, topics, drift and chain moves) without repeat starts and
    backtracking; a pick never lands on an item the user already has (it is taken out of the Gumbel
    draw), a chain move whose whole neighbourhood the user has seen becomes a fresh pick, and a fresh pick
    with nothing new among ``MAX_DRAWS * N_CANDIDATES`` candidates ends the session there (an opening first
    tries other topics of the user's taste). Returns the items (n_steps,) laid out session after session
    and each session's length (n_sessions,), ``<= steps``; 0 for a session that could not open.
    """
    n_items = len(world.item_cat)
    rank = rank_in_group(sess_user)
    last = np.zeros(int(sess_user.max(initial=-1)) + 1, dtype=np.int64)
    last[sess_user] = rank  # a user's last wave
    seen = np.empty(0, dtype=np.int64)  # sorted user * n_items + item over the waves walked so far
    length = np.zeros(len(steps), dtype=np.int64)
    walked = []
    for k in range(int(rank.max(initial=-1)) + 1):
        wave = np.flatnonzero(rank == k)
        wave = wave[np.argsort(-steps[wave], kind="stable")]
        users = sess_user[wave]
        hist = _walk_wave_once(rng, world, seen, users, steps[wave], n_items)
        length[wave] = (hist >= 0).sum(axis=1)
        # only users with a later session look their items up again: keep the array small
        more = last[users] > k
        new = np.sort((users[more, None] * n_items + hist[more])[hist[more] >= 0])
        seen = seen[last[seen // n_items] > k]
        seen = np.insert(seen, np.searchsorted(seen, new), new)
        walked.append((wave, hist))
    item = np.empty(int(length.sum()), dtype=np.int64)
    offsets = np.cumsum(length) - length
    for wave, hist in walked:
        filled = hist >= 0
        item[(offsets[wave][:, None] + np.arange(hist.shape[1]))[filled]] = hist[filled]
    return item, length


@dataclasses.dataclass(frozen=True)
class _Seen:
    """What the users (n,) of one wave already have: the items of their earlier sessions (``earlier``,
    sorted keys ``user * n_items + item``) and of their current session so far (``hist`` (n, max_steps),
    filled in place step by step, -1 = not yet)."""

    earlier: np.ndarray
    users: np.ndarray
    n_items: int
    hist: np.ndarray

    def banned(self, rows: np.ndarray, t: int, cand: np.ndarray) -> np.ndarray:
        """bool (len(rows), m): candidate (r, m) is an item user ``rows[r]`` has from before step t."""
        out = (cand[:, :, None] == self.hist[rows, None, :t]).any(axis=2)
        if len(self.earlier):
            key = (self.users[rows, None] * self.n_items + cand).ravel()
            order = np.argsort(key)  # searchsorted is about 3x faster on sorted keys, sort included
            pos = np.empty(len(key), dtype=np.int64)
            pos[order] = np.searchsorted(self.earlier, key[order])
            out |= (self.earlier[np.minimum(pos, len(self.earlier) - 1)] == key).reshape(cand.shape)
        return out


def _walk_wave_once(
    rng: np.random.Generator,
    world: World,
    earlier: np.ndarray,
    users: np.ndarray,
    planned: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Items (n, planned[0]) of one wave's sessions (``users`` (n,), longest ``planned`` first), -1 from a
    session's end on; ``earlier`` as in ``_Seen``."""
    n = len(planned)
    hist = np.full((n, int(planned[0])), -1, dtype=np.int64)
    seen = _Seen(earlier, users, n_items, hist)
    topic = world.taste_topic(rng, users)
    hist[:, 0] = _fresh(rng, world, seen, np.arange(n), 0, topic)
    for _ in range(MAX_DRAWS - 1):  # a user who has seen a topic out opens on another of their tastes
        todo = np.flatnonzero(hist[:, 0] < 0)
        if not len(todo):
            break
        topic[todo] = world.taste_topic(rng, users[todo])
        hist[todo, 0] = _fresh(rng, world, seen, todo, 0, topic[todo])
    alive = hist[:, 0] >= 0
    for t in range(1, int(planned[0])):
        a = int(np.searchsorted(-planned, -t, side="left"))  # sessions planned longer than t
        rows = np.flatnonzero(alive[:a])
        r, r_chain = rng.random(len(rows)), rng.random(len(rows))
        switch = np.flatnonzero(r < P_SWITCH)
        topic[rows[switch]] = world.related[topic[rows[switch]], rng.integers(0, world.related.shape[1], len(switch))]
        nxt = np.full(len(rows), -1, dtype=np.int64)
        idx = np.flatnonzero((r >= P_SWITCH) & (r_chain < P_CHAIN))
        cand = world.neighbours[hist[rows[idx], t - 1]]
        nxt[idx] = world.choose(rng, users[rows[idx]], cand, world.pop_logit[cand], seen.banned(rows[idx], t, cand))
        idx = np.flatnonzero(nxt < 0)  # fresh picks, and chain moves with nothing new in the neighbourhood
        nxt[idx] = _fresh(rng, world, seen, rows[idx], t, topic[rows[idx]])
        hist[rows, t] = nxt
        alive[rows] = nxt >= 0
    return hist


def _fresh(
    rng: np.random.Generator, world: World, seen: _Seen, rows: np.ndarray, t: int, cats: np.ndarray
) -> np.ndarray:
    """A fresh pick (len(rows),) in ``cats`` that user ``rows`` does not have yet; -1 where none of
    ``MAX_DRAWS * N_CANDIDATES`` candidates is new. The rows whose first N_CANDIDATES hold nothing new
    (few) draw all the others in one set, which keeps the number of vectorised calls small."""
    out = np.full(len(rows), -1, dtype=np.int64)
    todo = np.arange(len(rows))
    for m in (N_CANDIDATES, (MAX_DRAWS - 1) * N_CANDIDATES):
        if not len(todo):
            break
        cand = world.category_candidates(rng, cats[todo], m)
        out[todo] = world.choose(rng, seen.users[rows[todo]], cand, 0.0, seen.banned(rows[todo], t, cand))
        todo = todo[out[todo] < 0]
    return out

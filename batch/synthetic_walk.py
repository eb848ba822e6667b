"""Step 5 of ``batch.generate``'s docstring: the item of every step of every session."""

from __future__ import annotations

import numpy as np

from batch.synthetic_world import World

P_REPEAT_START = 0.3
P_SWITCH = 0.1
P_BACKTRACK = 0.05
P_CHAIN = 0.75


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

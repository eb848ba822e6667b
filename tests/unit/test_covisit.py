"""Co-visitation neighbours on tiny hand-made session logs whose answer is computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.covisit import covisit_neighbours
from batch.matrix import IdMaps
from shared.errors import ConfigError, DataValidationError

T0 = pd.Timestamp("2026-01-01", tz="UTC")
ITEMS = np.array(["a", "b", "c", "d", "e"], dtype=object)  # a=0, b=1, c=2, d=3, e=4
A, B, C, D, E = range(5)


def _log(*sessions: str, gap_s: float = 60.0) -> pd.DataFrame:
    """One row per letter; session k is ``sessions[k]``, events ``gap_s`` apart, user ``u<k>``."""
    rows = []
    for k, letters in enumerate(sessions):
        for pos, item in enumerate(letters):
            ts = T0 + pd.Timedelta(hours=k) + pd.Timedelta(seconds=gap_s * pos)
            rows.append({"user_id": f"u{k}", "item_id": item, "ts": ts, "session_id": f"s{k}"})
    return pd.DataFrame(rows)


def _maps(frame: pd.DataFrame) -> IdMaps:
    return IdMaps(user_ids=np.array(sorted(frame["user_id"].unique()), dtype=object), item_ids=ITEMS)


def _covisit(frame: pd.DataFrame, n: int = 4, window: int = 2, gap_s: float = 1800.0):
    return covisit_neighbours(frame, _maps(frame), n=n, window=window, session_gap_s=gap_s)


def _f32(*values: float) -> list[float]:
    return [float(np.float32(v)) for v in values]


def test_hand_computed_scores_forward_reverse_and_normalisation() -> None:
    # window 2: forward weights 1 (next step), 1/2 (two steps on); reverse weights 1/2 and 1/4.
    # N(a)=3, N(b)=2, N(c)=2 sessions.
    #   C(a->b) = 1 (s0) + 1 (s1)            = 2    -> 2 / sqrt(3*2)
    #   C(a->c) = 1/2 (s0, d=2) + 1/2 (s2, c before a: reverse d=1) -> 1 / sqrt(6)
    #   C(b->a) = 1/2 (s0 rev) + 1/2 (s1 rev) = 1   -> 1 / sqrt(6)
    #   C(b->c) = 1 (s0)                            -> 1 / sqrt(4)
    #   C(c->a) = 1/4 (s0 rev d=2) + 1 (s2)  = 5/4  -> 1.25 / sqrt(6)
    #   C(c->b) = 1/2 (s0 rev d=1)                  -> 0.5 / sqrt(4)
    ids, scores = _covisit(_log("abc", "ab", "ca"))
    assert ids.dtype == np.int32 and scores.dtype == np.float32 and ids.shape == scores.shape == (5, 4)
    assert ids[A].tolist() == [B, C, -1, -1]
    assert scores[A, :2].tolist() == _f32(2 / np.sqrt(6), 1 / np.sqrt(6))
    assert ids[B].tolist() == [C, A, -1, -1]
    assert scores[B, :2].tolist() == _f32(0.5, 1 / np.sqrt(6))
    assert ids[C].tolist() == [A, B, -1, -1]
    assert scores[C, :2].tolist() == _f32(1.25 / np.sqrt(6), 0.25)


def test_padding_follows_the_candidates_convention() -> None:
    ids, scores = _covisit(_log("abc", "ab", "ca"))
    assert (ids[D] == -1).all() and (ids[E] == -1).all()  # never visited: no neighbours
    assert np.isneginf(scores[ids < 0]).all() and np.isfinite(scores[ids >= 0]).all()


def test_a_popular_item_does_not_win_on_raw_counts() -> None:
    # a is followed by e and by b twice each, but e is in every session and b only in those two.
    ids, scores = _covisit(_log("ae", "ae", "ab", "ab", "e", "e", "e", "e"), window=1)
    assert ids[A, :2].tolist() == [B, E]
    assert scores[A, :2].tolist() == _f32(2 / np.sqrt(4 * 2), 2 / np.sqrt(4 * 6))


def test_a_session_counts_a_pair_once_with_its_heaviest_weight() -> None:
    # a b a b: a->b occurs twice forward at distance 1 (and reverse); it counts once, at weight 1.
    ids, scores = _covisit(_log("abab"))
    assert ids[A, 0] == B and ids[B, 0] == A
    assert scores[A, 0] == scores[B, 0] == np.float32(1.0)
    assert (ids[A] != A).all()  # an item is never its own neighbour


def test_consecutive_repeats_collapse_into_one_step() -> None:
    # a c c b is a c b: b is two steps after a (weight 1/2), inside a window of 2.
    frame = _log("accb")
    ids, scores = _covisit(frame, window=2)
    assert ids[A, :2].tolist() == [C, B]
    assert scores[A, :2].tolist() == _f32(1.0, 0.5)
    # The repeats are collapsed, not dropped: the same log with the repeat removed gives the same bytes.
    ids2, scores2 = _covisit(_log("acb"), window=2)
    assert ids.tobytes() == ids2.tobytes() and scores.tobytes() == scores2.tobytes()


def test_the_window_limits_how_far_ahead_a_pair_counts() -> None:
    ids1, _ = _covisit(_log("abc"), window=1)
    assert ids1[A].tolist() == [B, -1, -1, -1]  # c is two steps on: outside a window of 1
    assert ids1[C].tolist() == [B, -1, -1, -1]  # reverse, distance 1
    ids2, scores2 = _covisit(_log("abc"), window=2)
    assert ids2[A, :2].tolist() == [B, C]
    assert scores2[A, :2].tolist() == _f32(1.0, 0.5)


def test_ties_go_to_the_lower_item_index_whatever_the_row_order() -> None:
    for sessions in (("ab", "ac"), ("ac", "ab")):
        ids, scores = _covisit(_log(*sessions), window=1)
        assert ids[A, :2].tolist() == [B, C]
        assert scores[A, 0] == scores[A, 1] == np.float32(1 / np.sqrt(2))


def test_without_session_ids_a_users_events_split_at_long_gaps() -> None:
    rows = [
        ("u1", "a", 0.0),
        ("u1", "b", 60.0),
        ("u1", "c", 60.0 + 1800.0),  # exactly the gap: still the same session
        ("u1", "d", 60.0 + 1800.0 + 1801.0),  # longer than the gap: a new session
        ("u1", "e", 60.0 + 1800.0 + 1801.0 + 1.0),
        ("u2", "d", 30.0),  # another user's events in between never join u1's sessions
    ]
    frame = pd.DataFrame([{"user_id": u, "item_id": i, "ts": T0 + pd.Timedelta(seconds=s)} for u, i, s in rows])
    ids, _ = _covisit(frame, window=3)
    assert ids[A].tolist() == [B, C, -1, -1]
    assert ids[C].tolist() == [B, A, -1, -1]
    assert ids[D].tolist() == [E, -1, -1, -1]  # d and e form their own session; u2's lone d adds nothing
    # A null session_id means "sessionise by gap" too, and a real id keeps its rows together.
    with_ids = frame.assign(session_id=[None, None, None, None, None, "x"])
    for got, want in zip(_covisit(with_ids, window=3), _covisit(frame, window=3), strict=True):
        assert got.tobytes() == want.tobytes()


def test_a_session_id_holds_a_visit_together_across_a_long_gap() -> None:
    frame = _log("ab", gap_s=3 * 3600.0)
    ids, _ = _covisit(frame, gap_s=1800.0)
    assert ids[A, 0] == B
    ids, _ = _covisit(frame.drop(columns=["session_id"]), gap_s=1800.0)
    assert ids[A, 0] == -1


def test_equal_timestamps_are_ordered_by_event_id() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u0", "u0"],
            "item_id": ["a", "b"],
            "ts": [T0, T0],
            "session_id": ["s", "s"],
            "event_id": ["e2", "e1"],  # b happened first
        }
    )
    ids, scores = _covisit(frame, window=1)
    assert ids[B, 0] == A and scores[B, 0] == np.float32(1.0)  # forward b -> a
    assert scores[A, 0] == np.float32(0.5)  # reverse a -> b


def test_deterministic_and_independent_of_row_order() -> None:
    frame = _log("abcde", "bdca", "eab", "cc", "dbe", "acbd")
    frame["event_id"] = [f"e{i:03d}" for i in range(len(frame))]
    ids, scores = _covisit(frame, n=3, window=3)
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    ids2, scores2 = _covisit(shuffled, n=3, window=3)
    assert ids.tobytes() == ids2.tobytes() and scores.tobytes() == scores2.tobytes()


def test_empty_interactions_give_padded_lists() -> None:
    frame = _log("a").iloc[:0]
    ids, scores = _covisit(frame, n=3)
    assert ids.shape == (5, 3) and (ids == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 0}, "n "), ({"window": 0}, "window"), ({"window": 21}, "window"), ({"gap_s": 0.0}, "session_gap_s")],
)
def test_bad_parameters_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _covisit(_log("ab"), **kwargs)


def test_bad_input_is_a_data_validation_error() -> None:
    frame = _log("ab")
    with pytest.raises(DataValidationError, match="missing columns"):
        _covisit(frame.drop(columns=["ts"]))
    with pytest.raises(DataValidationError, match="datetime"):
        _covisit(frame.assign(ts=frame["ts"].astype(str)))
    with pytest.raises(DataValidationError, match="missing values"):
        _covisit(frame.assign(ts=[T0, pd.NaT]))
    with pytest.raises(DataValidationError, match="not in the id maps"):
        _covisit(frame.assign(item_id=["a", "zz"]))


def _reference(sessions: list[list[int]], n_items: int, window: int) -> dict[tuple[int, int], float]:
    """The module docstring's definition, written the slow obvious way: score per (a, b)."""
    weight: dict[tuple[int, int], float] = {}
    present: dict[int, int] = {}
    for events in sessions:
        steps = [x for k, x in enumerate(events) if k == 0 or x != events[k - 1]]
        best: dict[tuple[int, int], float] = {}
        for i, a in enumerate(steps):
            for j in range(i + 1, min(i + window, len(steps) - 1) + 1):
                b, d = steps[j], j - i
                if a != b:
                    best[(a, b)] = max(best.get((a, b), 0.0), 1 / d)
                    best[(b, a)] = max(best.get((b, a), 0.0), 1 / (2 * d))
        for pair, w in best.items():
            weight[pair] = weight.get(pair, 0.0) + w
        for x in set(steps):
            present[x] = present.get(x, 0) + 1
    return {(a, b): w / np.sqrt(present[a] * present[b]) for (a, b), w in weight.items()}


def test_matches_a_slow_reference_on_random_sessions() -> None:
    rng = np.random.default_rng(3)
    sessions = [rng.integers(0, 5, rng.integers(1, 12)).tolist() for _ in range(40)]
    frame = _log(*("".join("abcde"[x] for x in s) for s in sessions))
    ids, scores = _covisit(frame, n=4, window=3)
    want = _reference(sessions, 5, 3)
    for a in range(5):
        expected = sorted(((-s, b) for (x, b), s in want.items() if x == a))[:4]
        assert ids[a][ids[a] >= 0].tolist() == [b for _, b in expected]
        np.testing.assert_allclose(scores[a][ids[a] >= 0], [-s for s, _ in expected], rtol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_chunks_of_sessions_give_the_same_counts(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """The pair counts are summed over chunks of whole sessions (to bound memory): any chunk size
    gives the same bytes as one chunk."""
    from batch import covisit

    rng = np.random.default_rng(11)
    frame = _log(*("".join("abcde"[x] for x in rng.integers(0, 5, rng.integers(2, 15))) for _ in range(60)))
    whole = _covisit(frame, n=5, window=3)
    monkeypatch.setattr(covisit, "CHUNK_STEPS", chunk)
    chunked = _covisit(frame, n=5, window=3)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])
    assert (whole[0] >= 0).sum() >= 15  # the data does have pairs to count (at most 5 x 4)

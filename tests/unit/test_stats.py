import numpy as np
import pytest

from lab.stats import paired_difference


def test_identical_recommenders_differ_by_exactly_zero() -> None:
    hits = np.array([1, 0, 1, 1, 0, 0])
    got = paired_difference(hits, hits, np.array([0, 0, 1, 1, 2, 2]), n_boot=200)
    assert (got["difference"], got["ci95_low"], got["ci95_high"]) == (0.0, 0.0, 0.0)
    assert (got["n_targets"], got["n_sessions"]) == (6, 3)


def test_a_constant_per_session_gap_has_a_degenerate_interval() -> None:
    # a hits everything, b nothing: every resample differs by exactly 1
    got = paired_difference(np.ones(8), np.zeros(8), np.arange(8) // 2, n_boot=100)
    assert got["difference"] == 1.0 and got["ci95_low"] == 1.0 and got["ci95_high"] == 1.0


def test_interval_covers_the_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.5
    groups = np.arange(400) // 4
    got = paired_difference(a, b, groups, seed=7)
    assert got["ci95_low"] < got["difference"] < got["ci95_high"]
    assert got["difference"] == pytest.approx(a.mean() - b.mean())
    assert got == paired_difference(a, b, groups, seed=7)
    # whole sessions are resampled: a session-correlated gap gives a wider interval than the same
    # hits spread over one-target sessions
    clustered = paired_difference(np.repeat([1, 0], 200), np.zeros(400), np.arange(400) // 100, seed=1)
    spread = paired_difference(np.repeat([1, 0], 200), np.zeros(400), np.arange(400), seed=1)
    assert clustered["ci95_high"] - clustered["ci95_low"] > spread["ci95_high"] - spread["ci95_low"]


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(np.ones(3), np.ones(4), np.arange(3))

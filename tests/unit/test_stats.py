import numpy as np
import pytest

from lab.stats import paired_difference, paired_ratio


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


def test_a_constant_per_session_ratio_has_a_degenerate_interval() -> None:
    # every session: a hits 2 of 4 targets, b 1 of 4, so every resample's ratio is exactly 2
    a = np.tile([1, 1, 0, 0], 5)
    b = np.tile([1, 0, 0, 0], 5)
    got = paired_ratio(a, b, np.arange(20) // 4, n_boot=100)
    assert (got["ratio"], got["ci95_low"], got["ci95_high"], got["n_undefined"]) == (2.0, 2.0, 2.0, 0)
    assert (got["n_targets"], got["n_sessions"]) == (20, 5)


def test_ratio_interval_covers_the_ratio_and_uses_the_difference_replicates() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.3
    groups = np.arange(400) // 4
    got = paired_ratio(a, b, groups, seed=7)
    assert got["ratio"] == pytest.approx(a.mean() / b.mean())
    assert got["ci95_low"] < got["ratio"] < got["ci95_high"]
    assert got == paired_ratio(a, b, groups, seed=7)
    # the same replicates: a ratio interval above 1 goes with a difference interval above 0
    diff = paired_difference(a, b, groups, seed=7)
    assert (got["ci95_low"] > 1.0) == (diff["ci95_low"] > 0.0)


def test_a_ratio_over_no_hits_is_undefined_not_infinite() -> None:
    got = paired_ratio(np.ones(6), np.zeros(6), np.arange(6) // 2, n_boot=50)
    assert np.isnan(got["ratio"]) and np.isnan(got["ci95_low"]) and got["n_undefined"] == 50
    # b hits in one session only: replicates that miss that session have no ratio and are counted
    b = np.array([1, 0, 0, 0, 0, 0])
    got = paired_ratio(np.ones(6), b, np.arange(6) // 2, n_boot=200, seed=1)
    assert got["ratio"] == 6.0 and 0 < got["n_undefined"] < 200 and np.isfinite(got["ci95_high"])

"""Paired comparisons of two recommenders on the same replay targets, with a session-level bootstrap.

Targets of one session are not independent (they share a user and a context), so resampling targets
would understate the noise. ``paired_difference`` and ``paired_ratio`` resample whole SESSIONS with
replacement: each of ``n_boot`` replicates draws as many sessions as there are, and the difference (or
the ratio) of the two HitRates over the targets of the drawn sessions is one sample. The interval is the
2.5th and 97.5th percentile of those samples (a percentile bootstrap), with
``numpy.random.default_rng(seed)``, so it reproduces; the same seed draws the same replicates for both.
"""

from __future__ import annotations

import numpy as np


def _paired(
    hits_a: np.ndarray, hits_b: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b) as float64 (n,); per session the sums of a and b and the target count (n_groups,); and how
    often each replicate drew each session, float64 (n_boot, n_groups)."""
    a = np.asarray(hits_a, dtype=np.float64)
    b = np.asarray(hits_b, dtype=np.float64)
    if a.shape != b.shape or a.shape != np.shape(groups) or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need equal-length non-empty 1-d inputs, got {a.shape}, {b.shape}, {np.shape(groups)}")
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1
    sum_a = np.bincount(g, weights=a, minlength=n_groups)
    sum_b = np.bincount(g, weights=b, minlength=n_groups)
    count = np.bincount(g, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    times = np.zeros((n_boot, n_groups))
    np.add.at(times, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    return a, b, np.stack([sum_a, sum_b]), count, times


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def paired_difference(
    hits_a: np.ndarray, hits_b: np.ndarray, groups: np.ndarray, n_boot: int = 1_000, seed: int = 42
) -> dict[str, float | int]:
    """mean(hits_a) - mean(hits_b) and its 95% session-bootstrap interval.

    ``hits_a``, ``hits_b``: bool or 0/1 (n_targets,) of the two recommenders on the same targets;
    ``groups``: (n_targets,) session of each target. Returns {"difference", "ci95_low", "ci95_high",
    "n_targets", "n_sessions", "n_boot"}.
    """
    a, b, sums, count, times = _paired(hits_a, hits_b, groups, n_boot, seed)
    low, high = _interval((times @ (sums[0] - sums[1])) / (times @ count))  # target-weighted mean differences
    return {
        "difference": float(a.mean() - b.mean()),
        "ci95_low": low,
        "ci95_high": high,
        "n_targets": int(a.size),
        "n_sessions": len(count),
        "n_boot": n_boot,
    }


def paired_ratio(
    hits_a: np.ndarray, hits_b: np.ndarray, groups: np.ndarray, n_boot: int = 1_000, seed: int = 42
) -> dict[str, float | int]:
    """mean(hits_a) / mean(hits_b) and its 95% session-bootstrap interval, from the replicates of
    ``paired_difference`` with the same seed. A replicate in which b never hits has no ratio: it is left
    out of the percentiles and counted in ``n_undefined`` (all nan when b never hits at all). Returns
    {"ratio", "ci95_low", "ci95_high", "n_targets", "n_sessions", "n_boot", "n_undefined"}.
    """
    a, b, sums, count, times = _paired(hits_a, hits_b, groups, n_boot, seed)
    num, den = times @ sums[0], times @ sums[1]
    defined = den > 0
    nan = float("nan")
    ratio, (low, high) = (
        (nan, (nan, nan)) if b.sum() == 0 else (a.sum() / b.sum(), _interval(num[defined] / den[defined]))
    )
    return {
        "ratio": float(ratio),
        "ci95_low": low,
        "ci95_high": high,
        "n_targets": int(a.size),
        "n_sessions": len(count),
        "n_boot": n_boot,
        "n_undefined": int((~defined).sum()),
    }

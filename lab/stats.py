"""Paired comparisons of two recommenders on the same replay targets, with a session-level bootstrap.

Targets of one session are not independent (they share a user and a context), so resampling targets
would understate the noise. ``paired_difference`` resamples whole SESSIONS with replacement: each of
``n_boot`` replicates draws as many sessions as there are, and the difference of the two HitRates over
the targets of the drawn sessions is one sample. The interval is the 2.5th and 97.5th percentile of
those samples (a percentile bootstrap), with ``numpy.random.default_rng(seed)``, so it reproduces.
"""

from __future__ import annotations

import numpy as np


def paired_difference(
    hits_a: np.ndarray, hits_b: np.ndarray, groups: np.ndarray, n_boot: int = 1_000, seed: int = 42
) -> dict[str, float | int]:
    """mean(hits_a) - mean(hits_b) and its 95% session-bootstrap interval.

    ``hits_a``, ``hits_b``: bool or 0/1 (n_targets,) of the two recommenders on the same targets;
    ``groups``: (n_targets,) session of each target. Returns {"difference", "ci95_low", "ci95_high",
    "n_targets", "n_sessions", "n_boot"}.
    """
    a = np.asarray(hits_a, dtype=np.float64)
    b = np.asarray(hits_b, dtype=np.float64)
    if a.shape != b.shape or a.shape != np.shape(groups) or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need equal-length non-empty 1-d inputs, got {a.shape}, {b.shape}, {np.shape(groups)}")
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1
    diff_sum = np.bincount(g, weights=a - b, minlength=n_groups)  # per session: sum of differences
    count = np.bincount(g, minlength=n_groups).astype(np.float64)  # per session: targets
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    # per replicate: how often each session was drawn, then the target-weighted mean difference
    times = np.zeros((n_boot, n_groups))
    np.add.at(times, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    samples = (times @ diff_sum) / (times @ count)
    low, high = np.percentile(samples, [2.5, 97.5])
    return {
        "difference": float(a.mean() - b.mean()),
        "ci95_low": float(low),
        "ci95_high": float(high),
        "n_targets": int(a.size),
        "n_sessions": n_groups,
        "n_boot": n_boot,
    }

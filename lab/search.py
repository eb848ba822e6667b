"""The search spaces of ``hybridrec tune`` and the coordinate search it runs over the ALS grid.

Coordinate search, one pass. Start at ``start`` (the Settings point, so the configured model is always
scored and is the baseline to beat). For each axis in ``ALS_AXES`` order, score every grid value of
that axis with the other axes held at the current best, then move to the best point seen so far.
Points already scored are not scored again. The result is the first point, in scoring order, with the
highest score. Each sweep keeps the previous best in its comparison, so that point is also the argmax
over everything scored.

Cost: ``1 + sum over axes of |grid values other than start's|`` scores (9 for the defaults from the
Settings point 64 / auto / 4 / 15: 3 factors, 4 regularizations, 4 alphas, 1 iteration count). The full
product would cost 48. The price is that one pass only finds interactions between axes along the way.

The ALS grids are on implicit's scale, wide enough for both event logs and rating logs: regularization
"auto" (4 x the median confidence, the default: ``batch.train``) and 1 to 100 (good values on rating
logs lie at 1-100 on implicit's scale),
factors up to 256, and alpha from 1 to 40 (``Settings.als_alpha`` says how it scales the confidence).

Stdlib only, so the command line can show these defaults without importing the training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

ALS_AXES = ("factors", "regularization", "alpha", "iterations")  # sweep order: largest effect first
WEIGHT_USER = (0.0, 0.1, 0.25, 0.5, 1.0)
# Doubling steps: with (0, 0.1, 0.2) the choice sat at the top edge; with 0.4 and 0.8 added it sat at
# 0.8, and on validation 1.2 and 1.6 score well below 0.8, so 1.6 closes the range above the peak.
WEIGHT_POPULARITY = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)
PRECOMPUTED_WEIGHT_POPULARITY = (0.0, 0.2, 0.4, 0.8, 1.6, 3.2)  # the precomputed tier's own, by batch-only
WEIGHT_COVISIT = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # swept at the best (weight_user, weight_popularity) pair

P = TypeVar("P")  # a frozen dataclass with a field per ALS axis, e.g. batch.train.AlsParams


@dataclass(frozen=True)
class AlsGrid:
    """Values tried per ALS axis (see ``Settings.als_*``); each axis needs at least one value."""

    factors: tuple[int, ...] = (64, 128, 256)
    regularization: tuple[float | str, ...] = ("auto", 1.0, 10.0, 100.0)  # "auto": batch.train
    alpha: tuple[float, ...] = (1.0, 4.0, 10.0, 40.0)
    iterations: tuple[int, ...] = (15,)

    def __post_init__(self) -> None:
        empty = [f.name for f in fields(self) if not getattr(self, f.name)]
        if empty:
            raise ValueError(f"the ALS grid has no value for {empty}")

    def as_dict(self) -> dict[str, list[Any]]:
        return {axis: list(getattr(self, axis)) for axis in ALS_AXES}


def n_scores(start: object, grid: AlsGrid) -> int:
    """How many points ``coordinate_search(start, grid, ...)`` scores, known before it runs.

    A sweep only changes its own axis, so when an axis is swept the current best still has start's
    value on it: that value is the only one of the sweep already scored.
    """
    return 1 + sum(len(set(getattr(grid, axis)) - {getattr(start, axis)}) for axis in ALS_AXES)


def coordinate_search(start: P, grid: AlsGrid, score: Callable[[P], float]) -> tuple[P, list[tuple[P, float]]]:
    """One pass of coordinate search (module docstring) from ``start``; ``score`` is maximised.

    Returns the chosen point and every scored ``(point, score)`` in scoring order. ``score`` is called
    once per distinct point, ``n_scores(start, grid)`` times in all.
    """
    scored: dict[P, float] = {}

    def visit(point: P) -> None:
        if point not in scored:
            scored[point] = float(score(point))

    def best() -> P:
        return max(scored, key=scored.__getitem__)  # dicts keep scoring order: ties go to the first

    visit(start)
    for axis in ALS_AXES:
        base = best()
        for value in getattr(grid, axis):
            visit(replace(base, **{axis: value}))  # type: ignore[type-var]
    return best(), list(scored.items())


def first_argmax(values: Sequence[float]) -> int:
    """Index of the first largest value: the tie rule of every choice ``hybridrec tune`` makes."""
    return max(range(len(values)), key=lambda i: (values[i], -i))

"""The one-pass ALS coordinate search of ``hybridrec tune``: known answers on made-up score surfaces."""

from __future__ import annotations

import math

from batch.train import AlsParams
from lab.search import AlsGrid, coordinate_search, first_argmax, n_scores

START = AlsParams(factors=64, regularization=0.05, alpha=4.0, iterations=15)
GRID = AlsGrid(factors=(32, 64, 128), regularization=(0.01, 0.05, 0.2), alpha=(1.0, 4.0, 10.0), iterations=(15,))


class Recorder:
    """A score function that remembers every call."""

    def __init__(self, surface) -> None:
        self.surface, self.calls = surface, []

    def __call__(self, p: AlsParams) -> float:
        self.calls.append(p)
        return self.surface(p)


def test_a_separable_surface_is_climbed_to_its_top_with_one_score_per_point() -> None:
    # best at factors 128, regularization 0.2, alpha 1, each axis on its own
    score = Recorder(lambda p: math.log2(p.factors) - abs(p.regularization - 0.2) - abs(p.alpha - 1.0))
    best, scored = coordinate_search(START, GRID, score)
    assert best == AlsParams(factors=128, regularization=0.2, alpha=1.0, iterations=15)
    assert len(score.calls) == len(set(score.calls)) == n_scores(START, GRID) == 7
    assert [p for p, _ in scored] == score.calls and score.calls[0] == START
    assert scored[first_argmax([s for _, s in scored])][0] == best


def test_each_sweep_holds_the_other_axes_at_the_best_so_far() -> None:
    score = Recorder(lambda p: math.log2(p.factors) - abs(p.regularization - 0.2) - abs(p.alpha - 1.0))
    coordinate_search(START, GRID, score)
    regularization_sweep = [p for p in score.calls if p.regularization != 0.05]
    assert {p.factors for p in regularization_sweep} == {128}  # factors already moved to its best
    assert {(p.factors, p.regularization) for p in score.calls if p.alpha != 4.0} == {(128, 0.2)}


def test_ties_keep_the_first_scored_point_and_the_start_when_nothing_beats_it() -> None:
    best, scored = coordinate_search(START, GRID, Recorder(lambda p: 0.5))
    assert best == START and len(scored) == 7


def test_one_pass_misses_what_only_two_axes_moving_together_find() -> None:
    # A ridge: only (128, 0.2) together is better than the start; each alone is worse.
    def ridge(p: AlsParams) -> float:
        return {(128, 0.2): 1.0, (64, 0.05): 0.5}.get((p.factors, p.regularization), 0.0)

    best, _ = coordinate_search(START, GRID, Recorder(ridge))
    assert best == START  # documented limitation of the one-pass search


def test_a_start_outside_the_grid_is_scored_and_counted() -> None:
    start = AlsParams(factors=8, regularization=0.05, alpha=4.0, iterations=15)
    score = Recorder(lambda p: -p.factors)  # smaller is better: the start itself wins
    best, scored = coordinate_search(start, GRID, score)
    assert best == start and len(scored) == n_scores(start, GRID) == 8

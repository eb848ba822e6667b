"""GET /items/{id}/similar's logic: which precomputed list, padding and unavailable items skipped."""

from __future__ import annotations

import pytest

from online.model import LoadedModel
from online.ranking import similar_items
from tests.support import tiny


def _model(**kw) -> LoadedModel:
    return LoadedModel.from_bundle(tiny.bundle(**kw))


def test_covisit_reads_the_co_visitation_list_not_the_factor_neighbours() -> None:
    assert similar_items(_model(), "a0", 5, "covisit") == (["b0", "a2"], [0.75, 0.5])
    assert similar_items(_model(), "a0", 5, "als")[0] == ["a1", "a2"]
    assert similar_items(_model(), "a0", 5)[0] == ["a1", "a2"]  # als stays the default


def test_covisit_skips_padding_and_unavailable_items_and_cuts_at_k() -> None:
    assert similar_items(_model(), "a1", 5, "covisit") == (["a0"], [0.625])  # second slot is padding
    assert similar_items(_model(), "b1", 5, "covisit") == ([], [])  # no co-visits at all
    hidden_b0 = _model(available=[True, True, True, False, True, True])
    assert similar_items(hidden_b0, "a0", 5, "covisit") == (["a2"], [0.5])
    assert similar_items(_model(), "a0", 1, "covisit") == (["b0"], [0.75])


def test_unknown_item_and_unknown_kind_are_different_errors() -> None:
    with pytest.raises(KeyError):
        similar_items(_model(), "nope", 5, "covisit")
    with pytest.raises(ValueError, match="kind"):
        similar_items(_model(), "a0", 5, "popular")

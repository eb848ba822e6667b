"""Tiny hand-made versions with an obvious right answer, for ranking and store tests.

Six items in two categories. Item factors put a0..a2 along axis 0 and b0..b2 along axis 1, so a user
or session pointing along axis 0 should get a-items first. Popularity favours b-items, so a test
can tell "personalised" from "popular".
"""

from __future__ import annotations

import numpy as np

from feature_store.base import Catalogue, ItemBundle, VersionData
from feature_store.keys import ALL_CATEGORIES
from feature_store.layout import user_layout

ITEM_IDS = ["a0", "a1", "a2", "b0", "b1", "b2"]
CATEGORIES = ["A", "A", "A", "B", "B", "B"]
ITEM_FACTORS = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]], dtype=np.float32)
NEIGHBOURS = np.array([[1, 2], [0, 2], [1, 0], [4, 5], [3, 5], [4, 3]], dtype=np.int32)
NEIGHBOUR_SCORES = np.full((6, 2), 0.9, dtype=np.float32)
# Co-visitation differs from the factor neighbours on purpose (a0 is followed by b0), so a test can tell
# which list it got. Scores are exact in float16 (the stored encoding); b1 has no co-visits at all.
COVISIT = np.array([[3, 2], [0, -1], [5, 0], [0, 4], [-1, -1], [1, 3]], dtype=np.int32)
COVISIT_SCORES = np.array(
    [[0.75, 0.5], [0.625, -np.inf], [0.5, 0.25], [0.875, 0.375], [-np.inf, -np.inf], [0.25, 0.125]], dtype=np.float32
)
POPULARITY = np.array([1, 2, 3, 60, 50, 40], dtype=np.float32)
POPULAR = {
    ALL_CATEGORIES: np.array([3, 4, 5, 2, 1, 0], dtype=np.int32),
    "A": np.array([2, 1, 0], dtype=np.int32),
    "B": np.array([3, 4, 5], dtype=np.int32),
}


ITEM_ARRAYS = {
    "item_factors": ITEM_FACTORS,
    "neighbours": NEIGHBOURS,
    "neighbour_scores": NEIGHBOUR_SCORES,
    "covisit": COVISIT,
    "covisit_scores": COVISIT_SCORES,
    "popularity": POPULARITY,
}


def version_data(version: str = "2026-01-01.00000000aa", n_users: int = 3) -> VersionData:
    user_ids = [f"u{i}" for i in range(n_users)]
    user_factors = np.tile(np.array([[2.0, 0.0]], dtype=np.float32), (n_users, 1))
    candidates = np.tile(np.array([[0, 1, 2, 5]], dtype=np.int32), (n_users, 1))
    return VersionData(
        version=version,
        meta={
            "version": version,
            "n_items": 6,
            "n_factors": 2,
            "n_neighbours": 2,
            "n_covisit": 2,
            "n_users": n_users,
            "user_record": user_layout(6),
        },
        user_ids=user_ids,
        user_arrays={"vector": user_factors, "candidates": candidates},
        catalogue=Catalogue(ITEM_IDS, CATEGORIES, [f"Title {i}" for i in ITEM_IDS], [True] * 6),
        item_arrays=dict(ITEM_ARRAYS),
        popular=POPULAR,
    )


def bundle(available: list[bool] | None = None) -> ItemBundle:
    return ItemBundle(
        version="2026-01-01.00000000aa",
        meta={},
        item_ids=list(ITEM_IDS),
        categories=np.array(CATEGORIES, dtype=object),
        titles=list(ITEM_IDS),
        available=np.array(available or [True] * 6),
        arrays=dict(ITEM_ARRAYS),
        popular=dict(POPULAR),
    )

"""What a published version holds: ONE declaration per array.

These two tables drive everything that moves an array: the run directory (``batch.artifacts`` saves,
loads and checks them by ``artifact``), the Redis keys (``keys.Keys.item_array``), the byte encodings
and the store's write, verify and read loops (``codecs``, ``redis_versions``), the version meta (row
widths) and the lab's in-memory copy of a version (which decodes the very bytes the API reads).
Adding an array is one line here plus the code that produces it (batch) and the code that uses it
(online); nothing in between names it.

**Item arrays**: row j describes item j of the version's catalogue. Each is one Redis string
``p:v:<ver>:<name>`` holding the row-major array in its ``wire`` dtype; it loads as ``memory``. A
2-D array's row width is the meta field ``width``; ``width=None`` means one value per item.

**User arrays**: one record per user (``p:v:<ver>:u:<user_id>``, ``codecs.encode_user``), one
variable-length array each, in the wire dtypes of ``user_layout`` (recorded in the version's meta). ``kind`` says how the run stores them: ``dense`` (n_users, width) rows,
``padded`` (n_users, n) rows whose ``-1`` entries are padding, or ``ragged`` (CSR: the npz holds
``indptr`` (n_users + 1,) and the values). A user's record drops padding, so every user array is a
1-D array of that user's values.

``required=False``: a run or version made before the array existed loads it as empty (item arrays
(n_items, 0), user arrays length 0) instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class ItemArray:
    name: str  # field of VersionData / ItemBundle and Redis key suffix
    wire: str  # little-endian dtype of the stored bytes
    memory: str  # dtype once loaded
    width: str | None  # meta field with the row width; None: 1-D (n_items,)
    artifact: tuple[str, str]  # (file in the run directory, array inside it)
    required: bool = True
    finite: bool = False  # every value must be finite (no -inf padding allowed)


@dataclass(frozen=True)
class UserArray:
    name: str  # field of UserRecord
    wire: str
    memory: str
    artifact: tuple[str, str]
    kind: Literal["dense", "padded", "ragged"]
    required: bool = True
    finite: bool = False


@dataclass(frozen=True, eq=False)
class Ragged:
    """Variable-length rows in CSR form: row i is ``values[indptr[i]:indptr[i + 1]]``."""

    indptr: np.ndarray  # int64 (n_rows + 1,)
    values: np.ndarray  # (indptr[-1],)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.indptr[i] : self.indptr[i + 1]]

    @classmethod
    def empty(cls, n_rows: int, dtype: str) -> Ragged:
        return cls(np.zeros(n_rows + 1, dtype=np.int64), np.empty(0, dtype=dtype))


ITEM_ARRAYS: tuple[ItemArray, ...] = (
    ItemArray("item_factors", "<f4", "float32", "n_factors", ("model.npz", "item_factors"), finite=True),
    ItemArray("neighbours", "<i4", "int32", "n_neighbours", ("neighbours.npz", "items")),
    ItemArray("neighbour_scores", "<f2", "float32", "n_neighbours", ("neighbours.npz", "scores")),
    ItemArray("covisit", "<i4", "int32", "n_covisit", ("covisit.npz", "items"), required=False),
    ItemArray("covisit_scores", "<f2", "float32", "n_covisit", ("covisit.npz", "scores"), required=False),
    ItemArray("popularity", "<f4", "float32", None, ("popularity.npz", "scores"), finite=True),
)

# A user's vector travels as float16 (128 B at 64 factors instead of 256; its effect on quality is
# measured in bench/README.md) and index arrays as uint16 when the version has at most 65,536 items
# (``user_layout``): Redis holds one record per user, so these bytes are most of a version.
USER_ARRAYS: tuple[UserArray, ...] = (
    UserArray("vector", "<f2", "float32", ("model.npz", "user_factors"), "dense", finite=True),
    UserArray("candidates", "<i4", "int32", ("candidates.npz", "items"), "padded"),
    UserArray("seen", "<i4", "int32", ("seen.npz", "items"), "ragged", required=False),
)
COMPACT_INDEX_WIRE = "<u2"  # item indices of a version with at most 2**16 items

# Arrays that hold item indices (checked against n_items; -1 is padding).
INDEX_ARRAYS = frozenset(
    [a.name for a in ITEM_ARRAYS if a.memory == "int32"] + [a.name for a in USER_ARRAYS if a.memory == "int32"]
)
ITEM_ARRAY = {a.name: a for a in ITEM_ARRAYS}
USER_ARRAY = {a.name: a for a in USER_ARRAYS}

# The user-record layout of versions published before the layout was recorded in their meta.
LEGACY_USER_LAYOUT: tuple[tuple[str, str], ...] = (("vector", "<f4"), ("candidates", "<i4"))


def user_layout(n_items: int) -> list[list[str]]:
    """[[name, wire dtype], ...] of the user record this code writes for a version of ``n_items`` items;
    recorded in each version's meta, so readers decode any version with the layout it was written in."""
    compact = n_items <= 2**16
    return [[a.name, COMPACT_INDEX_WIRE if compact and a.name in INDEX_ARRAYS else a.wire] for a in USER_ARRAYS]

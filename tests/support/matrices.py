"""Known-answer interaction matrices shared by the batch unit tests."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix


def block_matrix() -> csr_matrix:
    """8 users x 8 items: users 0-3 use items 0-3, users 4-7 items 4-7; user u misses item u (diagonal).

    The right recommendation for user u is item u: the one item of its own block it has not seen.
    """
    dense = np.zeros((8, 8), dtype=np.float32)
    dense[:4, :4] = 1.0
    dense[4:, 4:] = 1.0
    np.fill_diagonal(dense, 0.0)
    return csr_matrix(dense)

"""The candidate model (ALS, EASE or both fused) builds the precomputed lists, chosen by Settings or by
``tune``; the precomputed tier serves a non-ALS list in its own order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from batch.artifacts import read_json
from batch.candidates import candidate_lists, top_n_unseen
from batch.ease import EaseParams, ease_top_n, train_ease
from batch.fusion import fuse_candidates
from batch.pipeline import run_batch
from batch.train import AlsParams, train_als
from batch.tuning_file import CandidateChoice, read_tuning
from lab.datasets import SYNTHETIC_END, ingest_synthetic
from online.blend import BlendParams
from shared.config import get_settings
from shared.errors import ConfigError, ModelError
from tests.support.matrices import block_matrix
from tests.support.tuning import BLEND, write_tuning

EASE = EaseParams(l2=10.0, max_items=1_000)


@pytest.fixture(scope="module")
def fitted() -> tuple[csr_matrix, object]:
    matrix = block_matrix()
    return matrix, train_als(matrix, AlsParams(factors=4, regularization="auto", alpha=4.0, iterations=10), seed=1)


def test_each_candidate_model_gives_unseen_lists_of_n(fitted) -> None:
    matrix, model = fitted
    n = 5
    lists = {kind: candidate_lists(kind, model, matrix, n, EASE)[0] for kind in ("als", "ease", "als+ease")}
    for kind, ids in lists.items():
        assert ids.shape == (matrix.shape[0], n) and ids.dtype == np.int32, kind
        for u in range(matrix.shape[0]):
            seen = set(matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]].tolist())
            assert not seen & set(ids[u][ids[u] >= 0].tolist()), (kind, u)
    np.testing.assert_array_equal(lists["als"], top_n_unseen(model, matrix, n)[0])
    np.testing.assert_array_equal(lists["ease"], ease_top_n(train_ease(matrix, EASE), matrix, n)[0])
    fused, _ = fuse_candidates(lists["als"], lists["ease"], n)
    np.testing.assert_array_equal(lists["als+ease"], fused)
    assert not np.array_equal(lists["als"], lists["ease"])  # the models do differ on this matrix


def test_an_unknown_model_or_a_catalogue_past_the_ease_limit_is_refused(fitted) -> None:
    matrix, model = fitted
    with pytest.raises(ModelError, match="unknown candidate model 'knn'"):
        candidate_lists("knn", model, matrix, 5, EASE)
    with pytest.raises(ModelError, match=r"EASE on \d+ items needs about .* max_items=3"):
        candidate_lists("ease", model, matrix, 5, EaseParams(l2=10.0, max_items=3))


def test_run_batch_builds_the_configured_or_tuned_candidate_model_and_says_so(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", als_factors=4, als_iterations=2, n_candidates=20)
    ingest_synthetic(settings, users=120, items=40, days=3, seed=5)
    als = read_json(run_batch(settings, SYNTHETIC_END) / "manifest.json")
    assert als["params"]["candidate_model"] == "als" and "ease_l2" not in als["params"]
    assert als["params"]["regularization_rule"] == "auto" and isinstance(als["params"]["regularization"], float)

    fused_settings = settings.model_copy(update={"candidate_model": "als+ease", "ease_l2": 50.0})
    fused_dir = run_batch(fused_settings, SYNTHETIC_END)
    fused = read_json(fused_dir / "manifest.json")
    assert fused["params"]["candidate_model"] == "als+ease" and fused["params"]["ease_l2"] == 50.0
    assert fused["params"]["candidates_source"] == "settings"
    assert fused["content_hash"] != als["content_hash"]  # the lists are part of the version

    write_tuning(settings.tuning_path, {"best": BLEND, "candidates": {"model": "ease", "ease_l2": 25.0}})
    assert read_tuning(settings.tuning_path).candidates == CandidateChoice("ease", 25.0)
    tuned = read_json(run_batch(settings, SYNTHETIC_END) / "manifest.json")
    assert tuned["params"]["candidate_model"] == "ease" and tuned["params"]["ease_l2"] == 25.0
    assert tuned["params"]["candidates_source"] == "tuning"


def test_a_malformed_candidates_section_is_refused(tmp_path: Path) -> None:
    path = write_tuning(tmp_path / "best.json", {"best": BLEND, "candidates": {"model": "svd"}})
    with pytest.raises(ConfigError, match=r"candidates\.model: Input should be 'als', 'ease' or 'als\+ease'"):
        read_tuning(path)


def test_the_precomputed_tier_keeps_a_non_als_list_in_its_order() -> None:
    base = BlendParams()
    assert not base.for_version({"params": {"candidate_model": "als"}}).precomputed_by_rank
    assert not base.for_version({"params": {}}).precomputed_by_rank  # versions from before the setting
    assert base.for_version({"params": {"candidate_model": "ease"}}).precomputed_by_rank
    assert base.for_version({"params": {"candidate_model": "als+ease"}}).precomputed_by_rank

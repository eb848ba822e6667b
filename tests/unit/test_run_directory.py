"""What a run directory holds for later steps: computed once by the pipeline, published as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch.artifacts import HASHED_FILES, POPULAR_FILE, RunArtifacts, load_npz, read_json, write_json
from batch.candidates import popular_lists
from batch.pipeline import run_batch
from batch.publish import version_data
from feature_store.keys import ALL_CATEGORIES
from lab.datasets import SYNTHETIC_END, ingest_synthetic
from shared.config import Settings, get_settings
from shared.errors import ArtifactNotFound


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    settings = get_settings(data_dir=tmp_path_factory.mktemp("run"), als_factors=4, als_iterations=2, popular_n=7)
    ingest_synthetic(settings, users=150, items=60, days=3, seed=3)
    return settings


@pytest.fixture(scope="module")
def run_dir(settings: Settings) -> Path:
    return run_batch(settings, SYNTHETIC_END)


def test_the_popular_lists_are_computed_by_the_run_and_published_as_saved(run_dir: Path) -> None:
    with np.load(run_dir / POPULAR_FILE, allow_pickle=False) as saved:
        assert saved["categories"].dtype.kind == "U" and saved["items"].dtype == np.int32
        assert saved["indptr"].tolist()[0] == 0 and saved["indptr"][-1] == len(saved["items"])
    arts = RunArtifacts.load(run_dir)
    popularity = load_npz(run_dir / "popularity.npz")["scores"]
    expected = popular_lists(popularity, arts.items, 7)
    assert arts.popular is not None and list(arts.popular) == list(expected)
    assert next(iter(arts.popular)) == ALL_CATEGORIES and len(arts.popular) == arts.items["category"].nunique() + 1
    assert all(np.array_equal(arts.popular[name], expected[name]) for name in expected)
    assert all(len(idx) <= 7 for idx in arts.popular.values())
    assert version_data(arts).popular is arts.popular  # publish transports, it computes nothing
    assert read_json(run_dir / "manifest.json")["params"]["popular_n"] == 7


def test_popular_lists_are_part_of_the_version_and_the_gate_inputs_are_not(settings: Settings, run_dir: Path) -> None:
    assert POPULAR_FILE in HASHED_FILES and "eval_model.npz" not in HASHED_FILES
    before = read_json(run_dir / "manifest.json")["content_hash"]
    longer = run_batch(settings.model_copy(update={"popular_n": 8}), SYNTHETIC_END)
    try:
        assert read_json(longer / "manifest.json")["content_hash"] != before
    finally:
        assert read_json(run_batch(settings, SYNTHETIC_END) / "manifest.json")["content_hash"] == before


def test_a_run_from_before_popular_lists_must_be_rebuilt_to_publish(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / run_dir.name
    old.mkdir()
    manifest = read_json(run_dir / "manifest.json")
    for path in run_dir.iterdir():
        if path.name not in (POPULAR_FILE, "manifest.json"):
            (old / path.name).write_bytes(path.read_bytes())
    write_json(old / "manifest.json", {k: v for k, v in manifest.items() if k != "files"})
    arts = RunArtifacts.load(old)  # still loads: the gate compares with such a serving run
    assert arts.popular is None
    with pytest.raises(ArtifactNotFound, match=r"run-batch --date \d{4}-\d{2}-\d{2}"):
        version_data(arts)

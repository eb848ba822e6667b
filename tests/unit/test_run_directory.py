"""What a run directory holds for later steps: computed once by the pipeline, published as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch.artifacts import HASHED_FILES, POPULAR_FILE, RunArtifacts, load_npz, read_json, write_json
from batch.candidates import popular_lists
from batch.dataset import load_interactions
from batch.holdout import holdout_indices, temporal_split
from batch.matrix import build_id_maps, confidence_matrix
from batch.pipeline import run_batch
from batch.publish import version_data
from batch.quality import EVAL_HOLDOUT_FILE, EVAL_TRAIN_FILE, GateInputs
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


def test_popular_lists_are_part_of_the_version(settings: Settings, run_dir: Path) -> None:
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


def test_the_gate_inputs_are_the_runs_own_split_and_are_not_hashed(settings: Settings, run_dir: Path) -> None:
    """The quality gate reads what the run measured on instead of splitting the interactions again."""
    gate = GateInputs.load(run_dir)
    assert {EVAL_HOLDOUT_FILE, EVAL_TRAIN_FILE}.isdisjoint(HASHED_FILES)
    interactions = load_interactions(settings.interactions_dir, SYNTHETIC_END, settings.training_window_days)
    maps = build_id_maps(interactions)
    train_df, holdout = temporal_split(interactions, settings.holdout_per_user)
    expected = holdout_indices(holdout, maps.user_index, maps.item_index)
    assert gate.users.tolist() == sorted(expected)
    assert all(
        np.array_equal(gate.items[gate.indptr[j] : gate.indptr[j + 1]], expected[u]) for j, u in enumerate(gate.users)
    )
    train = confidence_matrix(train_df, maps, settings.confidence, settings.bm25_k1, settings.bm25_b)
    assert (gate.train != train).nnz == 0 and gate.train.dtype == train.dtype
    # the fair targets: held-out items the user had an event with on the partition day
    today = interactions[interactions["ts"].dt.date == SYNTHETIC_END]
    fresh = set(zip(today["user_id"], today["item_id"], strict=True))
    known = np.ones(maps.n_users, dtype=bool)
    fair = {u: {i for i in items if (u, i) in fresh} for u, items in holdout.items()}
    fair = {maps.user_index[u]: sorted(maps.item_index[i] for i in items) for u, items in fair.items() if items}
    got = gate.fair_targets(known)
    assert fair and {u: items.tolist() for u, items in got.items()} == fair
    known[next(iter(fair))] = False  # a user the serving model does not know is left out
    assert set(gate.fair_targets(known)) == set(fair) - {next(iter(fair))}

"""A tuned re-ranker travels from best.json into the next batch run; runs from before co-visitation still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch.artifacts import RunArtifacts, read_json, write_json
from batch.pipeline import run_batch
from batch.publish import version_data
from batch.tuning_file import read_tuning
from lab.datasets import SYNTHETIC_END, ingest_synthetic
from online.reranker import LinearReranker
from shared.config import get_settings
from shared.errors import ArtifactNotFound, ConfigError
from tests.support.tuning import BLEND, write_tuning

SPEC = {"kind": "linear", "features": ["session_z", "covisit"], "weights": [1.5, 0.25], "bias": 0.0, "c": 1.0}


def test_reader_returns_the_section_or_none(tmp_path: Path) -> None:
    assert read_tuning(tmp_path / "missing.json").reranker is None
    assert read_tuning(write_tuning(tmp_path / "old.json", {"best": BLEND})).reranker is None
    assert read_tuning(write_tuning(tmp_path / "best.json", {"best": BLEND, "reranker": SPEC})).reranker == SPEC


@pytest.mark.parametrize(
    "spec",
    [
        {**SPEC, "kind": "trees"},
        {**SPEC, "weights": [1.0]},
        {**SPEC, "weights": [1.0, "x"]},
        {**SPEC, "features": ["covisit", "covisit"]},
        {**SPEC, "features": "covisit"},
        {**SPEC, "bias": float("inf")},
        [1, 2],
    ],
)
def test_a_malformed_section_is_refused(tmp_path: Path, spec: object) -> None:
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"best": BLEND, "reranker": spec}))  # json writes inf as Infinity
    with pytest.raises(ConfigError, match="reranker"):
        read_tuning(path)


def test_run_batch_publishes_the_reranker_and_old_runs_still_load(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", als_factors=4, als_iterations=2)
    ingest_synthetic(settings, users=120, items=40, days=3, seed=5)
    write_tuning(settings.tuning_path, {"best": BLEND, "reranker": SPEC})
    run_dir = run_batch(settings, SYNTHETIC_END)
    assert read_json(run_dir / "serving.json")["reranker"] == SPEC
    meta = version_data(RunArtifacts.load(run_dir)).meta
    served = LinearReranker.for_version(meta)
    assert served is not None and served.features == ("session_z", "covisit") and served.weights.tolist() == [1.5, 0.25]

    # the same run as an older release wrote it: no covisit.npz, no file list -> empty lists
    manifest = read_json(run_dir / "manifest.json")
    assert "covisit.npz" in manifest["files"]
    (run_dir / "covisit.npz").unlink()
    with pytest.raises(ArtifactNotFound, match="covisit"):  # a run that lists the file and lacks it is broken
        RunArtifacts.load(run_dir)
    del manifest["files"]
    write_json(run_dir / "manifest.json", manifest)
    arts = RunArtifacts.load(run_dir)
    covisit, scores = arts.item_arrays["covisit"], arts.item_arrays["covisit_scores"]
    assert covisit.shape == (len(arts.items), 0) and scores.shape == covisit.shape

"""Tuned ALS params travel from ``best.json`` into the next batch run: the reader's strictness, the run's use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch.artifacts import read_json
from batch.pipeline import run_batch
from batch.train import AlsParams
from batch.tuning_file import read_tuning
from lab.datasets import SYNTHETIC_END, ingest_synthetic
from shared.config import get_settings
from shared.errors import ConfigError
from tests.support.tuning import BLEND, write_tuning

ALS = {"factors": 6, "regularization": 0.2, "alpha": 10.0, "iterations": 3}


def test_a_valid_als_section_is_read_as_params(tmp_path: Path) -> None:
    path = write_tuning(tmp_path / "best.json", {"best": BLEND, "als": {**ALS, "note": "extra keys are ignored"}})
    assert read_tuning(path).als == AlsParams(factors=6, regularization=0.2, alpha=10.0, iterations=3)
    assert read_tuning(path).blend == BLEND


def test_no_file_or_a_file_from_before_the_als_search_means_settings(tmp_path: Path) -> None:
    assert read_tuning(tmp_path / "missing.json").als is None
    old = write_tuning(tmp_path / "best.json", {"best": BLEND, "grid": [], "metric": "hybrid_hit_rate_at_10"})
    assert read_tuning(old).als is None
    assert read_tuning(old).blend == BLEND  # and the old file's blend still holds


@pytest.mark.parametrize(
    ("als", "message"),
    [
        ({k: v for k, v in ALS.items() if k != "alpha"}, "als.alpha: Field required"),
        ({**ALS, "factors": 6.5}, r"als\.factors: Input should be a valid integer \(got 6\.5\)"),
        ({**ALS, "factors": "64"}, r"als\.factors: Input should be a valid integer \(got '64'\)"),
        ({**ALS, "iterations": True}, r"als\.iterations: Input should be a valid integer \(got True\)"),
        ({**ALS, "regularization": "0.1"}, r"als\.regularization: must be a number or 'auto'"),
        ({**ALS, "regularization": -1.0}, r"als\.regularization: must be >= 0"),
        ({**ALS, "regularization": float("nan")}, r"als\.regularization: must be a finite number"),
        ({**ALS, "factors": 0}, r"als\.factors: Input should be greater than or equal to 1 \(got 0\)"),
        ({**ALS, "alpha": 0.0}, r"als\.alpha: Input should be greater than 0 \(got 0\.0\)"),
        ([6, 0.2, 10.0, 3], r"als: Input should be a valid dictionary"),
        (None, r"als: null is not allowed: leave the key out instead"),
    ],
)
def test_a_malformed_als_section_is_refused(tmp_path: Path, als: object, message: str) -> None:
    path = write_tuning(tmp_path / "best.json", {"best": BLEND, "als": als})
    with pytest.raises(ConfigError, match=message):
        read_tuning(path)


def test_a_file_that_is_not_a_json_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "best.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a tuning result"):
        read_tuning(path)
    write_tuning(path, [ALS])
    with pytest.raises(ConfigError, match="not a tuning result"):
        read_tuning(path)


def test_run_batch_trains_with_the_tuned_params_and_says_so(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", als_factors=4, als_iterations=2)
    ingest_synthetic(settings, users=120, items=40, days=3, seed=5)
    plain = read_json(run_batch(settings, SYNTHETIC_END) / "manifest.json")
    assert plain["params"]["als_source"] == "settings" and plain["params"]["factors"] == 4

    write_tuning(settings.tuning_path, {"best": BLEND, "als": ALS})
    run_dir = run_batch(settings, SYNTHETIC_END)
    tuned = read_json(run_dir / "manifest.json")
    assert tuned["params"]["als_source"] == "tuning"
    assert {k: tuned["params"][k] for k in ALS} == ALS
    assert tuned["params"]["blend"] == BLEND
    model = np.load(run_dir / "model.npz", allow_pickle=False)
    assert model["user_factors"].shape == (tuned["n_users"], 6)
    assert model["item_factors"].shape == (tuned["n_items"], 6)
    assert tuned["content_hash"] != plain["content_hash"]


def test_run_batch_fails_before_any_work_on_a_malformed_als_section(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")  # no data at all: the file is read first
    write_tuning(settings.tuning_path, {"best": BLEND, "als": {**ALS, "iterations": -1}})
    with pytest.raises(ConfigError, match=r"als\.iterations: Input should be greater than or equal to 1"):
        run_batch(settings, SYNTHETIC_END)
    assert not settings.runs_dir.exists()

"""`hybridrec tune --data synthetic` on a small world, then the next `run-batch` in that data dir.

Checks the saved result (grid, split dates, seed, argmax) and that the chosen blend reaches the
version meta the API ranks with (run manifest -> batch.publish.version_data -> BlendParams.for_version).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batch.artifacts import RunArtifacts
from batch.publish import version_data
from online.ranking import BlendParams

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, dict, str, dict[str, str]]:
    root = tmp_path_factory.mktemp("tune")
    data_dir = root / "out" / "batch-data"  # tune into the scratch data dir, so a run-batch can follow
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    env["HYBRIDREC_ALS_FACTORS"] = "8"
    args = ["tune", "--data", "synthetic", "--users", "400", "--items", "150", "--days", "5", "--max-sessions", "150"]
    proc = _run([*args, "--seed", "3", "--out", str(root / "out"), "--data-dir", str(data_dir)], env)
    result = json.loads((data_dir / "tuning" / "best.json").read_text())
    return data_dir, result, proc.stderr, env


def test_result_records_every_grid_point_the_split_and_the_seed(tuned) -> None:
    _, result, stderr, _ = tuned
    assert len(result["grid"]) == 15
    assert {tuple(sorted(p["params"])) for p in result["grid"]} == {
        ("session_half_life", "weight_popularity", "weight_session", "weight_user")
    }
    assert {p["params"]["weight_session"] for p in result["grid"]} == {1.0}
    assert all(0.0 <= p["hybrid_hit_rate_at_10"] <= 1.0 for p in result["grid"])
    assert len({p["hybrid_hit_rate_at_10"] for p in result["grid"]}) > 1  # the weights change the ranking
    assert result["split"] == {
        "validation_train_through": "2026-01-29",
        "validation_replay_day": "2026-01-30",
        "test_train_through": "2026-01-30",
        "test_replay_day": "2026-01-31",
    }
    assert result["seed"] == 3 and result["metric"] == "hybrid_hit_rate_at_10"
    assert stderr.count("HitRate@10=") == 15 and "best:" in stderr


def test_chosen_point_is_the_first_argmax_of_the_validation_metric(tuned) -> None:
    result = tuned[1]
    scores = [p["hybrid_hit_rate_at_10"] for p in result["grid"]]
    best = scores.index(max(scores))
    assert result["best"] == result["grid"][best]["params"]
    assert result["best_validation"] == max(scores)


def test_test_day_is_scored_with_both_blends_on_the_same_sessions(tuned) -> None:
    test = tuned[1]["test"]
    assert test["tuned"]["params"] == tuned[1]["best"]
    assert test["default"]["params"]["weight_user"] == 1.0  # the Settings default
    assert test["default"]["n_targets"] == test["tuned"]["n_targets"] > 0
    assert all(0.0 <= test[b]["hybrid_hit_rate_at_10"] <= 1.0 for b in ("default", "tuned"))


def test_next_batch_run_publishes_the_tuned_blend(tuned) -> None:
    data_dir, result, _, env = tuned
    _run(["run-batch", "--date", "2026-01-31", "--data-dir", str(data_dir)], env)
    run_dir = data_dir / "runs" / "date=2026-01-31"
    assert json.loads((run_dir / "manifest.json").read_text())["params"]["blend"] == result["best"]
    meta = version_data(RunArtifacts.load(run_dir), popular_n=50).meta
    served = BlendParams().for_version(meta)
    assert {k: getattr(served, k) for k in result["best"]} == result["best"]

"""`hybridrec tune --data synthetic` on a small world, then the next `run-batch` in that data dir.

`--data synthetic` generates a log into <out>/data and tunes it as any data dir (`--data-dir`).
Checks the saved result (ALS points, blend grid, periods, seed, argmax), that the reported validation
scores are those of the validation period with a model trained on the days before it (recomputed
independently here, so no test-period number could have driven a choice), and that the chosen ALS
params and blend reach the next batch run and the version meta the API ranks with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from batch.artifacts import RunArtifacts
from batch.publish import version_data
from lab.ownlog import OwnLog, scratch_data_dir
from lab.periods import PeriodSpec
from lab.replay import evaluate_replay
from lab.serving import serving_model
from online.blend import BlendParams
from online.reranker import LinearReranker
from shared.config import Settings, get_settings

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"
WORLD = {"users": 400, "items": 150, "days": 5, "seed": 3, "max_sessions": 150}
ALS_GRID = ["--factors", "4,8", "--regularization", "0.05", "--alpha", "4", "--iterations", "15"]
BLEND_GRID = ["--weight-user", "0,0.5,1", "--weight-popularity", "0,0.4", "--weight-covisit", "0,1"]
METRIC = "hybrid_hit_rate_at_10"


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    return env | {f"HYBRIDREC_{k.upper()}": v for k, v in settings.items()}


def _run(args: list[str], env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr
    return proc


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("tune")
    data_dir = root / "out" / "data"  # the generated log's data dir: best.json lands there, a run-batch can follow
    world = [x for k, v in WORLD.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    # --no-reranker-gate: these tests follow the re-ranker into the published version whatever it scores
    args = ["tune", "--data", "synthetic", *world, *ALS_GRID, *BLEND_GRID, "--no-reranker-gate"]
    proc = _run([*args, "--out", str(root / "out")], _env(als_factors="8", als_regularization="0.05"))
    assert proc.stdout.strip() == str(data_dir / "tuning" / "best.json")
    result = json.loads((data_dir / "tuning" / "best.json").read_text())
    return data_dir, result, proc.stderr


def test_result_records_every_point_the_split_and_the_seed(tuned) -> None:
    _, result, stderr = tuned
    search = result["als_search"]
    assert search["start"] == {"factors": 8, "regularization": 0.05, "alpha": 4.0, "iterations": 15}  # Settings
    assert search["grid"] == {"factors": [4, 8], "regularization": [0.05], "alpha": [4.0], "iterations": [15]}
    assert [p["params"]["factors"] for p in search["points"]] == [8, 4]  # the start first, then the sweep
    assert len({p[METRIC] for p in search["points"]}) == 2  # the factors change what is served
    assert result["als"] in [p["params"] for p in search["points"]]
    # the 6 (weight_user, weight_popularity) pairs at the configured weight_covisit, then the other
    # weight_covisit value at the best pair
    assert len(result["grid"]) == 7
    pairs = [(p["params"]["weight_user"], p["params"]["weight_popularity"]) for p in result["grid"]]
    assert set(pairs[:6]) == {(u, w) for u in (0.0, 0.5, 1.0) for w in (0.0, 0.4)}
    configured = result["als_search"]["blend"]["weight_covisit"]
    assert {p["params"]["weight_covisit"] for p in result["grid"][:6]} == {configured}
    swept = result["grid"][6]["params"]
    assert swept["weight_covisit"] == ({0.0, 1.0} - {configured}).pop()
    best_pair = result["grid"][
        [p[METRIC] for p in result["grid"][:6]].index(max(p[METRIC] for p in result["grid"][:6]))
    ]
    assert (swept["weight_user"], swept["weight_popularity"]) == (
        best_pair["params"]["weight_user"],
        best_pair["params"]["weight_popularity"],
    )
    assert {p["params"]["weight_session"] for p in result["grid"]} == {1.0}
    split = result["split"]  # 5 days of about 20% of the events each: one day per period
    assert {k: split["periods"][k] for k in ("train", "validation", "test")} == {
        "train": ["2026-01-27", "2026-01-29"],
        "validation": ["2026-01-30", "2026-01-30"],
        "test": ["2026-01-31", "2026-01-31"],
    }
    assert split["validation"]["train_through"] < split["validation"]["replay"][0]
    assert split["test"]["train_through"] == split["validation"]["replay"][1] < split["test"]["replay"][0]
    assert result["seed"] == 3 and result["metric"] == METRIC
    # 2 ALS points, 3 candidate models (a 150-item catalogue: EASE is tried), 7 blends, 6 precomputed weights
    assert stderr.count("HitRate@10=") == 2 + 3 + 7 + 6 and "best ALS:" in stderr and "best blend:" in stderr
    rows = result["candidate_search"]
    assert [r["model"] for r in rows] == ["als", "ease", "als+ease"]
    batch_only = [r["batch_only_hit_rate_at_10"] for r in rows]
    assert result["candidates"]["model"] == rows[batch_only.index(max(batch_only))]["model"]


def test_each_choice_is_the_first_argmax_of_its_validation_scores(tuned) -> None:
    result = tuned[1]
    for rows, chosen, best in (
        (result["als_search"]["points"], result["als"], result["als_search"]["best_validation"]),
        (result["grid"], result["best"], result["best_validation"]),
    ):
        scores = [p[METRIC] for p in rows]
        chosen = {k: v for k, v in chosen.items() if k != "precomputed_weight_popularity"}  # its own stage
        assert chosen == {k: v for k, v in rows[scores.index(max(scores))]["params"].items() if k in chosen}
        assert best == max(scores)
    # the precomputed tier's own weight: the first argmax of batch-only HitRate@10 on validation
    rows = result["precomputed_grid"]
    batch = [r["batch_only_hit_rate_at_10"] for r in rows]
    assert [r["precomputed_weight_popularity"] for r in rows] == [0.0, 0.2, 0.4, 0.8, 1.6, 3.2]
    assert (
        result["best"]["precomputed_weight_popularity"]
        == rows[batch.index(max(batch))]["precomputed_weight_popularity"]
    )


def test_reported_validation_scores_are_day_l_minus_1_of_a_model_trained_through_l_minus_2(tuned, tmp_path) -> None:
    """Recomputed outside `tune`: the chosen points' scores come from validation data, never the test day."""
    data_dir, result, _ = tuned
    settings = get_settings(data_dir=tmp_path / "scratch", seed=3, **{f"als_{k}": v for k, v in result["als"].items()})
    scratch_data_dir(data_dir, settings.data_dir)
    own = OwnLog.open(settings, PeriodSpec())
    val = own.prepare(settings, own.stage("validation"))
    assert [str(val.stage.start), str(val.stage.end)] == result["split"]["validation"]["replay"]
    assert val.events["ts"].dt.date.min() >= val.stage.start > val.stage.run_partition
    serving = serving_model(val.run_dir)

    def hit_rate(blend: dict, serving=serving) -> float:
        params = dataclasses.replace(BlendParams.from_settings(settings), **blend)
        replay = evaluate_replay(
            serving, val.events, (10,), 3, WORLD["max_sessions"], params, variants=("hybrid",), max_targets=2_000
        )
        return replay["variants"]["hybrid"]["10"]["hit_rate"]

    assert hit_rate(result["als_search"]["blend"]) == result["als_search"]["best_validation"]
    # the blend is searched on the chosen candidate model's validation run
    chosen = settings.model_copy(update={"candidate_model": result["candidates"]["model"]})
    with_candidates = serving_model(own.prepare(chosen, own.stage("validation")).run_dir)
    assert hit_rate(result["best"], with_candidates) == result["best_validation"]
    assert result["test"]["tuned"][METRIC] != result["best_validation"]  # the test day is another sample


def test_test_day_scores_both_als_points_with_both_blends_on_the_same_sessions(tuned) -> None:
    result = tuned[1]
    test = result["test"]
    assert set(test) == {"default", "blend_only", "als_only", "tuned", "reranked"}
    reranked = test["reranked"]  # the learned re-ranker on the tuned ALS, over the tuned blend's pool
    test = {name: row for name, row in test.items() if name != "reranked"}  # the fixture is shared: no pop
    assert (reranked["als"], reranked["params"]) == (result["als"], result["best"])
    assert reranked["blend_" + METRIC] == test["tuned"][METRIC]  # the same targets, the same blend
    assert reranked["n_targets"] == test["tuned"]["n_targets"] and 0.0 <= reranked[METRIC] <= 1.0
    start, default_blend = result["als_search"]["start"], result["als_search"]["blend"]
    assert (test["default"]["als"], test["default"]["params"]) == (start, default_blend)
    assert (test["blend_only"]["als"], test["blend_only"]["params"]) == (start, result["best"])
    assert (test["als_only"]["als"], test["als_only"]["params"]) == (result["als"], default_blend)
    assert (test["tuned"]["als"], test["tuned"]["params"]) == (result["als"], result["best"])
    assert default_blend["weight_user"] == Settings.model_fields["weight_user"].default  # the Settings default
    assert len({row["n_targets"] for row in test.values()}) == 1 and test["tuned"]["n_targets"] > 0
    assert all(0.0 <= row[m] <= 1.0 for row in test.values() for m in (METRIC, "batch_only_hit_rate_at_10"))


def test_next_batch_run_trains_with_the_tuned_als_and_publishes_the_tuned_blend(tuned) -> None:
    data_dir, result, _ = tuned
    _run(["run-batch", "--date", "2026-01-31", "--data-dir", str(data_dir)], _env(als_factors="16"))  # not in grid
    run_dir = data_dir / "runs" / "date=2026-01-31"
    params = json.loads((run_dir / "manifest.json").read_text())["params"]
    assert params["als_source"] == "tuning" and {k: params[k] for k in result["als"]} == result["als"]
    assert params["blend"] == result["best"]
    with np.load(run_dir / "model.npz", allow_pickle=False) as model:
        assert model["item_factors"].shape[1] == result["als"]["factors"]
    meta = version_data(RunArtifacts.load(run_dir)).meta
    served = BlendParams().for_version(meta)
    assert {k: getattr(served, k) for k in result["best"]} == result["best"]
    assert params["reranker"] == result["reranker"]  # published with the version; the API reads it so
    assert LinearReranker.for_version(meta).features == tuple(result["reranker"]["features"])


def test_reranker_is_trained_on_the_validation_sessions(tuned) -> None:
    result = tuned[1]
    spec = result["reranker"]
    assert spec["data"]["n_sessions"] == result["validation"]["n_sessions"]
    assert spec["data"]["n_queries_used"] > 0 and spec["c"] in (0.01, 0.1, 1.0, 10.0)
    assert spec["c_grid_hit_rate_at_10_in_pool"][str(spec["c"])] == max(spec["c_grid_hit_rate_at_10_in_pool"].values())


def test_junk_in_a_grid_option_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _run(["tune", "--data", "synthetic", "--alpha", "4,x", "--out", str(out)], _env(), code=2)
    assert "--alpha" in proc.stderr and "'x'" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_evaluate_with_the_tuning_file_reproduces_the_tuned_test_rows(tuned, tmp_path) -> None:
    """`evaluate --tuning best.json` trains and publishes with the file like any data dir would; its replay
    of the same test day, seed and sample gives the very numbers `tune` reported for the test day."""
    _, result, _ = tuned
    data_dir = tuned[0]
    world = [x for k, v in WORLD.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    out = tmp_path / "report"
    _run(
        [
            "evaluate",
            "--data",
            "synthetic",
            *world,
            "--out",
            str(out),
            "--tuning",
            str(data_dir / "tuning" / "best.json"),
        ],
        _env(),
    )
    replay = json.loads((out / "report.json").read_text())["replay"]
    assert replay["variants"]["reranked"]["10"]["hit_rate"] == result["test"]["reranked"][METRIC]
    assert replay["variants"]["hybrid"]["10"]["hit_rate"] == result["test"]["tuned"][METRIC]
    assert replay["variants"]["batch_only"]["10"]["hit_rate"] == result["test"]["tuned"]["batch_only_hit_rate_at_10"]
    assert set(replay["strategies"]["reranked"]) <= {"reranked", "precomputed", "popular"}
    assert "re-ranked / hybrid (blend)" in (out / "report.md").read_text()

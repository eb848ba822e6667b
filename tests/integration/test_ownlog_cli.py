"""`hybridrec tune --data-dir DIR` and `evaluate --data-dir DIR` on a log ingested as a user would.

The log is generated for dates of its own (ending 2025-03-10, not the lab's synthetic end date) and
ingested with the CLI, so the periods can only come from the data. Checks that the batch runs read DIR
but never write to it (tune adds DIR/tuning/best.json and nothing else), that the validation run trains
on the days before the validation period only and the test run on the days before the test period
(their manifests' windows and row counts), and that `evaluate` picks up DIR's tuning file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"
WORLD = ["--users", "400", "--items", "150", "--days", "6", "--seed", "3", "--end-date", "2025-03-10"]
GRID = [
    *("--factors", "4,8", "--regularization", "0.05", "--alpha", "4", "--iterations", "15"),
    *("--weight-user", "0,1", "--weight-popularity", "0,0.4", "--weight-covisit", "0,1"),
    *("--precomputed-weight-popularity", "0.2,0.8", "--max-sessions", "150"),
]
# 6 days of about 1/6 of the events each: 10% is one day for the test and one for validation
PERIODS = {
    "train": ["2025-03-05", "2025-03-08"],
    "validation": ["2025-03-09", "2025-03-09"],
    "test": ["2025-03-10"] * 2,
}


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    return env | {f"HYBRIDREC_{k.upper()}": v for k, v in settings.items()} | {"HYBRIDREC_ALS_FACTORS": "8"}


def _run(args: list[str], env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN), *args], env=env or _env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == code, proc.stderr
    proc.stderr = " ".join(proc.stderr.split())  # rich wraps long lines; phrases are checked unwrapped
    return proc


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _rows(data_dir: Path, first: str, last: str) -> int:
    """Rows ingested into the partitions first..last (inclusive)."""
    parts = [
        p for d in sorted((data_dir / "interactions").iterdir()) if first <= d.name[5:] <= last for p in d.iterdir()
    ]
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ownlog") / "mylog"
    _run(["generate", *WORLD, "--data-dir", str(root)])
    raw = root / "raw"
    _run(["ingest", str(raw / "interactions.parquet"), "--items", str(raw / "items.parquet"), "--data-dir", str(root)])
    return root


@pytest.fixture(scope="module")
def tuned(data_dir: Path, tmp_path_factory) -> tuple[dict[str, str], Path, dict, str]:
    before = _snapshot(data_dir)
    out = tmp_path_factory.mktemp("tune-out")
    proc = _run(["tune", "--data-dir", str(data_dir), "--out", str(out), *GRID, "--no-reranker-gate"])
    assert proc.stdout.strip() == str(data_dir / "tuning" / "best.json")
    return before, out, json.loads((data_dir / "tuning" / "best.json").read_text()), proc.stderr


def test_tune_writes_best_json_into_the_data_dir_and_nothing_else(data_dir: Path, tuned) -> None:
    before, out, result, _ = tuned
    after = _snapshot(data_dir)
    assert set(after) - set(before) == {"tuning/best.json"}
    assert {k: after[k] for k in before} == before  # nothing DIR had was touched
    assert (out / "batch-data" / "interactions").is_symlink()  # the runs read DIR through links...
    assert sorted(p.name for p in (out / "batch-data" / "runs").iterdir()) == ["date=2025-03-08", "date=2025-03-09"]
    assert result["source"] == str(data_dir) and {"als", "best", "reranker"} <= set(result)


def test_periods_are_cut_from_the_logs_own_dates(data_dir: Path, tuned) -> None:
    split = tuned[2]["split"]
    assert {k: split["periods"][k] for k in ("train", "validation", "test")} == PERIODS
    assert split["periods"]["events"] == {
        name: _rows(data_dir, *PERIODS[name]) for name in ("train", "validation", "test")
    }
    assert split["validation"]["replay"] == PERIODS["validation"] and split["test"]["replay"] == PERIODS["test"]
    assert split["sessions"] == "session_id"


def test_validation_never_sees_test_events(data_dir: Path, tuned) -> None:
    _, out, result, _ = tuned
    runs = out / "batch-data" / "runs"
    val = json.loads((runs / "date=2025-03-08" / "manifest.json").read_text())
    test = json.loads((runs / "date=2025-03-09" / "manifest.json").read_text())
    assert val["window"]["end"] == "2025-03-08" < PERIODS["validation"][0]  # validation: training days only
    assert val["n_interactions"] == _rows(data_dir, "2025-03-05", "2025-03-08")
    assert test["window"]["end"] == "2025-03-09" < PERIODS["test"][0]  # test: training + validation days
    assert test["n_interactions"] == _rows(data_dir, "2025-03-05", "2025-03-09")
    # the validation replay is the validation day's events, every one of them (known users or not)
    assert result["split"]["validation"]["replay_counts"]["n_events"] == _rows(data_dir, *PERIODS["validation"])
    assert result["split"]["validation"]["run_window"]["end"] == "2025-03-08"
    assert result["split"]["test"]["run_window"]["end"] == "2025-03-09"
    assert test["params"]["als_source"] == "settings"  # the search's runs never read a tuning file


def test_evaluate_uses_the_data_dirs_tuning_and_serves_no_seen_item(data_dir: Path, tuned, tmp_path: Path) -> None:
    result = tuned[2]
    before = _snapshot(data_dir)
    proc = _run(["evaluate", "--data-dir", str(data_dir), "--out", str(tmp_path / "report"), "--max-sessions", "150"])
    assert _snapshot(data_dir) == before
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    protocol, replay = report["protocol"], report["replay"]
    assert protocol["name"] == "temporal" and protocol["tuning"] == str(data_dir / "tuning" / "best.json")
    assert protocol["replay_period"] == PERIODS["test"] and protocol["test_run"]["train_through"] == "2025-03-09"
    tuned_als = dict(result["als"])
    if tuned_als["regularization"] == "auto":  # the run resolves it on its own training matrix
        assert protocol["regularization_rule"] == "auto" and protocol["als"]["regularization"] > 0
        tuned_als["regularization"] = protocol["als"]["regularization"]
    assert protocol["als"] == tuned_als and protocol["als_source"] == "tuning"
    assert protocol["candidate_model"] == result["candidates"]["model"]
    assert "reranked" in replay["variants"]
    assert {v: replay["seen_share_at_10"][v] for v in ("batch_only", "hybrid", "reranked")} == dict.fromkeys(
        ("batch_only", "hybrid", "reranked"), 0.0
    )
    assert {"hybrid_vs_batch_only", "hybrid_vs_session_only"} <= set(replay["paired_hit_rate_at_10"])
    assert replay["data"]["period_n_events"] == _rows(data_dir, *PERIODS["test"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "test 2025-03-10..2025-03-10" in md and "tuning: " in proc.stderr


def test_a_dir_without_interactions_is_refused_before_any_work(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(["tune", "--data-dir", str(empty), "--out", str(tmp_path / "out")], code=2)
    assert "has no interactions" in proc.stderr and "hybridrec ingest" in proc.stderr
    assert list(empty.iterdir()) == [] and not (tmp_path / "out" / "batch-data").exists()


def test_a_scratch_dir_inside_the_data_dir_is_refused(data_dir: Path) -> None:
    before = _snapshot(data_dir)
    proc = _run(["evaluate", "--data-dir", str(data_dir), "--out", str(data_dir / "reports")], code=2)
    assert "overlap" in proc.stderr
    assert _snapshot(data_dir) == before and not (data_dir / "reports").exists()

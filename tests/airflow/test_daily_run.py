"""A real dag.test() of hybridrec_daily against a real redis-server on a small generated data set."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest
import redis

from tests.airflow.conftest import LAST_DAY, generated_data

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db) -> Iterator[dict]:
    with generated_data(tmp_path_factory.mktemp("daily")) as env:
        yield env


@pytest.fixture()
def settings_env(env: dict, monkeypatch) -> dict:
    monkeypatch.setenv("HYBRIDREC_DATA_DIR", str(env["data"]))
    monkeypatch.setenv("HYBRIDREC_REDIS_URL", env["redis"])
    monkeypatch.setenv("HYBRIDREC_ALS_FACTORS", "16")
    return env


def _run(day: dt.date, mark_success_pattern: str | None = None, **conf):
    """dag.test() for the run whose data interval is ``day`` (logical date = the next midnight); tasks
    matching ``mark_success_pattern`` are marked successful without running."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).dags["hybridrec_daily"]
    logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC").add(days=1)
    start = time.perf_counter()
    run = dag.test(logical_date=logical, run_conf=conf or None, mark_success_pattern=mark_success_pattern)
    print(f"dag.test() for {day}: {run.state} in {time.perf_counter() - start:.1f}s")
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def _published(client: redis.Redis) -> dict[bytes, bytes]:
    return {k: client.get(k) for k in client.scan_iter(match=b"hr:v:*", count=10_000)}


def test_daily_run_publishes_and_is_idempotent(settings_env: dict) -> None:
    client = redis.Redis.from_url(settings_env["redis"])
    day = LAST_DAY - dt.timedelta(days=1)
    run, states = _run(day)
    assert run.state == "success", states
    version = client.get("hr:current").decode()
    assert version.startswith(day.isoformat())
    meta = json.loads(client.get(f"hr:v:{version}:meta"))
    assert meta["metrics"]["als"]["ndcg"] > meta["metrics"]["popularity"]["ndcg"]
    run_dir = settings_env["data"] / f"runs/date={day}"
    assert json.loads((run_dir / "comparison.json").read_text())["note"] == "nothing published yet"
    before = _published(client)

    run, states = _run(day)  # the same date again
    assert run.state == "success", states
    assert client.get("hr:current").decode() == version
    assert _published(client) == before
    client.close()


def test_quality_gate_refuses_a_worse_model_and_force_publish_overrides(settings_env: dict, monkeypatch) -> None:
    client = redis.Redis.from_url(settings_env["redis"])
    serving = client.get("hr:current").decode()
    monkeypatch.setenv("HYBRIDREC_ALS_FACTORS", "1")
    monkeypatch.setenv("HYBRIDREC_ALS_ITERATIONS", "1")
    run, states = _run(LAST_DAY)
    assert run.state == "failed"
    assert states["quality_gate"] == "failed" and states["publish"] == "upstream_failed"
    assert client.get("hr:current").decode() == serving
    comparison = json.loads((settings_env["data"] / f"runs/date={LAST_DAY}/comparison.json").read_text())
    assert comparison["candidate"]["ndcg"] < comparison["current"]["ndcg"] * 0.95
    assert comparison["current_version"] == serving and comparison["n_users"] > 20

    run, states = _run(LAST_DAY, force_publish=True)
    assert run.state == "success", states
    newest = client.get("hr:current").decode()
    assert newest.startswith(LAST_DAY.isoformat())

    # a backfill of an older day builds its run but never moves serving back in time
    older = LAST_DAY - dt.timedelta(days=3)
    run, states = _run(older)
    assert run.state == "success", states
    assert client.get("hr:current").decode() == newest
    assert (settings_env["data"] / f"runs/date={older}/manifest.json").exists()
    assert "later day" in json.loads((settings_env["data"] / f"runs/date={older}/comparison.json").read_text())["note"]
    client.close()


def test_hybridrec_backfill_rebuilds_the_same_artifacts_as_the_dag(settings_env: dict) -> None:
    """Without Airflow, `hybridrec backfill --force` must reproduce the DAG's run byte for byte."""
    import subprocess
    import sys

    day = LAST_DAY - dt.timedelta(days=1)  # built by the DAG in the first test of this module
    manifest = settings_env["data"] / f"runs/date={day}/manifest.json"
    dag_hash = json.loads(manifest.read_text())["content_hash"]
    cli = Path(sys.executable).parent / "hybridrec"
    out = subprocess.run(
        [str(cli), "backfill", "--start", day.isoformat(), "--end", day.isoformat(), "--force"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "1 built" in out.stderr
    assert json.loads(manifest.read_text())["content_hash"] == dag_hash

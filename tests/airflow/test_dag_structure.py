"""The DAG files import cleanly, cheaply, and wire the expected task graph."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.airflow.conftest import ROOT

pytestmark = pytest.mark.airflow
HEAVY = {"batch", "feature_store", "online", "implicit", "sklearn", "scipy", "redis", "pyarrow"}
DAG_FILES = sorted(p.name for p in (ROOT / "dags").glob("hybridrec_*.py"))


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors_and_both_dags_present(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert {"hybridrec_daily", "hybridrec_events_compaction"} <= set(dagbag.dag_ids)


def test_daily_task_graph(dagbag) -> None:
    dag = dagbag.get_dag("hybridrec_daily")
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {
        ("ingest", "train"),
        ("train", "shard_users"),
        ("shard_users", "candidates_shard"),
        ("candidates_shard", "seal_run"),
        ("seal_run", "compare_with_serving"),
        ("compare_with_serving", "quality_gate"),
        ("quality_gate", "begin_publish"),
        ("begin_publish", "publish_shard"),
        ("begin_publish", "publish"),
        ("publish_shard", "publish"),
        ("publish", "prune"),
    }
    assert dag.max_active_runs == 1 and dag.doc_md
    assert all(t.doc_md for t in dag.tasks)
    assert dag.get_task("quality_gate").retries == 0
    assert dag.get_task("publish").retries >= 2 and dag.get_task("publish").retry_exponential_backoff
    # the user-range tasks are mapped over the ranges their upstream returns (dynamic task mapping) ...
    for mapped in ("candidates_shard", "publish_shard"):
        task = dag.get_task(mapped)
        assert task.is_mapped and "shard" in task.op_kwargs_expand_input.value, mapped
        assert task.retries >= 2, mapped
    # ... and what follows them also runs when the map is empty (unsharded: the mapped task is skipped)
    assert dag.get_task("seal_run").trigger_rule == "none_failed"
    assert dag.get_task("publish").trigger_rule == "none_failed"


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_dag_file_does_no_heavy_work_at_import(dag_file: str) -> None:
    """Import the DAG file after Airflow itself and report what it added: no project or ML modules."""
    probe = (
        "import json, runpy, sys, time\n"
        "import airflow.sdk, pendulum\n"
        "from airflow.timetables.interval import CronDataIntervalTimetable\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        f"runpy.run_path({str(ROOT / 'dags' / dag_file)!r})\n"
        "dt = time.perf_counter() - t\n"
        "added = sorted({m.split('.')[0] for m in set(sys.modules) - before})\n"
        "print(json.dumps({'seconds': dt, 'added': added}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{dag_file}: module body took {report['seconds'] * 1000:.1f} ms, added {report['added']}")
    assert not HEAVY & set(report["added"]), f"{dag_file} imports {HEAVY & set(report['added'])} at module level"


def test_the_celery_executor_loads_with_the_locked_celery(airflow_db) -> None:
    """docker-compose's `celery` profile runs CeleryExecutor from the image's `celery` extra, so it must import
    with the celery the lock holds (celery 5.7 removed what the provider imports from celery.backends.database)."""
    pytest.importorskip("airflow.providers.celery", reason="the 'celery' extra: ./dev test installs it")
    from airflow.providers.celery.executors import celery_executor
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    assert CeleryExecutor.__name__ == "CeleryExecutor"
    assert celery_executor.app.main  # the Celery app the workers run (`airflow celery worker`)

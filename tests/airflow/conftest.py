"""Airflow test setup: a private AIRFLOW_HOME with a migrated SQLite DB, this repo's dags/ folder.

Airflow reads its configuration when first imported, so the environment is set here, at conftest
import time, before any test module imports airflow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="hybridrec-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)

# Only now may airflow be imported (it reads the environment above once, at import).
pytest.importorskip("airflow", reason="Apache Airflow is the 'airflow' extra: ./dev test installs it")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per test session (dag.test() needs the metadata tables)."""
    airflow = Path(sys.executable).parent / "airflow"
    out = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return AIRFLOW_HOME


LAST_DAY = dt.date(2026, 3, 6)  # the generated log's last day


@contextlib.contextmanager
def generated_data(data: Path) -> Iterator[dict]:
    """A small generated log (900 users, 300 items, 7 days to LAST_DAY) ingested into ``data``, and a real
    redis-server for the DAG to publish into: {"data": data, "redis": its URL}."""
    from batch.ingest import ingest_interactions, ingest_items
    from batch.synthetic.generate import generate, write_synthetic
    from feature_store.embedded import EmbeddedRedis

    raw = write_synthetic(generate(900, 300, 6, 7, LAST_DAY), data / "raw")
    ingest_items(raw["items"], data / "items/items.parquet")
    ingest_interactions(raw["interactions"], "parquet", data / "interactions", data / "quarantine")
    with EmbeddedRedis() as server:
        yield {"data": data, "redis": server.url}

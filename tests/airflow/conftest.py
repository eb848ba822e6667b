"""Airflow test setup: a private AIRFLOW_HOME with a migrated SQLite DB, this repo's dags/ folder.

Airflow reads its configuration when first imported, so the environment is set here, at conftest
import time, before any test module imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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

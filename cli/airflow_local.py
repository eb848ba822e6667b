"""`hybridrec airflow`: a local Airflow 3 (standalone, SQLite) on this repo's dags/, for trying the DAGs.

It uses the configured Redis (HYBRIDREC_REDIS_URL) or starts the embedded one, runs
`airflow db migrate`, starts `airflow standalone` in its own process group, prints the UI URL and
login, and on Ctrl-C stops the whole group (SIGTERM, then SIGKILL for what ignores it: the
scheduler's children do), then Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from cli.demo import interrupt_on_sigterm
from feature_store.embedded import EmbeddedRedis
from shared.config import Settings, redact_url
from shared.errors import ConfigError, HybridrecError

REPO_DAGS = Path(__file__).resolve().parents[1] / "dags"


def airflow_env(settings: Settings, redis_url: str, port: int) -> dict[str, str]:
    home = (settings.data_dir / "airflow").resolve()
    bin_dir = str(Path(sys.executable).parent)  # standalone starts `airflow` sub-commands by name
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "HYBRIDREC_REDIS_URL": redis_url,
        "HYBRIDREC_DATA_DIR": str(settings.data_dir.resolve()),
    }


def _stop_group(proc: subprocess.Popen[bytes], console: Console) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        console.print("some Airflow processes ignored SIGTERM; killing the process group")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _login(home: Path) -> str:
    path = home / "simple_auth_manager_passwords.json.generated"
    with contextlib.suppress(OSError, ValueError):
        users = json.loads(path.read_text())
        return ", ".join(f"{user} / {password}" for user, password in users.items())
    return f"see {path}"


def run_local_airflow(settings: Settings, port: int, console: Console) -> None:
    interrupt_on_sigterm()
    airflow = Path(sys.executable).parent / "airflow"
    if not airflow.exists():
        raise ConfigError("Apache Airflow is not installed: run `./dev airflow` (installs the 'airflow' extra)")
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        if not redis_url:
            server = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis", persistent=True))
            redis_url = server.url
            console.print(f"started embedded redis-server on {redact_url(redis_url)}")
        env = airflow_env(settings, redis_url, port)
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        with console.status("airflow db migrate..."):
            out = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise HybridrecError(f"airflow db migrate failed:\n{out.stderr[-2000:]}")
        log = (Path(env["AIRFLOW_HOME"]) / "standalone.log").open("ab")
        stack.callback(log.close)
        proc = subprocess.Popen(
            [str(airflow), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        stack.callback(_stop_group, proc, console)
        url = f"http://127.0.0.1:{port}"
        with console.status(f"starting Airflow (log: {log.name})..."):
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise HybridrecError(f"airflow standalone exited with {proc.returncode}; see {log.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise HybridrecError(f"Airflow did not answer on {url} within 3 minutes; see {log.name}")
                time.sleep(1)
        console.print(f"[bold green]Airflow is up[/] at {url}  login: {_login(Path(env['AIRFLOW_HOME']))}")
        console.print(f"DAGs from {REPO_DAGS}; data in {env['HYBRIDREC_DATA_DIR']}; Redis {redact_url(redis_url)}")
        console.print("Press Ctrl-C to stop Airflow and Redis.")
        with contextlib.suppress(KeyboardInterrupt):
            while proc.poll() is None:
                time.sleep(1)
        console.print("stopping Airflow...")

"""The production-like stack (docker-compose.yml, Dockerfile, .dockerignore), checked by structure.

No Docker engine runs here, so these tests parse the files and check what would otherwise only fail at
`docker compose up`: services and healthchecks, ports, volumes, the Airflow wiring, and that every
HYBRIDREC_* variable the stack sets is a field of Settings (with extra="forbid", any other one would
stop the API and every DAG task at start-up).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.apikeys import SCOPES, key_entry, new_api_key
from shared.config import Settings


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Compose does (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=StrictLoader)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()

AIRFLOW_DAEMONS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker")
AIRFLOW = ("airflow-init", *AIRFLOW_DAEMONS)
CELERY = ("airflow-broker", "airflow-worker")  # the `celery` profile
LONG_RUNNING = (
    "redis",
    "postgres",
    "api",
    *AIRFLOW_DAEMONS,
    "prometheus",
    "batch-metrics",
    "grafana",
    "airflow-broker",
)
HYBRIDREC_ENV_NAMES = {f"HYBRIDREC_{name.upper()}" for name in Settings.model_fields}
HEADER = "\n".join(line for line in (ROOT / "docker-compose.yml").read_text().splitlines() if line.startswith("#"))


def env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with ``env`` as compose.env."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if env.get(name):
            return env[name]
        assert op != ":?", f"compose would refuse to start: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def compose_env_from_header() -> dict[str, str]:
    """Run the header's recipe for compose.env (the `python3 -c '...' > compose.env` lines); its variables."""
    lines = HEADER.splitlines()
    start = next(i for i, line in enumerate(lines) if "python3 -c '" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("> compose.env"))
    script = "\n".join(line.removeprefix("#").strip() for line in lines[start : end + 1])
    code = script.split("python3 -c '", 1)[1].rsplit("' > compose.env", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def published(service: str) -> dict[int, str]:
    """Container port -> "host_ip:host_port" for each published port (short and long syntax)."""
    out = {}
    for p in SERVICES[service].get("ports", []):
        if isinstance(p, dict):
            out[int(p["target"])] = f"{p.get('host_ip', '0.0.0.0')}:{p['published']}"
        else:
            *host, target = str(p).split(":")
            host_ip, host_port = host if len(host) == 2 else ["0.0.0.0", *host]
            out[int(target.split("/")[0])] = f"{host_ip}:{host_port}"
    return out


def mounts(service: str) -> dict[str, tuple[str, str]]:
    """Target -> (source, mode) for each short-syntax volume of the service."""
    out = {}
    for v in SERVICES[service].get("volumes", []):
        source, target, *mode = str(v).split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def hybridrec_env_names(node: Any) -> set[str]:
    """Every HYBRIDREC_* variable set anywhere in a compose document (anchors, maps, KEY=VALUE lists)."""
    if isinstance(node, dict):
        found = {k for k in node if isinstance(k, str) and k.startswith("HYBRIDREC_")}
        return found.union(*(hybridrec_env_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(hybridrec_env_names(v) for v in node))
    if isinstance(node, str) and re.fullmatch(r"HYBRIDREC_\w+=.*", node, flags=re.DOTALL):
        return {node.split("=", 1)[0]}
    return set()


def test_the_yaml_loader_rejects_duplicate_keys() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate"):
        yaml.load("a:\n  b: 1\n  b: 2\n", Loader=StrictLoader)
    assert yaml.load("x: &x {b: 1}\na:\n  <<: *x\n  b: 2\n", Loader=StrictLoader)["a"] == {"b": 2}


def test_services_present() -> None:
    assert set(LONG_RUNNING) | {"airflow-init"} <= set(SERVICES)


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_a_healthcheck(service: str) -> None:
    check = SERVICES[service].get("healthcheck") or {}
    test = check.get("test")
    assert not check.get("disable") and test, f"{service} has no healthcheck"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, test
    assert SERVICES[service].get("restart") in ("always", "unless-stopped")


def test_api_runs_serve_with_several_workers() -> None:
    """`hybridrec serve` (uvicorn's factory online.app:app_from_env, plus the workers' metrics directory)."""
    cmd = command("api")
    assert cmd[:2] == ["hybridrec", "serve"]
    assert int(cmd[cmd.index("--workers") + 1]) >= 2
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8000"  # in the container
    assert published("api") == {8000: "127.0.0.1:8000"}, "the API must not be published on every host address"
    assert SERVICES["api"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_api_healthcheck_probes_a_real_liveness_route() -> None:
    from online.routes import router

    paths = {route.path for route in router.routes}
    assert {"/health", "/ready"} <= paths
    assert "127.0.0.1:8000/health" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_airflow_ui_is_published_on_8080() -> None:
    assert command("airflow-apiserver")[:2] == ["airflow", "api-server"]
    assert published("airflow-apiserver")[8080].endswith(":8080")


def test_redis_is_durable_and_never_evicts() -> None:
    cmd = command("redis")
    assert cmd[0] == "redis-server" and SERVICES["redis"]["image"].startswith("redis:7")
    opts = {cmd[i][2:]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert opts["appendonly"] == "yes" and opts["appendfsync"] == "always"  # a 202 means the event is on disk
    assert opts["maxmemory-policy"] == "noeviction"
    assert opts.get("save"), "RDB snapshots are off"
    source, _ = mounts("redis")[opts.get("dir", "/data")]
    assert source in COMPOSE["volumes"], "Redis data must live in a named volume"
    assert all(host.startswith("127.0.0.1:") for host in published("redis").values()), "Redis is exposed"
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])


def test_postgres_is_the_airflow_metadata_db() -> None:
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert mounts("postgres")["/var/lib/postgresql/data"][0] in COMPOSE["volumes"]


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for service in SERVICES:
        for source, _ in mounts(service).values():
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{service} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


@pytest.mark.parametrize("service", AIRFLOW)
def test_airflow_uses_local_executor_and_postgres(service: str) -> None:
    e = env(service)
    assert interpolate(e["AIRFLOW__CORE__EXECUTOR"], {}) == "LocalExecutor"  # unless compose.env says otherwise
    conn = e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn.startswith("postgresql+psycopg2://") and "@postgres:5432/" in conn
    assert SERVICES[service]["image"] == SERVICES["api"]["image"], "one image for the API and Airflow"


def test_airflow_components_share_their_secrets_and_find_the_execution_api() -> None:
    envs = [env(s) for s in AIRFLOW_DAEMONS]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        values = {e.get(key) for e in envs}
        assert len(values) == 1 and None not in values and "" not in values, f"{key} differs or is unset"
    assert {e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] for e in envs} == {"http://airflow-apiserver:8080/execution/"}


@pytest.mark.parametrize("service", AIRFLOW_DAEMONS)
def test_airflow_components_wait_for_init(service: str) -> None:
    deps = SERVICES[service]["depends_on"]
    assert deps["airflow-init"]["condition"] == "service_completed_successfully"
    assert deps["postgres"]["condition"] == "service_healthy"


def test_only_the_celery_services_have_a_profile() -> None:
    """`docker compose up` starts the LocalExecutor stack as before; `--profile celery` adds the broker and workers."""
    assert {name: s.get("profiles") for name, s in SERVICES.items() if s.get("profiles")} == {
        name: ["celery"] for name in CELERY
    }


@pytest.mark.parametrize("service", AIRFLOW)
def test_with_the_celery_profile_every_airflow_component_uses_celery(service: str) -> None:
    e = env(service)
    made = compose_env_from_header() | {"AIRFLOW_EXECUTOR": "CeleryExecutor"}
    assert interpolate(e["AIRFLOW__CORE__EXECUTOR"], made) == "CeleryExecutor"
    broker = urlsplit(interpolate(e["AIRFLOW__CELERY__BROKER_URL"], made))
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "airflow-broker", 6379)
    backend = urlsplit(interpolate(e["AIRFLOW__CELERY__RESULT_BACKEND"], made))
    metadata = urlsplit(interpolate(e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], made))
    assert backend.scheme == "db+postgresql" and backend.netloc == metadata.netloc  # results in the metadata DB
    assert backend.path == metadata.path == "/airflow"
    assert int(interpolate(e["AIRFLOW__CELERY__WORKER_CONCURRENCY"], made)) >= 1


def test_the_celery_broker_is_not_the_feature_store() -> None:
    broker = SERVICES["airflow-broker"]
    assert broker["image"].startswith("redis:7") and "redis-cli ping" in " ".join(broker["healthcheck"]["test"])
    assert not broker.get("ports"), "the broker is reached on the compose network only"
    data = mounts("airflow-broker")["/data"][0]
    assert data in COMPOSE["volumes"] and data != mounts("redis")["/data"][0]
    assert urlsplit(env("api")["HYBRIDREC_REDIS_URL"]).hostname != "airflow-broker"
    cmd = command("airflow-broker")
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"  # a queue is never evicted


def test_the_celery_worker_scales_and_waits_for_its_broker() -> None:
    worker = SERVICES["airflow-worker"]
    assert not {"container_name", "hostname", "ports"} & set(worker), "--scale airflow-worker=N needs none of these"
    script = " ".join(command("airflow-worker"))
    assert "exec airflow celery worker" in script
    assert '"$${AIRFLOW__CORE__EXECUTOR}" != CeleryExecutor' in script and "exit 1" in script  # refuses without it
    deps = worker["depends_on"]
    assert deps["airflow-broker"]["condition"] == "service_healthy"
    assert deps["airflow-apiserver"]["condition"] == "service_healthy"  # tasks report to its execution API
    assert deps["redis"]["condition"] == "service_healthy"  # shards publish to the feature store
    check = " ".join(worker["healthcheck"]["test"])
    assert "inspect ping" in check and "celery@$${HOSTNAME}" in check
    assert worker["image"] == SERVICES["airflow-scheduler"]["image"]
    assert env("airflow-worker")["HYBRIDREC_BATCH_SHARDS"] == env("airflow-scheduler")["HYBRIDREC_BATCH_SHARDS"]


def test_the_header_says_how_to_run_the_celery_profile() -> None:
    assert "--profile celery" in HEADER and "--scale airflow-worker=" in HEADER
    assert "AIRFLOW_EXECUTOR=CeleryExecutor" in HEADER


def test_airflow_init_migrates_once_postgres_is_healthy() -> None:
    assert "airflow db migrate" in " ".join(command("airflow-init"))
    assert SERVICES["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["airflow-init"]["restart"] == "no"


def test_scheduler_healthcheck_targets_an_enabled_health_server() -> None:
    assert "127.0.0.1:8974/health" in " ".join(SERVICES["airflow-scheduler"]["healthcheck"]["test"])
    assert env("airflow-scheduler")["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


@pytest.mark.parametrize("service", AIRFLOW_DAEMONS)
def test_airflow_mounts_dags_read_only_and_the_shared_data(service: str) -> None:
    e, m = env(service), mounts(service)
    assert m[e["AIRFLOW__CORE__DAGS_FOLDER"]] == ("./dags", "ro")
    assert m[e["HYBRIDREC_DATA_DIR"]][0] == mounts("api")[env("api")["HYBRIDREC_DATA_DIR"]][0]


def test_every_hybridrec_variable_is_a_settings_field() -> None:
    names = hybridrec_env_names(COMPOSE)
    assert {"HYBRIDREC_REDIS_URL", "HYBRIDREC_DATA_DIR"} <= names, names  # the walk does see them
    assert names <= HYBRIDREC_ENV_NAMES, f"not fields of Settings: {sorted(names - HYBRIDREC_ENV_NAMES)}"
    in_dockerfile = set(re.findall(r"\b(HYBRIDREC_\w+)=", DOCKERFILE))
    assert in_dockerfile <= HYBRIDREC_ENV_NAMES, sorted(in_dockerfile - HYBRIDREC_ENV_NAMES)


def test_the_settings_check_catches_an_unknown_variable() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["api"]["environment"]["HYBRIDREC_NOT_A_SETTING"] = "1"
    broken["services"]["postgres"]["environment"] = ["POSTGRES_DB=airflow", "HYBRIDREC_ALSO_NOT_ONE=2"]
    unknown = hybridrec_env_names(broken) - HYBRIDREC_ENV_NAMES
    assert unknown == {"HYBRIDREC_NOT_A_SETTING", "HYBRIDREC_ALSO_NOT_ONE"}


@pytest.mark.parametrize("service", ["api", *AIRFLOW_DAEMONS])
def test_hybridrec_env_builds_valid_settings(service: str) -> None:
    compose_env = {"HYBRIDREC_API_KEYS": key_entry(new_api_key(), SCOPES), "HYBRIDREC_SESSION_SECRET": "0" * 64}
    values = {
        k.removeprefix("HYBRIDREC_").lower(): interpolate(v, compose_env)
        for k, v in env(service).items()
        if k.startswith("HYBRIDREC_")
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert settings.redis_url == "redis://redis:6379/0"
    assert str(settings.data_dir) == "/data/hybridrec"


def test_the_api_runs_with_auth_from_compose_env() -> None:
    """The API needs its key hashes and session secret from compose.env (no defaults, auth never off), and
    the header's recipe for compose.env makes every variable the file requires, a usable key entry included."""
    from online.auth import Gate

    api = env("api")
    assert "HYBRIDREC_AUTH" not in api and "HYBRIDREC_AUTH" not in env("airflow-scheduler")
    for name in ("HYBRIDREC_API_KEYS", "HYBRIDREC_SESSION_SECRET"):
        assert api[name].startswith(f"${{{name}:?"), f"{name} must come from compose.env, with no default"
    made = compose_env_from_header()
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required <= set(made), f"the header's recipe does not make {sorted(required - set(made))}"
    values = {
        k.removeprefix("HYBRIDREC_").lower(): interpolate(v, made) for k, v in api.items() if k.startswith("HYBRIDREC_")
    }
    gate = Gate(Settings(_env_file=None, **values))  # type: ignore[call-arg]
    assert gate.enabled and {s for k in gate.keys for s in k.scopes} == set(SCOPES)


def test_interpolation_follows_compose() -> None:
    assert interpolate("${A:-x}/${B}", {"B": "b"}) == "x/b"
    with pytest.raises(AssertionError, match="set A"):
        interpolate("${A:?set A}", {})


# ---- Dockerfile -----------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(ins.upper(), args.strip()) for ins, args in re.findall(r"^\s*(\w+)\s+(.*)$", joined, flags=re.M)]


def final_stage_user(text: str) -> str | None:
    ins = instructions(text)
    last_from = max(i for i, (name, _) in enumerate(ins) if name == "FROM")
    users = [args for name, args in ins[last_from:] if name == "USER"]
    return users[-1] if users else None


def pip_install_specs(run: str) -> list[str]:
    """The requirement specifiers of a `uv pip install` / `pip install` command (options dropped)."""
    words = shlex.split(run.split("&&")[0])
    words = words[words.index("install") + 1 :]
    specs, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--python", "-p", "-r", "--requirement", "-c", "--constraint", "--index-url"):
            skip = True
        elif not word.startswith("-"):
            specs.append(word)
    return specs


def test_dockerfile_installs_exactly_the_lock() -> None:
    ins = instructions(DOCKERFILE)
    runs = [args for name, args in ins if name == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r and "--extra airflow" in r for r in syncs)
    assert all("--extra celery" in r for r in syncs), "the Celery workers run this image"
    copies = [args for name, args in ins if name == "COPY"]
    lock_copy = next(i for i, c in enumerate(copies) if "uv.lock" in c and "pyproject.toml" in c)
    assert lock_copy < copies.index(". ."), "copy the lock before the source, for layer caching"
    assert any(re.search(r"pip install .*\"?uv==", r) for r in runs), "install a pinned uv from PyPI"
    assert not any(re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", r) for r in runs)
    for r in runs:  # anything installed beside the lock must at least be pinned
        if "uv pip install" in r:
            specs = pip_install_specs(r)
            assert specs and all("==" in spec for spec in specs), r


def test_dockerfile_base_and_command() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE, flags=re.M))
    froms = [a.split()[0] for name, a in instructions(DOCKERFILE) if name == "FROM"]
    assert {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in froms} == {"python:3.11-slim"}
    cmd = next(a for name, a in instructions(DOCKERFILE) if name == "CMD")
    assert json.loads(cmd)[:2] == ["hybridrec", "serve"] and "--workers" in cmd
    assert re.search(r'PATH="/app/\.venv/bin:', DOCKERFILE)


def test_the_pin_check_sees_unpinned_packages() -> None:
    assert pip_install_specs('uv pip install --python /v/bin/python --no-deps "a==1" b') == ["a==1", "b"]


def test_dockerfile_does_not_run_as_root() -> None:
    assert final_stage_user("FROM python:3.11-slim\nRUN true\n") is None  # the check can fail
    assert final_stage_user("FROM a AS b\nUSER app\nFROM c\nCMD x\n") is None
    user = final_stage_user(DOCKERFILE)
    assert user is not None and user.split(":")[0] not in ("root", "0")


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    entries = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    entries.discard("")

    def ignored(path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:i]) in entries for i in range(1, len(parts) + 1))

    for path in (".venv", ".tools", "var", "bench/.cache", ".git", ".env", ".pytest_cache", ".ruff_cache"):
        assert ignored(path), f"{path} would be sent to the Docker build"
    for needed in ("pyproject.toml", "uv.lock", "README.md", "shared", "online", "batch", "dags"):
        assert not ignored(needed), f"{needed} is needed to build the image"


# ---- Prometheus and Grafana -------------------------------------------------------------------------

PROMETHEUS = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
JOBS = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
DASHBOARD = json.loads((ROOT / "ops" / "grafana" / "dashboards" / "hybridrec.json").read_text())


def exported_metric_names() -> set[str]:
    """Every metric name the API and the batch export: read off the code that names them."""
    names = set()
    for path in ("online/telemetry.py", "batch/textfile.py"):
        names |= set(re.findall(r'"(hybridrec_[a-z_]+)"', (ROOT / path).read_text()))
    return names


def test_prometheus_scrapes_the_api_with_its_key_from_a_secret() -> None:
    m = mounts("prometheus")
    assert m["/etc/prometheus/prometheus.yml"] == ("./ops/prometheus/prometheus.yml", "ro")
    api = JOBS["hybridrec-api"]
    assert api["metrics_path"] == "/metrics" and api["static_configs"][0]["targets"] == ["api:8000"]
    assert api["authorization"]["type"] == "Bearer"
    secret = api["authorization"]["credentials_file"]
    assert secret == "/run/secrets/prometheus_api_key" and "prometheus_api_key" in SERVICES["prometheus"]["secrets"]
    assert COMPOSE["secrets"]["prometheus_api_key"] == {"environment": "PROMETHEUS_API_KEY"}
    assert published("prometheus") == {9090: "127.0.0.1:9090"}


def test_the_prometheus_key_reads_the_metrics_and_nothing_else() -> None:
    """/metrics needs the read-metrics scope: the recipe's PROMETHEUS_API_KEY must hash to an entry with
    it, and with no other scope (a leaked monitoring config must not give writes or the admin pages)."""
    import hashlib

    from shared.apikeys import parse_key_entry

    made = compose_env_from_header()
    digest = hashlib.sha256(made["PROMETHEUS_API_KEY"].encode()).hexdigest()
    entries = [parse_key_entry(e) for e in made["HYBRIDREC_API_KEYS"].split(";")]
    assert [e.scopes for e in entries if e.sha256 == digest] == [frozenset({"read-metrics"})]


def test_batch_textfiles_reach_prometheus() -> None:
    from shared.config import Settings

    cmd = command("batch-metrics")
    textfile_dir = next(c.split("=", 1)[1] for c in cmd if c.startswith("--collector.textfile.directory="))
    data_dir = env("api")["HYBRIDREC_DATA_DIR"]
    assert textfile_dir == str(Settings(_env_file=None, data_dir=data_dir).textfile_dir)  # type: ignore[call-arg]
    assert mounts("batch-metrics")[data_dir][0] == mounts("airflow-scheduler")[data_dir][0]
    assert JOBS["hybridrec-batch"]["static_configs"][0]["targets"] == ["batch-metrics:9100"]


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard() -> None:
    m = mounts("grafana")
    provisioning = ROOT / m["/etc/grafana/provisioning"][0]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "hybridrec.yml").read_text())["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert m[dashboards_dir] == ("./ops/grafana/dashboards", "ro")
    assert env("grafana")["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert published("grafana") == {3000: "127.0.0.1:3000"}
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == datasource["uid"] for t in panel["targets"]), panel["title"]


def test_the_dashboard_queries_only_metrics_we_export() -> None:
    exported = exported_metric_names()
    assert {"hybridrec_http_request_duration_seconds", "hybridrec_batch_offline_metric"} <= exported
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for panel in DASHBOARD["panels"]
        for target in panel["targets"]
        for name in re.findall(r"hybridrec_[a-z_]+", target["expr"])
    }
    assert used and used <= exported, sorted(used - exported)
    titles = " ".join(p["title"] for p in DASHBOARD["panels"]).lower()
    for what in ("version", "tier", "latency", "flags", "store errors", "compaction", "offline metrics"):
        assert what in titles, f"the operator page shows {what}; the dashboard does not"


def test_the_dashboard_check_sees_an_unknown_metric() -> None:
    assert "hybridrec_not_a_metric" not in exported_metric_names()

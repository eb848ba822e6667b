# syntax=docker/dockerfile:1
#
# One image for the hybridrec API and every Airflow component (api-server, scheduler, dag-processor, Celery worker).
# The DAG tasks import batch.* from the same installed package that the API serves from, so the code
# that publishes a version and the code that reads it cannot drift apart. Everything Python comes
# from the committed uv.lock; nothing is resolved at build time.
#
#   docker build -t hybridrec:local .        (`docker compose build` does the same)
#
# Both stages must use the same base image: the venv's interpreter is a symlink to the base's Python.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: /app/.venv exactly as uv.lock says ------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# uv from PyPI with pip, pinned (no curl | sh installer); it stays in this stage only.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first, from the lock alone: this layer (numpy, implicit, Airflow, ...) is rebuilt only
# when pyproject.toml or uv.lock change, not on every source edit.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra airflow --extra celery --no-install-project

# Then our code, installed as a wheel (--no-editable) so the runtime stage needs only the venv.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra airflow --extra celery --no-editable

# The `airflow` extra is apache-airflow[postgres], so the lock already carries the Postgres drivers
# (psycopg2 for the metadata DB, asyncpg for Airflow 3's async engine); `celery` is Airflow's Celery
# provider, for docker-compose's `celery` profile (CeleryExecutor workers).

# ---- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed uid/gid: every container of the stack writes the shared data and log volumes as the same user.
# The directories are created here, owned by that user, so named volumes mounted on them start with
# the right ownership (Docker copies the image's directory into an empty named volume).
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" hybridrec \
    && useradd --system --uid "${APP_UID}" --gid hybridrec --create-home --home-dir /home/hybridrec \
        --shell /usr/sbin/nologin hybridrec \
    && mkdir -p /data/hybridrec /opt/airflow/dags /opt/airflow/logs /opt/airflow/auth \
    && chown -R hybridrec:hybridrec /data/hybridrec /opt/airflow

# The venv stays owned by root: the running processes cannot modify the code they execute.
COPY --from=build /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIRFLOW_HOME=/opt/airflow \
    HYBRIDREC_DATA_DIR=/data/hybridrec

# The ranking's numba kernels, compiled once into the image: a container would otherwise compile them at
# start (~10 s per worker). A host whose CPU differs from the build machine's recompiles them into the same
# cache, which the app user may write.
ENV NUMBA_CACHE_DIR=/app/numba-cache
RUN mkdir -p /app/numba-cache \
    && python -c "from online.model import compile_ranking; compile_ranking()" \
    && chown -R hybridrec:hybridrec /app/numba-cache

# No .env here: Settings would read one from the working directory.
WORKDIR /app
USER hybridrec

EXPOSE 8000 8080

# The API by default; docker-compose.yml overrides the command for the Airflow components.
# (`hybridrec serve` runs uvicorn's factory, online.app:app_from_env, with the workers' metrics directory set up.)
CMD ["hybridrec", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

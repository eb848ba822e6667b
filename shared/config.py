"""One Settings class for every layer, read from ``HYBRIDREC_*`` environment variables (or a .env file).

Build it with :func:`get_settings` at the edge (CLI command, app factory, DAG task) and pass it down;
nothing else reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.apikeys import parse_key_entry, split_entries


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HYBRIDREC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        hide_input_in_errors=True,  # an error must not print a secret (a Redis password, a key pasted for its hash)
    )

    # --- storage -----------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="External Redis/Valkey URL: `redis://host:6379/0` (or `rediss://`, `unix://`) for one server, "
        "`redis+cluster://host:6379` (or `rediss+cluster://`) for a Redis Cluster, any of its nodes (README "
        '"Running on Redis Cluster"). Unset: `hybridrec demo` starts an embedded redis-server.',
    )
    key_prefix: str = Field(default="hr", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="Namespace of all keys.")
    data_dir: Path = Field(default=Path("var"), description="Root of raw data, partitions, runs, quarantine.")
    store_timeout_ms: int = Field(default=50, ge=1, le=60_000, description="Per-call Redis socket timeout online.")
    publish_batch_size: int = Field(
        default=2_000, ge=1, description="Keys per batch when publishing (one MULTI/MSET/EXEC each)."
    )
    keep_versions: int = Field(default=2, ge=1, le=20, description="Published versions kept (current + rollback).")
    publish_lock_ttl_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3_600.0,
        description="Lease of the publish lock; renewed every third of it while a publish runs, so a killed "
        "publisher frees it after at most this long.",
    )
    publish_lock_wait_s: float = Field(
        default=60.0,
        ge=0.0,
        description="How long a publish (or prune) waits for another one to finish before it refuses.",
    )
    publish_staging_ttl_s: float = Field(
        default=3_600.0,
        gt=0.0,
        le=7 * 86_400.0,
        description="Lease of a version staged by a sharded publish (renewed while its shards write): prune "
        "keeps the incomplete version that long after its last write, then treats it as dead.",
    )

    # --- training (implicit ALS) ---------------------------------------------------------------
    als_factors: int = Field(default=64, ge=1, le=1024, description="ALS latent factors.")
    als_regularization: Annotated[float, Field(ge=0.0)] | Literal["auto"] = Field(
        default="auto",
        description="ALS L2 regularisation on implicit's scale; 'auto' = 4 x the median observed confidence "
        "of the training data (about 15 on event logs, about 90 on play counts).",
    )
    als_alpha: float = Field(default=4.0, gt=0.0, description="Confidence scale: C = 1 + alpha * weight'.")
    als_iterations: int = Field(default=15, ge=1, le=200, description="ALS sweeps.")
    confidence: Literal["log", "bm25"] = Field(default="log", description="Weighting of raw interaction strength.")
    bm25_k1: float = Field(default=1.2, gt=0.0, description="BM25 saturation (confidence=bm25).")
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0, description="BM25 length normalisation.")
    seed: int = Field(default=42, description="Seed for training, sampling and evaluation.")
    training_window_days: int = Field(
        default=0,
        ge=0,
        description="Days of interactions up to the run date; 0 = the whole log (a run says what a window leaves out).",
    )
    batch_shards: int = Field(
        default=1,
        ge=1,
        le=1_024,
        description="User ranges the daily DAG splits candidates, seen sets and publishing into (one mapped "
        "Airflow task each); 1 = one task does all users. The run and the published version are the same bytes.",
    )

    # --- evaluation --------------------------------------------------------------------------
    eval_k: int = Field(default=10, ge=1, le=1000, description="k of Recall@k / NDCG@k in metrics.json.")
    holdout_per_user: int = Field(default=1, ge=1, description="Each user's last N distinct items are held out.")
    eval_max_users: int = Field(default=10_000, ge=100, description="Seeded sample of users evaluated.")

    quality_tolerance: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Relative drop in Recall/NDCG@k vs the serving model that the gate allows.",
    )

    # --- candidates and popularity -------------------------------------------------------------
    n_candidates: int = Field(default=100, ge=1, le=2_000, description="Precomputed candidates per user.")
    candidate_model: Literal["als", "ease", "als+ease"] = Field(
        default="als",
        description="What builds each user's precomputed list: ALS, EASE (closed-form item-item; memory "
        "grows with items squared) or both fused by reciprocal rank. The session tiers score with ALS either way.",
    )
    ease_l2: float = Field(default=200.0, gt=0.0, description="EASE ridge penalty (binary interactions).")
    ease_max_items: int = Field(
        default=20_000,
        ge=1,
        description="Largest catalogue EASE may fit: it needs about 12 x items^2 bytes (20,000 items: 4.5 GiB).",
    )
    ease_fusion_weight: float = Field(
        default=1.0, ge=0.0, description="Weight of EASE's list against ALS's in candidate_model=als+ease."
    )
    n_neighbours: int = Field(default=30, ge=1, le=500, description="Precomputed neighbours per item.")
    n_covisit: int = Field(default=30, ge=1, le=500, description="Precomputed co-visitation neighbours per item.")
    covisit_window: int = Field(
        default=3, ge=1, le=20, description="Later session steps that count as co-visited (weight 1/distance)."
    )
    session_gap_minutes: float = Field(
        default=30.0,
        gt=0.0,
        description="Idle gap that starts a new session, for events without a session_id (co-visitation).",
    )
    popular_n: int = Field(default=500, ge=1, description="Length of the global and per-category popular lists.")
    seen_max_items: int = Field(
        default=2_000,
        ge=0,
        le=65_535,
        description="Items of a user's history published as their seen set (the most recent; 0 = none).",
    )
    popularity_half_life_days: float = Field(default=7.0, gt=0.0, description="Recency decay of popularity.")

    # --- online ------------------------------------------------------------------------------
    session_max_events: int = Field(default=50, ge=1, le=10_000, description="Events kept per session.")
    session_ttl_seconds: int = Field(default=1_800, ge=1, description="Idle time before a session expires.")
    session_seen_max_items: int = Field(
        default=1_000, ge=1, le=100_000, description="Distinct items remembered per live session (its seen set)."
    )
    event_id_ttl_s: int = Field(
        default=3_600,
        ge=1,
        description="How long a client-supplied event_id is remembered: the same id posted again within this "
        "window is acknowledged as a duplicate and stored once.",
    )
    events_backlog_max: int = Field(
        default=1_000_000,
        ge=1_000,
        description="Live events the stream may hold before compaction drains them (about 120 bytes each).",
    )
    events_backlog_policy: Literal["refuse", "trim"] = Field(
        default="refuse",
        description="At the backlog cap: refuse new events with 503 (nothing is lost) or trim the oldest "
        "un-compacted ones (sessions stay live; the trimmed events never reach training).",
    )
    events_min_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Answer 202 to POST /events only once this many replicas of the Redis primary confirmed the "
        "append (Redis WAIT), so an acknowledged event survives a failover to a replica; fewer in time: 503 "
        "`replication_timeout`, retry with the same event ids. 0: the primary's append-only file alone. One "
        "server with replicas only (refused on a Redis Cluster).",
    )
    events_replicas_timeout_ms: int = Field(
        default=25,
        ge=1,
        le=60_000,
        description="How long an append waits for HYBRIDREC_EVENTS_MIN_REPLICAS confirmations; less than "
        "HYBRIDREC_STORE_TIMEOUT_MS.",
    )
    session_half_life_events: float = Field(default=3.0, gt=0.0, description="Recency decay of session items.")
    session_seed_items: int = Field(default=5, ge=1, le=50, description="Recent session items whose neighbours join.")
    weight_user: float = Field(default=0.25, ge=0.0, description="Blend weight of user-vector similarity.")
    weight_session: float = Field(default=1.0, ge=0.0, description="Blend weight of session-vector similarity.")
    weight_popularity: float = Field(default=0.2, ge=0.0, description="Blend weight of log popularity.")
    precomputed_weight_popularity: float = Field(
        default=0.2, ge=0.0, description="Popularity weight of the precomputed tier (known user, no session)."
    )
    weight_covisit: float = Field(default=1.0, ge=0.0, description="Blend weight of the co-visitation score.")
    exclude_seen: bool = Field(
        default=True,
        description="Never recommend an item the user already has (training history or live session); "
        "false for repeat-purchase domains (groceries, music), where history items return as seen_before.",
    )
    reranker_enabled: bool = Field(
        default=True, description="Serve session requests with the version's learned re-ranker when it has one."
    )
    reranker_budget_ms: float = Field(
        default=30.0,
        gt=0.0,
        description="Skip the re-ranker (blend instead, flag reranker_over_budget) when the request so far "
        "plus its typical cost would exceed this.",
    )
    response_cache: bool = Field(
        default=True,
        description="Answer a repeated request (same version, user, session state, k and category) from the "
        'worker\'s memory: exact, a new event or version is a new key (README "Caches").',
    )
    semantic_cache: bool = Field(
        default=False,
        description="Answer a visitor without a user record from the ranking computed for an earlier session that "
        'ended on the same items (minus what this session saw): approximate (README "Caches").',
    )
    semantic_cache_items: int = Field(
        default=2, ge=1, le=10, description="Last distinct session items that key the semantic cache."
    )
    cache_entries: int = Field(
        default=10_000,
        ge=1,
        description="Answers each cache keeps per API worker (least recently used dropped); 1-1.4 KB each.",
    )
    reload_interval_s: float = Field(default=2.0, gt=0.0, description="How often the API checks the version pointer.")
    ready_max_lag_intervals: int = Field(
        default=5,
        ge=1,
        description="/ready answers 503 once the loaded model has trailed the published version for more than "
        "this many reload intervals (at once if the published version failed to load).",
    )

    # --- observability (README "Metrics and logs") -------------------------------------------------
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`: human log lines. `json`: one JSON object per line for every log record, and one line "
        "per API request (request id, route, tier, flags, latency, version); batch and DAG steps log their "
        "partition and version.",
    )
    metrics_enabled: bool = Field(
        default=True,
        description="Record request metrics (Prometheus histograms and counters, the operator page's per-minute "
        "windows). `false` drops that per-request work (measured by bench/observability.py).",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="Where `hybridrec serve` keeps prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR), "
        "emptied at every start and locked while it serves (a second server given it refuses to start); unset: a new "
        "temporary directory, removed at exit.",
    )

    # --- API security and limits (README "API security") -----------------------------------------
    auth: Literal["on", "off"] = Field(
        default="on",
        description="`on`: writes need an API key and session ids must be ones the server issued. `off` (logged "
        "loudly at start): anyone who reaches the port can write events and use any session id; development only.",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="API keys as `scope,scope:<sha256 hex of the key>` entries, separated by spaces or `;` "
        "(scopes: write-events, read-recs, admin); `hybridrec keys new` prints a key and its entry.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file of more such entries, one per line (`#` comments), e.g. a mounted secret; read at start.",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="HMAC secret (32+ characters) that signs the session ids POST /sessions issues; required with "
        "auth on, the same in every worker and replica. `hybridrec keys secret` makes one.",
    )
    reads_require_key: bool = Field(
        default=False,
        description="GET /recommendations and /items/.../similar need a key with scope read-recs (default: open).",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Browser origins allowed to call the API (comma-separated, e.g. `https://shop.example`); "
        "none by default: browsers block cross-origin calls.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, description="Largest request body, in bytes; a longer one is a 413 before parsing."
    )
    rate_limit_ip_per_s: float = Field(
        default=50.0,
        ge=0.0,
        description="Requests per second per client IP without a valid key, per API worker (bursts of 2 s worth); "
        "0 = no limit.",
    )
    rate_limit_key_per_s: float = Field(
        default=1_000.0,
        ge=0.0,
        description="Requests per second per API key, per API worker (bursts of 2 s worth); 0 = no limit.",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value:
            cluster_url(value)  # ValueError says what is wrong
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        entries = split_entries(value) if isinstance(value, str) else value
        if isinstance(entries, list | tuple):
            for entry in entries:
                parse_key_entry(str(entry))  # ValueError names the malformed entry
        return entries

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(o.strip().rstrip("/") for o in value.replace(" ", ",").split(",") if o.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.n_candidates < self.eval_k:
            raise ValueError(f"n_candidates ({self.n_candidates}) must be >= eval_k ({self.eval_k})")
        if self.events_min_replicas and self.events_replicas_timeout_ms >= self.store_timeout_ms:
            raise ValueError(
                f"events_replicas_timeout_ms ({self.events_replicas_timeout_ms}) must be less than store_timeout_ms "
                f"({self.store_timeout_ms}): the wait for replicas is part of the append's call"
            )
        return self

    # Derived paths: one place that knows the data layout.
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def interactions_dir(self) -> Path:
        return self.data_dir / "interactions"

    @property
    def items_path(self) -> Path:
        return self.data_dir / "items" / "items.parquet"

    @property
    def landing_dir(self) -> Path:
        """Where upstream systems drop a day's files: ``landing/date=YYYY-MM-DD/*.csv|parquet``."""
        return self.data_dir / "landing"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def textfile_dir(self) -> Path:
        """Prometheus text files of the batch steps (node_exporter's textfile collector reads them)."""
        return self.data_dir / "metrics"

    @property
    def tuning_path(self) -> Path:
        """The blend ``hybridrec tune`` chose; the next batch run publishes it (see batch.tuning_file)."""
        return self.data_dir / "tuning" / "best.json"


SINGLE_SCHEMES = ("redis", "rediss", "unix")
# hybridrec's scheme of a Redis Cluster URL -> the scheme redis-py's cluster client takes for its first node
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """For a Redis Cluster URL (``redis+cluster://[user:password@]host:port``, ``rediss+cluster://``), the
    ``redis://`` URL of that first node, which redis-py's cluster client discovers the others from; None
    for a single server's URL. ValueError, naming the problem, for anything else (a cluster has only
    database 0, so a cluster URL naming another is refused rather than silently ignored)."""
    parts = urlsplit(url)
    if parts.scheme in SINGLE_SCHEMES:
        return None
    if parts.scheme not in CLUSTER_SCHEMES:
        known = ", ".join(f"{s}://" for s in (*SINGLE_SCHEMES, *CLUSTER_SCHEMES))
        raise ValueError(f"HYBRIDREC_REDIS_URL has the scheme {parts.scheme or '(none)'!r}; use one of {known}")
    if not parts.hostname:
        raise ValueError("a redis+cluster:// URL needs a host (and port) of one of the cluster's nodes")
    db = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "0")
    if db != "0":
        raise ValueError(f"a Redis Cluster has only database 0, but the URL asks for database {db!r}")
    return parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme], path="").geturl()


def redact_url(url: str | None) -> str:
    """``url`` with its password (in the user part or a ``password=`` query parameter) replaced by
    ``***``, for anything printed or logged: ``redis://:s3cret@host:6379/0`` -> ``redis://:***@host:6379/0``."""
    if not url:
        return "(unset)"
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(k.lower() == "password" for k, _ in pairs):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = "&".join(f"{k}=***" if k.lower() == "password" else f"{k}={v}" for k, v in pairs)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) winning."""
    return Settings(**overrides)  # type: ignore[arg-type]

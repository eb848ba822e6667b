"""The ``hybridrec`` command line: thin glue over batch.*, the store and the demo.

Every command builds Settings once (environment + flags) and passes it down. Errors of ours print one
line and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.keys import keys_app
from cli.tune_options import als_grid, candidate_model_list, csv, parse_grid, period_spec, run_tune
from lab.search import PRECOMPUTED_WEIGHT_POPULARITY, WEIGHT_COVISIT, WEIGHT_POPULARITY, WEIGHT_USER, AlsGrid
from shared.config import Settings, get_settings, redact_url
from shared.errors import HybridrecError
from shared.ids import date_range, parse_date

if TYPE_CHECKING:
    from feature_store.redis_store import RedisStore

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="hybridrec: hybrid batch + real-time recommender.",
)
app.add_typer(keys_app, name="keys")
# emoji=False: ":v:" in "hr:v:<version>:..." would print as an emoji; messages are escaped for markup too.
console = Console(stderr=True, emoji=False)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data root (default: $HYBRIDREC_DATA_DIR or ./var).")]
DateOpt = Annotated[str, typer.Option("--date", help="Partition date YYYY-MM-DD.")]


class Fmt(StrEnum):
    auto = "auto"
    csv = "csv"
    parquet = "parquet"
    movielens = "movielens"
    lastfm = "lastfm"
    lastfm_tags = "lastfm-tags"


def _settings(data_dir: Path | None = None) -> Settings:
    return get_settings(data_dir=data_dir) if data_dir else get_settings()


def _yesterday() -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


def _step_logger(name: str, seconds: float) -> None:
    console.print(f"  [green]✓[/] {name:<14} {seconds:7.2f}s")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


@app.command()
def generate(
    users: Annotated[int, typer.Option(min=2)] = 5_000,
    items: Annotated[int, typer.Option(min=2)] = 2_000,
    days: Annotated[int, typer.Option(min=1)] = 14,
    seed: int = 42,
    end_date: Annotated[str | None, typer.Option(help="Last day of data (default: yesterday, UTC).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    repeats: Annotated[
        bool, typer.Option("--repeats/--no-repeats", help="--no-repeats: a rating log, one rating per user and item.")
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Generate a synthetic data set with real structure (see batch.synthetic.generate) into <data-dir>/raw/."""
    from batch.synthetic.generate import generate as gen
    from batch.synthetic.generate import write_synthetic

    settings = _settings(data_dir)
    end = parse_date(end_date or _yesterday())
    with console.status(f"generating {users:,} users x {items:,} items over {days} days..."):
        data = gen(users, items, days, seed, end, n_categories=min(20, items), repeats=repeats)
        paths = write_synthetic(data, settings.raw_dir, fmt=fmt)  # type: ignore[arg-type]
    console.print(
        f"generated {len(data.interactions):,} events, {data.interactions['session_id'].nunique():,} sessions, "
        f"{len(data.items):,} items -> {', '.join(str(p) for p in paths.values())}"
    )


@app.command()
def ingest(
    path: Annotated[
        Path,
        typer.Argument(
            help="Interactions file (CSV, Parquet, MovieLens u.data, Last.fm user_artists.dat or, with "
            "--format lastfm-tags, user_taggedartists.dat: one view per user, artist and day)."
        ),
    ],
    items: Annotated[Path | None, typer.Option(help="Item catalogue (CSV/Parquet) to ingest too.")] = None,
    fmt: Annotated[Fmt, typer.Option("--format")] = Fmt.auto,
    date: Annotated[
        str | None, typer.Option("--date", help="Partition for files without timestamps (Last.fm).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Validate every row; good rows -> interactions/date=*/, bad rows -> quarantine/ with a reason each."""
    from batch.ingest import ingest_interactions, ingest_items

    settings = _settings(data_dir)
    if items is not None:
        console.print(ingest_items(items, settings.items_path).summary())
    report = ingest_interactions(
        path, fmt.value, settings.interactions_dir, settings.quarantine_dir, parse_date(date) if date else None
    )
    console.print(report.summary())


@app.command()
def compact(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Events per batch: one part per date per batch.")
    ] = 5_000,
    data_dir: DataDir = None,
) -> None:
    """Drain the live events stream into interactions/date=*/ (safe to kill and rerun: see batch.compaction)."""
    from batch.compaction import compact_events

    settings = _settings(data_dir)
    with _store(settings) as store, _progress() as bar:
        task = bar.add_task("compacting live events", total=store.events.stream_length())
        report = compact_events(store.events, settings, batch_size=batch_size, progress=lambda n: bar.advance(task, n))
    console.print(report.summary())


@app.command("run-batch")
def run_batch_cmd(date: DateOpt = "", data_dir: DataDir = None) -> None:
    """Train, evaluate and precompute for one partition date into runs/date=D/ (idempotent)."""
    from batch.pipeline import run_batch

    settings = _settings(data_dir)
    partition = parse_date(date or _yesterday())
    console.print(f"run-batch {partition}:")
    run_dir = run_batch(settings, partition, log=_step_logger)
    _print_run_summary(run_dir)


def _print_run_summary(run_dir: Path) -> None:
    from batch.artifacts import read_json

    m, metrics = read_json(run_dir / "manifest.json"), read_json(run_dir / "metrics.json")
    k = metrics.get("k")
    als, pop = metrics.get("als", {}), metrics.get("popularity", {})
    console.print(
        f"{run_dir}: {m['n_interactions']:,} interactions, {m['n_users']:,} users, {m['n_items']:,} items in "
        f"{sum(m['timings_s'].values()):.1f}s; Recall@{k} ALS {als.get('recall', 0):.4f} vs popularity "
        f"{pop.get('recall', 0):.4f}, NDCG@{k} {als.get('ndcg', 0):.4f} vs {pop.get('ndcg', 0):.4f}"
    )
    window = m.get("window") or {}
    if window.get("dropped_events"):
        console.print(
            f"[yellow]window:[/] {window['days']} days from {window['first_day']} leaves out "
            f"{window['dropped_events']:,} older events in {window['dropped_partitions']} partition(s); "
            "HYBRIDREC_TRAINING_WINDOW_DAYS=0 trains on the whole log"
        )


def _store(settings: Settings) -> RedisStore:
    from feature_store.redis_store import RedisStore

    return RedisStore.from_settings(settings)


def _publish(settings: Settings, partition: dt.date, force: bool = False) -> str:
    """batch.daily.publish_day, the DAG's publish step (and its rule), with a progress bar; the version serving."""
    from batch.daily import publish_day

    with _progress() as bar:
        task = bar.add_task(f"publishing {partition}", total=None)
        outcome = publish_day(settings, partition, force, prune=True, progress=lambda n: bar.advance(task, n))
    console.print(outcome.summary())
    return outcome.serving


@app.command()
def publish(
    date: DateOpt = "",
    force: Annotated[
        bool, typer.Option("--force", help="Publish even if a later day's version is serving (moves serving back).")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Publish runs/date=D/ to Redis as a new version and switch readers to it atomically; prints the version serving.

    A run for an earlier day than the serving version is not published (serving never moves back in
    time) unless --force.
    """
    settings = _settings(data_dir)
    typer.echo(_publish(settings, parse_date(date or _yesterday()), force))


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date YYYY-MM-DD (inclusive).")],
    force: Annotated[bool, typer.Option(help="Rebuild dates that already have a complete run.")] = False,
    publish_each: Annotated[
        bool, typer.Option("--publish", help="Publish each date after building it (never moving serving back in time).")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Run the batch steps for each date in order. Resumable: complete dates are skipped unless --force."""
    from batch.pipeline import is_complete, run_batch

    settings = _settings(data_dir)
    dates = date_range(parse_date(start), parse_date(end))
    built = skipped = 0
    for i, partition in enumerate(dates, 1):
        if is_complete(settings, partition) and not force:
            console.print(f"[{i}/{len(dates)}] {partition}: complete, skipped")
            skipped += 1
        else:
            console.print(f"[{i}/{len(dates)}] {partition}:")
            _print_run_summary(run_batch(settings, partition, log=_step_logger))
            built += 1
        if publish_each:
            _publish(settings, partition)
    console.print(f"backfill {dates[0]}..{dates[-1]}: {built} built, {skipped} skipped")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Current published version, when, its metrics, key counts, and the other kept versions."""
    import time

    settings = _settings(data_dir)
    with _store(settings) as store:
        versions = store.versions
        infos = versions.list_versions()
        table = Table(title=escape(f"versions in {redact_url(settings.redis_url)} (prefix {settings.key_prefix!r})"))
        for col in ("version", "state", "started (UTC)", "users", "items", "user keys", "window", "recall", "ndcg"):
            table.add_column(col)
        for v in infos:
            state = (
                "current" if v.is_current else "previous" if v.is_previous else "complete" if v.meta else "incomplete"
            )
            meta = v.meta or {}
            als = meta.get("metrics", {}).get("als", {})
            table.add_row(
                v.version,
                state,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.started_at)),
                f"{meta.get('n_users', 0):,}",
                f"{meta.get('n_items', 0):,}",
                f"{versions.count_user_keys(v.version):,}",
                _window_cell(meta.get("window")),
                f"{als.get('recall', float('nan')):.4f}",
                f"{als.get('ndcg', float('nan')):.4f}",
            )
        Console(width=None if sys.stdout.isatty() else 160, emoji=False).print(table)
        console.print(f"live events waiting in the stream: {store.events.stream_length():,}")
        if not infos:
            console.print("nothing published yet: run `hybridrec run-batch` then `hybridrec publish`")


def _window_cell(window: dict | None) -> str:
    """'all' or '90d', plus the events a window left out: what `status` shows of a version's window."""
    if not window:
        return "?"
    days = "all" if window.get("days") == "all" else f"{window.get('days')}d"
    dropped = window.get("dropped_events") or 0
    return f"{days} (-{dropped:,} events)" if dropped else days


@app.command()
def rollback(data_dir: DataDir = None) -> None:
    """Switch readers back to the previous version (and make the current one the rollback target)."""
    with _store(_settings(data_dir)) as store:
        console.print(f"now serving {store.versions.rollback()}")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Run the API with uvicorn (needs HYBRIDREC_REDIS_URL, and API keys unless HYBRIDREC_AUTH=off).

    The workers' metrics are merged through prometheus_client's multiprocess directory (cli/serve.py)."""
    from cli.serve import run_server
    from online.auth import AUTH_OFF_WARNING, Gate

    settings = get_settings()
    if not settings.redis_url:
        raise typer.BadParameter("set HYBRIDREC_REDIS_URL to the Redis that `hybridrec publish` wrote to")
    if not Gate(settings).enabled:  # Gate raises ConfigError (exit 2) when auth is on without keys
        console.print(f"[bold red]{AUTH_OFF_WARNING}[/]", highlight=False)
    run_server(settings, host, port, workers)


@app.command()
def demo(
    users: int = 5_000,
    items: int = 2_000,
    days: int = 14,
    seed: int = 42,
    port: Annotated[int, typer.Option(help="API port (0 = a free one).")] = 8000,
    data_dir: DataDir = None,
    exit_after_first_response: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """The whole loop on one machine: generate -> ingest -> run-batch -> publish -> serve, until Ctrl-C."""
    from cli.demo import DemoOptions, run_demo

    run_demo(
        _settings(data_dir),
        DemoOptions(users=users, items=items, days=days, seed=seed, port=port, once=exit_after_first_response),
        console,
    )


class EvalData(StrEnum):
    synthetic = "synthetic"
    lastfm = "lastfm"


LogDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Your ingested data dir (DIR/interactions/date=*/, optional DIR/items/): evaluated or tuned in place, "
        "read only (tune writes DIR/tuning/best.json and nothing else).",
    ),
]
MaxSessions = Annotated[int, typer.Option(min=1, help="Seeded sample of replayed sessions.")]
Repeats = Annotated[
    bool, typer.Option("--repeats/--no-repeats", help="Synthetic: --no-repeats is the rating-log mode.")
]
Users = Annotated[int, typer.Option(min=2, help="Synthetic users.")]
Items = Annotated[int, typer.Option(min=20, help="Synthetic items.")]
Days = Annotated[int, typer.Option(min=3, help="Synthetic days (periods are cut from them like any log's).")]
TestFraction = Annotated[
    float, typer.Option(help="Test period: the latest whole days holding at least this share of the events.")
]
ValFraction = Annotated[float, typer.Option(help="Validation period: the days before the test, this share.")]
TestDays = Annotated[int | None, typer.Option(min=1, help="Test period in days instead (ending on the last day).")]
ValDays = Annotated[int | None, typer.Option(min=1, help="Validation period in days instead (before the test).")]


def _source(data: EvalData | None, data_dir: Path | None) -> None:
    """Exactly one of --data and --data-dir."""
    if data is not None and data_dir is not None:
        raise typer.BadParameter("--data makes its own data dir; give --data or --data-dir, not both")
    if data is None and data_dir is None:
        raise typer.BadParameter("give --data-dir DIR (your ingested log) or --data synthetic|lastfm")


@app.command()
def evaluate(
    data: Annotated[
        EvalData | None, typer.Option("--data", help="synthetic (generated) or lastfm (HetRec 2011 plays + tags).")
    ] = None,
    data_dir: LogDir = None,
    lastfm_dir: Annotated[Path, typer.Option(help="The hetrec2011-lastfm-2k directory (read in place).")] = Path(
        "../shared/datasets/lastfm-hetrec2011-2k"
    ),
    out: Annotated[
        Path | None, typer.Option(help="Report and scratch folder (default: var/reports/<data or DIR name>).")
    ] = None,
    seed: int = 42,
    max_sessions: MaxSessions = 3_000,
    users: Users = 5_000,
    items: Items = 2_000,
    days: Days = 15,
    repeats: Repeats = True,
    test_fraction: TestFraction = 0.1,
    validation_fraction: ValFraction = 0.1,
    test_days: TestDays = None,
    validation_days: ValDays = None,
    tuning: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A `hybridrec tune` best.json: train, blend and re-rank with it (default with --data-dir: "
            "DIR/tuning/best.json when it exists).",
        ),
    ] = None,
    no_tuning: Annotated[bool, typer.Option("--no-tuning", help="Ignore DIR/tuning/best.json: Settings only.")] = False,
) -> None:
    """Static protocols + session replay through the API's ranking code; writes report.md/json and plots."""
    from lab.evaluate import EvalOptions, run_evaluation
    from lab.report import replay_table, summary_lines
    from lab.static import markdown_table

    _source(data, data_dir)
    spec = period_spec(test_fraction, validation_fraction, test_days, validation_days)
    if data_dir is not None and tuning is None and not no_tuning and (data_dir / "tuning" / "best.json").is_file():
        tuning = data_dir / "tuning" / "best.json"
        console.print(f"[yellow]tuning:[/] {tuning} (what DIR's next run-batch uses; --no-tuning ignores it)")
    kind = data.value if data is not None else "dir"
    name = kind if kind != "synthetic" or repeats else "synthetic-norepeat"
    out_dir = out or Path("var/reports") / (name if data_dir is None else data_dir.resolve().name)
    settings = get_settings(data_dir=out_dir / "batch-data", seed=seed)
    opts = EvalOptions(
        kind,
        out_dir,
        seed,
        max_sessions,
        users,
        items,
        days,
        repeats,
        lastfm_dir,
        tuning,
        data_dir,
        spec,  # type: ignore[arg-type]
    )
    with _progress() as bar:
        task = bar.add_task("replaying sessions", total=None, visible=False)

        def tick(n: int) -> None:
            bar.update(task, advance=n, visible=True)

        report, notes = run_evaluation(settings, opts, console.print, _step_logger, tick)
    for result in report["static"]:
        console.print(f"\nstatic {result['protocol']['name']}:\n" + markdown_table(result))
    if report["replay"] is not None:
        console.print("\nsession replay:\n" + replay_table(report["replay"]))
    console.print("\n" + "\n".join(summary_lines(report)))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"report: {out_dir / 'report.md'}")


@app.command()
def tune(
    data: Annotated[
        EvalData | None, typer.Option("--data", help="synthetic: generate a log into <out>/data and tune on it.")
    ] = None,
    data_dir: LogDir = None,
    out: Annotated[Path | None, typer.Option(help="Scratch folder for the batch runs (default: var/tuning).")] = None,
    seed: int = 42,
    max_sessions: MaxSessions = 1_000,
    max_targets: Annotated[
        int, typer.Option(min=1, help="Targets (before skips) per validation replay: bounds long sessions' cost.")
    ] = 2_000,
    users: Users = 5_000,
    items: Items = 2_000,
    days: Days = 15,
    repeats: Repeats = True,
    test_fraction: TestFraction = 0.1,
    validation_fraction: ValFraction = 0.1,
    test_days: TestDays = None,
    validation_days: ValDays = None,
    factors: Annotated[str, typer.Option(help="ALS factors to search, comma-separated.")] = csv(AlsGrid().factors),
    regularization: Annotated[str, typer.Option(help="ALS regularizations to search.")] = csv(AlsGrid().regularization),
    alpha: Annotated[str, typer.Option(help="ALS confidence scales to search.")] = csv(AlsGrid().alpha),
    iterations: Annotated[str, typer.Option(help="ALS sweep counts to search.")] = csv(AlsGrid().iterations),
    weight_user: Annotated[str, typer.Option(help="Blend weight_user values to search.")] = csv(WEIGHT_USER),
    weight_popularity: Annotated[str, typer.Option(help="Blend weight_popularity values.")] = csv(WEIGHT_POPULARITY),
    weight_covisit: Annotated[str, typer.Option(help="Blend weight_covisit values (at the best pair).")] = csv(
        WEIGHT_COVISIT
    ),
    precomputed_weight_popularity: Annotated[
        str, typer.Option(help="The precomputed tier's popularity weights (by batch-only HitRate).")
    ] = csv(PRECOMPUTED_WEIGHT_POPULARITY),
    reranker: Annotated[bool, typer.Option(help="Also train the learned re-ranker on validation.")] = True,
    reranker_gate: Annotated[
        bool,
        typer.Option(help="Keep the re-ranker only if it beats the blend on held-out validation sessions."),
    ] = True,
    candidate_models: Annotated[
        str | None,
        typer.Option(
            help="Candidate models to compare (als, ease, als+ease), comma-separated. "
            "Default: all three up to 5,000 items, else the configured one."
        ),
    ] = None,
) -> None:
    """Choose ALS, the candidate model, the blend and the re-ranker on a validation period; write
    <data-dir>/tuning/best.json."""
    if data is EvalData.lastfm:
        raise typer.BadParameter(
            "--data lastfm has no time order to tune on; ingest a dated log and use --data-dir (README: Tuning)"
        )
    _source(data, data_dir)
    options = {
        "seed": seed,
        "max_sessions": max_sessions,
        "max_targets": max_targets,
        "periods": period_spec(test_fraction, validation_fraction, test_days, validation_days),
        "als_grid": als_grid(factors, regularization, alpha, iterations),
        "weight_user": parse_grid(weight_user, "--weight-user"),
        "weight_popularity": parse_grid(weight_popularity, "--weight-popularity"),
        "weight_covisit": parse_grid(weight_covisit, "--weight-covisit"),
        "precomputed_weight_popularity": parse_grid(precomputed_weight_popularity, "--precomputed-weight-popularity"),
        "reranker": reranker,
        "candidate_models": candidate_model_list(candidate_models),
        "reranker_gate": reranker_gate,
    }
    synthetic = {"users": users, "items": items, "days": days, "repeats": repeats} if data is not None else None
    target = run_tune(
        data_dir,
        synthetic,
        out or Path("var/tuning"),
        lambda d: get_settings(data_dir=d, seed=seed),
        options,
        console,
        _step_logger,
    )
    typer.echo(str(target))


@app.command("airflow")
def airflow_cmd(
    port: Annotated[int, typer.Option(help="Airflow UI / API port.")] = 8080,
    data_dir: DataDir = None,
) -> None:
    """A local Airflow (standalone, SQLite) on this repo's dags/ and the embedded or configured Redis."""
    from cli.airflow_local import run_local_airflow

    run_local_airflow(_settings(data_dir), port, console)


def main() -> None:
    try:
        app()
    except HybridrecError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

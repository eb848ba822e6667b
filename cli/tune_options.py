"""``hybridrec tune`` / ``evaluate`` glue: grid and period options, the data dir, the printed result.

Each grid value is checked by the very constraints of the Settings field it will be set as (so a grid
cannot hold a value a batch run would refuse), and must be finite; a list must be non-empty and
without repeats. Bad input raises ``typer.BadParameter`` naming the option. Nothing heavy is imported
at module level: the command line shows the default grids without loading the training code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from lab.search import AlsGrid
from shared.config import Settings
from shared.errors import ConfigError

if TYPE_CHECKING:
    from lab.periods import PeriodSpec

# option -> the Settings field each of its values is validated as
GRID_SETTINGS = {
    "--factors": "als_factors",
    "--regularization": "als_regularization",
    "--alpha": "als_alpha",
    "--iterations": "als_iterations",
    "--weight-user": "weight_user",
    "--weight-popularity": "weight_popularity",
    "--weight-covisit": "weight_covisit",
    "--precomputed-weight-popularity": "precomputed_weight_popularity",
}


def csv(values: Sequence[float | str]) -> str:
    """``values`` as an option's default text: ``(1.0, 4.0, 0.05)`` -> ``"1,4,0.05"``, ``"auto"`` as is."""
    return ",".join(v if isinstance(v, str) else f"{v:g}" for v in values)


def parse_grid(text: str, option: str) -> tuple[Any, ...]:
    """The values of a comma-separated ``option`` (a key of ``GRID_SETTINGS``), in the order given."""
    info = Settings.model_fields[GRID_SETTINGS[option]]
    adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)
    values: list[Any] = []
    for token in text.split(","):
        try:
            value = adapter.validate_python(token.strip())
        except ValidationError as exc:
            raise typer.BadParameter(
                f"{token.strip()!r} in {text!r}: {exc.errors()[0]['msg']}", param_hint=option
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{token.strip()!r} in {text!r} is not finite", param_hint=option)
        if value in values:
            raise typer.BadParameter(f"{text!r} lists {token.strip()} twice", param_hint=option)
        values.append(value)
    return tuple(values)


def candidate_model_list(text: str | None) -> tuple[str, ...]:
    """``--candidate-models``: () when not given (tune decides by catalogue size), else the distinct names."""
    if text is None:
        return ()
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    known = ("als", "ease", "als+ease")
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise typer.BadParameter(f"{text!r}: choose from {', '.join(known)}", param_hint="--candidate-models")
    return names


def als_grid(factors: str, regularization: str, alpha: str, iterations: str) -> AlsGrid:
    return AlsGrid(
        factors=parse_grid(factors, "--factors"),
        regularization=parse_grid(regularization, "--regularization"),
        alpha=parse_grid(alpha, "--alpha"),
        iterations=parse_grid(iterations, "--iterations"),
    )


def period_spec(
    test_fraction: float, validation_fraction: float, test_days: int | None, validation_days: int | None
) -> PeriodSpec:
    """The period options as a ``lab.periods.PeriodSpec``; a bad combination is a usage error."""
    from lab.periods import PeriodSpec

    try:
        return PeriodSpec(test_fraction, validation_fraction, test_days, validation_days)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--test-fraction/--validation-fraction") from None


def run_tune(
    source: Path | None,
    synthetic: dict[str, Any] | None,
    out_dir: Path,
    settings_for: Callable[[Path], Settings],
    options: dict[str, Any],
    console: Console,
    log: Callable[[str, float], None],
) -> Path:
    """Tune the data dir ``source`` (or a synthetic log generated into ``out_dir/data``) with batch runs in
    ``out_dir/batch-data``; write ``<data dir>/tuning/best.json``, print the test table, return its path.

    ``options``: ``lab.tune.TuneOptions`` fields other than ``result_path``, already parsed;
    ``synthetic``: users, items, days, repeats of the generated log.
    """
    from lab.tune import TuneOptions, run_tuning

    scratch = settings_for(out_dir / "batch-data")
    if synthetic is not None:
        from lab.datasets import synthetic_data_dir

        console.print(f"generating the synthetic log into {out_dir / 'data'}")
        source, _ = synthetic_data_dir(scratch, out_dir / "data", seed=options["seed"], **synthetic)
    if source is None:
        raise ValueError("run_tune needs a data dir or a synthetic log to generate")
    target = source / "tuning" / "best.json"
    if target.exists():
        console.print(f"[yellow]note:[/] {target} exists; it is replaced when tuning ends")
    result = run_tuning(scratch, source, TuneOptions(target, **options), console.print, log)
    if result["protocol"] == "random":
        for name, row in result["test"].items():
            console.print(
                f"test (random 80/20) {name:<12} NDCG@10 {row['ndcg_at_10']:.4f} Recall@20 {row['recall_at_20']:.4f}"
            )
        console.print(f"[yellow]note:[/] {result['note']}")
    else:
        _print_test(result, console)
    console.print(f"tuned in {result['timings_s']['total']:.0f}s ({result['timings_s']})")
    return target


def _print_test(result: dict[str, Any], console: Console) -> None:
    from lab.tune import BATCH_METRIC, METRIC

    period = "..".join(result["split"]["test"]["replay"])
    for name, row in result["test"].items():
        if name == "reranked":
            console.print(
                f"test {period} {name:<10} ALS {row['als']} learned re-ranker: "
                f"HitRate@10 {row[METRIC]:.4f} vs the tuned blend {row['blend_' + METRIC]:.4f} on the same "
                f"{row['n_targets']} targets; difference 95% session-bootstrap interval "
                f"{row['paired_difference']['ci95_low']:+.4f} .. {row['paired_difference']['ci95_high']:+.4f}"
            )
            continue
        console.print(
            f"test {period} {name:<10} ALS {row['als']} blend "
            + " ".join(f"{k}={v:g}" for k, v in row["params"].items() if k != "session_half_life")
            + ": "
            f"hybrid HitRate@10 {row[METRIC]:.4f} (batch-only {row[BATCH_METRIC]:.4f}, {row['n_targets']} targets)"
        )

"""`hybridrec tune` options: grid lists checked like the settings they set; scratch dirs it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.tune_options import csv, parse_grid, period_spec
from lab.ownlog import scratch_data_dir
from lab.search import AlsGrid
from lab.tune import TuneOptions, run_tuning
from shared.config import get_settings
from shared.errors import ConfigError


def test_grid_options_parse_like_the_settings_they_set() -> None:
    assert parse_grid(" 32, 64,128", "--factors") == (32, 64, 128)
    assert parse_grid("0.01,0.05,0.2", "--regularization") == (0.01, 0.05, 0.2)
    assert parse_grid("0,0.8", "--weight-popularity") == (0.0, 0.8)
    assert parse_grid("auto,10", "--regularization") == ("auto", 10.0)
    assert csv(AlsGrid().regularization) == "auto,1,10,100"
    assert csv(AlsGrid().alpha) == "1,4,10,40" and parse_grid(csv(AlsGrid().alpha), "--alpha") == AlsGrid().alpha


def test_default_als_grids_are_on_implicits_scale() -> None:
    grid = AlsGrid()
    numbers = [r for r in grid.regularization if r != "auto"]
    assert "auto" in grid.regularization  # the Settings default is one point of the search
    assert {1.0, 10.0, 100.0} <= set(numbers) and max(numbers) == 100.0
    assert {64, 128, 256} <= set(grid.factors) and max(grid.factors) == 256
    assert {1.0, 4.0, 10.0, 40.0} <= set(grid.alpha)


def test_bad_periods_are_a_usage_error() -> None:
    with pytest.raises(typer.BadParameter, match="leave events to train on"):
        period_spec(0.5, 0.5, None, None)
    assert period_spec(0.1, 0.2, 3, None).test_days == 3


@pytest.mark.parametrize(
    ("option", "text", "message"),
    [
        ("--factors", "32,x", "'x'.*valid integer"),
        ("--factors", "1.5", "valid integer"),
        ("--factors", "0", "greater than or equal to 1"),
        ("--factors", "2048", "less than or equal to 1024"),
        ("--factors", "", "valid integer"),
        ("--factors", "64,,128", "valid integer"),
        ("--factors", "64,64", "lists 64 twice"),
        ("--iterations", "500", "less than or equal to 200"),
        ("--alpha", "0", "greater than 0"),
        ("--alpha", "inf", "not finite"),
        ("--regularization", "-0.1", "greater than or equal to 0"),
        ("--weight-user", "nan", "greater than or equal to 0"),
    ],
)
def test_junk_in_a_grid_option_is_a_bad_parameter_naming_the_option(option: str, text: str, message: str) -> None:
    with pytest.raises(typer.BadParameter, match=message) as exc:
        parse_grid(text, option)
    assert exc.value.param_hint == option


def test_an_empty_axis_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        AlsGrid(alpha=())


def _log(root: Path) -> Path:
    """A data dir with one (empty-bodied) interaction partition: enough for the scratch checks."""
    part = root / "interactions" / "date=2025-03-01" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"")
    return root


def test_a_scratch_dir_overlapping_the_data_dir_is_refused_before_anything_is_deleted(tmp_path: Path) -> None:
    source = _log(tmp_path / "mine")
    for scratch in (source / "scratch", source, tmp_path):
        with pytest.raises(ConfigError, match="overlap"):
            scratch_data_dir(source, scratch)
    assert (source / "interactions" / "date=2025-03-01" / "part-0.parquet").exists()


def test_the_scratch_dir_is_emptied_and_reads_the_data_dir_through_links(tmp_path: Path) -> None:
    source = _log(tmp_path / "mine")
    stale = tmp_path / "out" / "tuning" / "best.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # a stale tuning file would override every searched point
    scratch = scratch_data_dir(source, tmp_path / "out")
    assert not stale.exists() and sorted(p.name for p in scratch.iterdir()) == ["interactions"]
    assert (scratch / "interactions").resolve() == (source / "interactions").resolve()


def test_tuning_refuses_a_data_dir_without_interactions(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "scratch")
    with pytest.raises(ConfigError, match="has no interactions"):
        run_tuning(settings, tmp_path / "mine", TuneOptions(tmp_path / "out.json"), print, lambda *_: None)
    assert not settings.data_dir.exists() and not (tmp_path / "out.json").exists()


def test_a_reranker_that_loses_to_the_blend_on_validation_is_not_kept() -> None:
    from lab.tune import keep_reranker

    spec = {
        "c": 0.1,
        "c_grid_hit_rate_at_10_in_pool": {"0.01": 0.70, "0.1": 0.61},
        "blend_hit_rate_at_10_in_pool": 0.62,
    }
    kept, rejected = keep_reranker(spec)
    assert kept is None and rejected is not None and rejected["spec"] is spec
    assert "0.6100 <= the blend's 0.6200" in rejected["reason"]  # judged at its chosen C, not the best of the grid
    better = {**spec, "c": 0.01}
    assert keep_reranker(better) == (better, None)

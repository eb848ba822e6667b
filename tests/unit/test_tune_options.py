"""`hybridrec tune` options: grid lists checked like the settings they set; a scratch dir it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.tune_options import csv, parse_grid
from lab.search import AlsGrid
from lab.tune import TuneOptions, run_tuning
from shared.config import get_settings
from shared.errors import ConfigError


def test_grid_options_parse_like_the_settings_they_set() -> None:
    assert parse_grid(" 32, 64,128", "--factors") == (32, 64, 128)
    assert parse_grid("0.01,0.05,0.2", "--regularization") == (0.01, 0.05, 0.2)
    assert parse_grid("0,0.8", "--weight-popularity") == (0.0, 0.8)
    assert csv(AlsGrid().alpha) == "1,4,10" and parse_grid(csv(AlsGrid().alpha), "--alpha") == AlsGrid().alpha


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


def test_tuning_refuses_a_data_dir_whose_tuning_file_would_override_the_search(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    settings.tuning_path.parent.mkdir(parents=True)
    settings.tuning_path.write_text("{}")
    with pytest.raises(ConfigError, match="override every searched point"):
        run_tuning(settings, TuneOptions(tmp_path / "out.json"), print, lambda *_: None)
    assert not settings.raw_dir.exists()  # refused before generating anything

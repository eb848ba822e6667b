"""The README documents what the code does: every setting, every CLI command, the CI command."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from cli.main import app
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"`HYBRIDREC_{name.upper()}`" not in README]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_every_cli_command_is_documented() -> None:
    commands = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    assert "backfill" in commands
    missing = [c for c in commands if f"| `{c}" not in README]
    assert not missing, f"CLI commands missing from the README: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci and "./dev test" in README

"""`hybridrec keys`: make API keys and the session secret (README "API security")."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from shared.apikeys import SCOPES, key_entry, new_api_key, new_session_secret, parse_scopes

keys_app = typer.Typer(no_args_is_help=True, help="Make API keys and the session secret of the API.")
console = Console(stderr=True)


@keys_app.command("new")
def new(
    scopes: Annotated[str, typer.Option(help=f"Comma-separated, of: {', '.join(SCOPES)}.")] = "write-events,read-recs",
) -> None:
    """Print a new random API key (line 1) and its entry for HYBRIDREC_API_KEYS (line 2: its sha256, not the key)."""
    try:
        parsed = parse_scopes(scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    key = new_api_key()
    typer.echo(key)
    typer.echo(key_entry(key, parsed))
    console.print(
        "line 1: the key, for the client (shown once; the server keeps only its hash)\n"
        "line 2: add it to HYBRIDREC_API_KEYS (entries separated by spaces) or to HYBRIDREC_API_KEYS_FILE",
        highlight=False,
    )


@keys_app.command("secret")
def secret() -> None:
    """Print a new random HYBRIDREC_SESSION_SECRET (the same in every API worker and replica)."""
    typer.echo(new_session_secret())

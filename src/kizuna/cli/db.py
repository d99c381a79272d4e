"""`kizuna db …`: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from kizuna.core.settings import get_settings
from kizuna.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("heads", help="Target revision.")) -> None:
    """Apply all migrations (both engines)."""
    migrate.upgrade(get_settings().database_url, revision)
    console.print("[green]schema up to date[/green]")

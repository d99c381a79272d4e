"""`kizuna import cards`, `kizuna rotate-keys`, `kizuna members withdraw`: identity operations."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select

from kizuna.cli.context import database
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.core.settings import get_settings
from kizuna.members import importer, service, withdrawal
from kizuna.partners.models import Program
from kizuna.privacy import keys, rotation
from kizuna.webhooks import rotation as webhook_rotation

import_app = typer.Typer(help="Import data from other systems.", no_args_is_help=True)
members_app = typer.Typer(help="Members.", no_args_is_help=True)
console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _program_id(code: str | None) -> int:
    with database().read() as session:
        query = select(Program.id, Program.code)
        if code is not None:
            query = query.where(Program.code == code)
        rows = session.execute(query.limit(2)).all()
    if len(rows) != 1:
        console.print("[red]name the programme with --program CODE[/red]")
        raise typer.Exit(2)
    return int(rows[0].id)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


@import_app.command("cards")
def import_cards(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV of legacy cards."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate every line, write nothing."),
    program: str | None = typer.Option(None, help="Programme code (default: the only one)."),
    report: Path | None = typer.Option(None, help="Error report CSV (default: FILE.errors.csv)."),
    batch_size: int = typer.Option(importer.DEFAULT_CHUNK, min=1, help="Lines per transaction."),
    workers: int = typer.Option(1, min=1, help="Processes that parse and encrypt lines."),
) -> None:
    """Import legacy cards and open their balances (migrate_in); resumable and idempotent."""
    program_id = _program_id(program)
    keys.configure(get_settings())
    with _progress() as progress:
        task = progress.add_task("validating" if dry_run else "importing", total=_count_lines(file))
        result = importer.run_import(
            database(),
            file,
            program_id=program_id,
            as_of=utcnow(),
            dry_run=dry_run,
            batch_size=batch_size,
            workers=workers,
            progress=lambda n: progress.advance(task, n),
        )
    report_path = report or file.with_suffix(".errors.csv")
    importer.write_error_report(report_path, result.errors)
    table = Table(title="dry run: nothing written" if dry_run else "import")
    for name in ("lines", "to import" if dry_run else "imported", "skipped", "failed", "points"):
        table.add_column(name, justify="right")
    table.add_row(
        str(result.total),
        str(result.imported),
        str(result.skipped),
        str(result.failed),
        str(result.points),
    )
    console.print(table)
    if result.resumed_after:
        console.print(f"resumed after line {result.resumed_after}")
    console.print(f"error report: {report_path} ({len(result.errors)} errors)")
    if result.errors:
        raise typer.Exit(1)


def rotate_keys(
    new_key: bool = typer.Option(
        False, "--new-key", help="Add a fresh key version to the key file and make it current."
    ),
    batch_size: int = typer.Option(500, min=1, help="Rows per transaction."),
) -> None:
    """Re-encrypt all personal data and webhook secrets with the current key version, in batches,
    while serving."""
    settings = get_settings()
    ring = keys.load_keyring(settings)
    if new_key:
        if settings.key_file is None:
            console.print("[red]--new-key needs KIZUNA_KEY_FILE[/red]")
            raise typer.Exit(2)
        ring = ring.with_new_version(os.urandom(keys.KEY_BYTES))
        keys.write_key_file(Path(settings.key_file), ring)
        console.print(f"key version {ring.current} added to {settings.key_file}")
    keys.configure(ring)
    db = database(settings)
    tables = [*service.encrypted_tables(), *webhook_rotation.encrypted_tables()]
    with _progress() as progress:
        task = progress.add_task(
            f"re-encrypting with key {ring.current}", total=rotation.pending(db, tables, ring)
        )
        # Webhook secrets from before encryption are in clear: sealed first (they count as
        # pending), then everything older than the current key is re-encrypted.
        done = webhook_rotation.seal_legacy(
            db, ring, batch_size=batch_size, progress=lambda n: progress.advance(task, n)
        )
        done += rotation.rotate(
            db, tables, ring, batch_size=batch_size, progress=lambda n: progress.advance(task, n)
        )
    console.print(f"[green]{done} rows now use key version {ring.current}[/green]")


@members_app.command("withdraw")
def withdraw(
    member_id: int = typer.Argument(..., help="Member id."),
    actor: str = typer.Option("cli", help="Who asks (recorded in the journal and audit log)."),
    reason: str | None = typer.Option(None, help="Reason, kept with the forfeit entry."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Withdraw a member (退会): forfeit points, erase personal data, release identifiers."""
    if not yes:
        typer.confirm(f"withdraw member {member_id}? This cannot be undone.", abort=True)
    keys.configure(get_settings())
    try:
        with database().write() as session:
            result = withdrawal.withdraw(
                session, member_id=member_id, actor=actor, as_of=utcnow(), reason=reason
            )
    except KizunaError as refused:
        console.print(f"[red]{refused.code}: {refused.message}[/red]")
        raise typer.Exit(1) from refused
    console.print(
        f"[green]member {member_id} withdrawn[/green]: {result.forfeited_points} points forfeited,"
        f" {result.identifiers_released} identifiers released, {result.cards_blocked} cards blocked"
    )

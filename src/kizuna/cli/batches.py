"""`kizuna batches …`: offline POS batches from the command line — upload a file of receipts for an
API client (as `POST /v1/batches` does) and post it here with a progress bar, show a batch's
counts, list its rows' results."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kizuna.batches import service
from kizuna.batches.domain import BatchFormat
from kizuna.batches.models import PurchaseBatch
from kizuna.cli.context import database
from kizuna.clients.domain import Scope
from kizuna.clients.models import ApiClient
from kizuna.clients.service import identity_of
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.core.settings import get_settings

app = typer.Typer(help="Offline POS batches: upload, post, inspect.", no_args_is_help=True)
console = Console()


def _fail(code: str, message: str) -> None:
    console.print(f"[red]{code}[/red]: {message}")
    raise typer.Exit(1)


def _show(batch: PurchaseBatch) -> None:
    console.print(
        f"batch [bold]{batch.id}[/bold] {batch.status}: {batch.total_rows} rows,"
        f" {batch.ok_rows} posted, {batch.duplicate_rows} duplicates, {batch.error_rows} errors"
    )


@app.command("upload")
def upload(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    client_id: int = typer.Option(..., "--client", help="Id of the API client the till uses."),
    fmt: BatchFormat | None = typer.Option(
        None, "--format", help="ndjson or csv (default: from the file's extension)."
    ),
    post: bool = typer.Option(True, help="Post the rows here now (else a worker will)."),
) -> None:
    """Store a file of receipts as a batch of the client and, by default, post it."""
    fmt = fmt or (BatchFormat.CSV if file.suffix.lower() == ".csv" else BatchFormat.NDJSON)
    db = database()
    try:
        with db.write() as session:
            client = session.get(ApiClient, client_id)
            if client is None or client.status != "active":
                _fail("invalid_client", f"no active API client {client_id}")
            assert client is not None
            identity = identity_of(session, client)
            if Scope.BATCHES_WRITE not in identity.scopes:
                _fail("insufficient_scope", f"client {client_id} lacks {Scope.BATCHES_WRITE}")
            batch = service.create_batch(
                session, client=identity, content=file.read_bytes(), fmt=fmt, as_of=utcnow()
            )
            batch_id, total = batch.id, batch.total_rows
    except KizunaError as error:
        _fail(error.code, error.message)
    console.print(f"batch [bold]{batch_id}[/bold]: {total} rows stored")
    if post:
        with Progress(
            TextColumn("posting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("posting", total=total)
            service.process_batch(
                db.write,
                batch_id=batch_id,
                as_of=utcnow(),
                keep_days=get_settings().idempotency_days,
                progress=lambda rows: progress.advance(task, rows),
            )
    with db.read() as session:
        found = session.get(PurchaseBatch, batch_id)
        assert found is not None
        _show(found)
    db.dispose()


@app.command("status")
def status(batch_id: int = typer.Argument(...)) -> None:
    """A batch's status and counts."""
    db = database()
    with db.read() as session:
        batch = session.get(PurchaseBatch, batch_id)
        if batch is None:
            _fail("batch_not_found", f"batch {batch_id} not found")
        assert batch is not None
        _show(batch)
    db.dispose()


@app.command("rows")
def rows(
    batch_id: int = typer.Argument(...),
    row_status: str | None = typer.Option(
        None, "--status", help="pending, ok, duplicate or error (default: all)."
    ),
    after_line: int = typer.Option(0, help="Start after this line of the file."),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """The rows' results in file order (errors name the field or the reason)."""
    table = Table("line", "status", "result")
    db = database()
    with db.read() as session:
        for row in service.rows_of(
            session, batch_id=batch_id, status=row_status, after_line=after_line, limit=limit
        ):
            result = row.result or {}
            shown = (
                f"{result.get('code')}: {result.get('message')}"
                if "code" in result
                else " ".join(f"{k}={v}" for k, v in result.items())
            )
            table.add_row(str(row.line_no), row.status, shown)
    db.dispose()
    console.print(table)

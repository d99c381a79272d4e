"""`kizuna clients …`: API clients of partners — create (the key is printed once), list, rotate,
revoke."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from kizuna.cli.context import database
from kizuna.clients import service
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError

app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
console = Console()


def _fail(error: KizunaError) -> None:
    console.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(1)


@app.command("create")
def create(
    partner_id: int = typer.Option(..., "--partner", help="Id of the partner the client acts for."),
    kind: ClientKind = typer.Option(ClientKind.STORE, help="partner, store, terminal, ec or app."),
    name: str = typer.Option(..., help="A name people recognise, e.g. 'Shibuya POS 3'."),
    store_id: int | None = typer.Option(None, "--store", help="Limit the client to this store."),
    scope: list[str] = typer.Option(None, "--scope", help="Scopes (repeatable); default by kind."),
    rate: int = typer.Option(service.DEFAULT_RATE_PER_MINUTE, help="Requests per minute."),
) -> None:
    """Create a client and print its API key — the only time it is shown."""
    try:
        with database().write() as session:
            client, key = service.create_client(
                session,
                partner_id=partner_id,
                kind=kind,
                name=name,
                scopes=scope or None,
                store_id=store_id,
                rate_per_minute=rate,
                as_of=utcnow(),
            )
    except KizunaError as error:
        _fail(error)
    console.print(f"client [bold]{client.id}[/bold] ({kind}) scopes: {', '.join(client.scopes)}")
    console.print("API key (shown once, store it now):")
    typer.echo(key)


@app.command("list")
def list_clients(partner_id: int | None = typer.Option(None, "--partner")) -> None:
    """List clients (never their keys)."""
    table = Table("id", "partner", "store", "kind", "name", "status", "scopes", "rate/min")
    with database().read() as session:
        for c in service.list_clients(session, partner_id=partner_id):
            table.add_row(
                str(c.id),
                str(c.partner_id),
                str(c.store_id or ""),
                c.kind,
                c.name,
                c.status,
                " ".join(c.scopes),
                str(c.rate_per_minute),
            )
    console.print(table)


@app.command("rotate")
def rotate(client_id: int = typer.Argument(...)) -> None:
    """Give a client a new key; the old one stops working."""
    try:
        with database().write() as session:
            key = service.rotate_key(session, client_id=client_id, as_of=utcnow())
    except KizunaError as error:
        _fail(error)
    console.print("new API key (shown once):")
    typer.echo(key)


@app.command("revoke")
def revoke(client_id: int = typer.Argument(...)) -> None:
    """Revoke a client for good."""
    try:
        with database().write() as session:
            service.revoke(session, client_id=client_id, as_of=utcnow())
    except KizunaError as error:
        _fail(error)
    console.print(f"client {client_id} revoked")

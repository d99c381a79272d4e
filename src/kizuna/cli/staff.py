"""`kizuna staff …` and `kizuna audit …`: staff accounts and the audit log from the server's shell.

Whoever runs these commands already controls the server, so they act as the owner-level actor
`cli`; every change is still written to the audit log.
"""

from __future__ import annotations

import secrets

import typer
from rich.console import Console
from rich.table import Table

from kizuna.cli.context import database
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.security import audit as audit_log
from kizuna.security import service as security
from kizuna.security.domain import Role

app = typer.Typer(help="Staff accounts of the console.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
console = Console()


def _fail(error: KizunaError) -> None:
    console.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(1)


def _user_id(username: str) -> int:
    with database().read() as session:
        user = security.find_staff(session, username)
    if user is None:
        console.print(f"[red]no staff user {username!r}[/red]")
        raise typer.Exit(1)
    return user.id


@app.command("create")
def create(
    username: str,
    role: Role = typer.Option(..., help="One of the roles of the permission table."),
    name: str = typer.Option("", help="Display name (defaults to the user name)."),
    store: int | None = typer.Option(None, help="Store id (store_staff)."),
    partner: int | None = typer.Option(None, help="Partner id (partner_manager)."),
) -> None:
    """Create a staff account with a one-time password that must be changed at first log-in."""
    password = secrets.token_urlsafe(12)
    try:
        with database().write() as session:
            security.create_staff(
                session,
                username=username,
                display_name=name or username,
                role=role,
                password=password,
                actor="cli",
                as_of=utcnow(),
                store_id=store,
                partner_id=partner,
                must_change_password=True,
            )
    except KizunaError as refused:
        _fail(refused)
    console.print(f"created [bold]{username}[/bold] ({role.value}); one-time password: {password}")


@app.command("list")
def list_staff() -> None:
    """Every staff account with its role, scope and state."""
    table = Table("user", "name", "role", "store", "partner", "TOTP", "state")
    now = utcnow()
    with database().read() as session:
        for user in security.list_staff(session):
            locked = user.locked_until is not None and user.locked_until > now
            state = "inactive" if not user.active else "locked" if locked else "active"
            table.add_row(
                user.username,
                user.display_name,
                user.role,
                str(user.store_id or ""),
                str(user.partner_id or ""),
                "on" if user.totp_secret else "",
                state,
            )
    console.print(table)


@app.command("reset-password")
def reset_password(username: str) -> None:
    """Give a user a one-time password (clears lock-out, TOTP and sessions)."""
    staff_id = _user_id(username)
    with database().write() as session:
        temporary = security.reset_password(
            session, actor=security.system_actor(), staff_id=staff_id, as_of=utcnow()
        )
    console.print(f"one-time password for [bold]{username}[/bold]: {temporary}")


@app.command("unlock")
def unlock(username: str) -> None:
    """Lift a lock-out after repeated failed log-ins."""
    staff_id = _user_id(username)
    with database().write() as session:
        security.unlock(session, actor=security.system_actor(), staff_id=staff_id, as_of=utcnow())
    console.print(f"[green]unlocked {username}[/green]")


@audit_app.command("verify")
def verify() -> None:
    """Recompute the audit chain; exit 1 if any entry was altered or deleted."""
    with database().read() as session:
        result = audit_log.verify(session)
    if result.ok:
        console.print(f"[green]audit log intact[/green]: {result.entries} entries")
        return
    for problem in result.problems:
        console.print(f"[red]entry {problem.seq}: {problem.problem}[/red]")
    console.print(f"[red]audit log damaged[/red]: {len(result.problems)} problem(s)")
    raise typer.Exit(1)


@audit_app.command("tail")
def tail(
    limit: int = typer.Option(20, min=1, max=1000),
    actor: str | None = typer.Option(None),
    action: str | None = typer.Option(None, help="Prefix, e.g. 'auth.' or 'points.'"),
) -> None:
    """The newest audit entries."""
    table = Table("seq", "at (UTC)", "actor", "action", "target", "details")
    with database().read() as session:
        rows = audit_log.entries(
            session, filters=audit_log.AuditFilter(actor=actor, action=action), limit=limit
        )
        for entry in rows:
            table.add_row(
                str(entry.seq),
                entry.at.strftime("%Y-%m-%d %H:%M:%S"),
                entry.actor,
                entry.action,
                entry.target,
                str(entry.details or ""),
            )
    console.print(table)

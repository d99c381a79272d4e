"""The `kizuna` command: each area's commands live in their own module and are registered here."""

from __future__ import annotations

import typer

from kizuna.cli import (
    batches,
    bench,
    clients,
    db,
    demo,
    ledger,
    members,
    rules,
    serve,
    staff,
    worker,
)

app = typer.Typer(help="Kizuna: points and membership.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.add_typer(members.import_app, name="import")
app.add_typer(members.members_app, name="members")
app.command("rotate-keys")(members.rotate_keys)
app.add_typer(staff.app, name="staff")
app.add_typer(staff.audit_app, name="audit")
app.add_typer(clients.app, name="clients")
app.add_typer(batches.app, name="batches")
app.add_typer(bench.app, name="bench")
app.add_typer(rules.app, name="rules")
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("demo")(demo.demo)
app.command("reconcile")(ledger.reconcile)

"""`kizuna worker`: run the scheduled jobs (webhook delivery, key pruning, expiry …) until stopped.
Several workers may run at once, on one machine or many."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from kizuna.api.observability import configure_logging
from kizuna.cli.context import database
from kizuna.core.settings import get_settings
from kizuna.jobs.registry import registered
from kizuna.jobs.runner import run_worker


def worker(
    only: list[str] = typer.Option(None, "--only", help="Run only these jobs (repeatable)."),
    lease_seconds: float = typer.Option(
        30.0, help="How long a claimed webhook delivery is reserved for this worker."
    ),
    once: bool = typer.Option(False, help="Run every job once, then exit."),
    list_jobs: bool = typer.Option(False, "--list", help="List the jobs and exit."),
) -> None:
    """Run the background jobs; stops cleanly on SIGTERM or Ctrl-C."""
    if list_jobs:
        for job in registered():
            typer.echo(f"{job.name}\tevery {job.every_seconds:g}s")
        return
    settings = get_settings()
    configure_logging(json_logs=settings.log_json)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    db = database(settings)
    try:
        run_worker(
            db,
            settings,
            stop=stop,
            only=set(only) if only else None,
            options={"lease_seconds": lease_seconds},
            once=once,
        )
    finally:
        db.dispose()

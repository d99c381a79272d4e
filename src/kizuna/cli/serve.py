"""`kizuna serve`: the API with uvicorn, in N worker processes."""

from __future__ import annotations

import os
import tempfile

import typer
import uvicorn

from kizuna.clients import buckets


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Server processes (the app is stateless)."),
    log_level: str = typer.Option("warning", help="uvicorn's own log level."),
    healthcheck_timeout: int = typer.Option(
        60, help="Seconds a worker may take to answer the supervisor (startup included)."
    ),
) -> None:
    """Serve the REST API, /docs, health, readiness and metrics."""
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each process counts on its own; this directory lets /metrics add them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kizuna-metrics-")
    if workers > 1 and not os.environ.get("KIZUNA_RATE_LIMIT_FILE"):
        # One table of rate-limit buckets for all workers: a client's limit is per host, not
        # per process.
        path = os.path.join(tempfile.mkdtemp(prefix="kizuna-limits-"), "buckets")
        buckets.create(path)
        os.environ["KIZUNA_RATE_LIMIT_FILE"] = path
    uvicorn.run(
        "kizuna.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the app writes its own access log, as JSON and without query strings
        log_level=log_level,
        # uvicorn kills a worker that does not answer its ping within this time; its default of
        # 5 s is shorter than the app's start-up on a busy machine, which then restarts forever.
        timeout_worker_healthcheck=healthcheck_timeout,
    )

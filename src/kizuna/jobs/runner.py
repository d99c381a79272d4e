"""The worker loop: run each job when due, log what it did, never let one job's failure stop
the others, and stop cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.database import Database
from kizuna.jobs.registry import Job, JobContext, registered

log = logging.getLogger("kizuna.worker")


def run_worker(
    database: Database,
    settings: Settings,
    *,
    stop: threading.Event,
    only: set[str] | None = None,
    options: dict[str, Any] | None = None,
    tick: float = 0.2,
    once: bool = False,
    on_round: Callable[[str, int], None] | None = None,
) -> None:
    """Run the registered jobs (or those in `only`) until `stop` is set, or one round if `once`."""
    jobs = [job for job in registered() if only is None or job.name in only]
    states: dict[str, dict[str, Any]] = {job.name: {} for job in jobs}
    due = dict.fromkeys((job.name for job in jobs), 0.0)
    log.info("worker started", extra={"jobs": [job.name for job in jobs]})
    try:
        while not stop.is_set():
            for job in jobs:
                if stop.is_set() or (not once and time.monotonic() < due[job.name]):
                    continue
                done = _run(job, database, settings, options or {}, states[job.name])
                if on_round is not None:
                    on_round(job.name, done)
                # A job that found work runs again at once; an idle one waits its interval.
                due[job.name] = time.monotonic() + (0.0 if done > 0 else job.every_seconds)
            if once:
                break
            stop.wait(tick)
    finally:
        for state in states.values():
            for value in state.values():
                close = getattr(value, "close", None)
                if callable(close):
                    close()
        log.info("worker stopped")


def _run(
    job: Job, database: Database, settings: Settings, options: dict[str, Any], state: dict[str, Any]
) -> int:
    context = JobContext(
        database=database, settings=settings, as_of=utcnow(), options=options, state=state
    )
    started = time.perf_counter()
    try:
        done = job.run(context)
    except Exception:
        log.exception("job failed", extra={"job": job.name})
        return 0
    if done:
        log.info(
            "job ran",
            extra={
                "job": job.name,
                "done": done,
                "ms": int((time.perf_counter() - started) * 1000),
            },
        )
    return done

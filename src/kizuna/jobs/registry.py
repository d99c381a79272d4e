"""The jobs `kizuna worker` runs. Areas add theirs to `catalog.py` with `@job(...)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kizuna.core.settings import Settings
from kizuna.db.database import Database


@dataclass
class JobContext:
    """What a job gets on each round: the database, the settings, the time, worker options, and a
    place to keep state between rounds in this process."""

    database: Database
    settings: Settings
    as_of: datetime
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


JobFunction = Callable[[JobContext], int]


@dataclass(frozen=True)
class Job:
    """A named function run every `every_seconds`; it returns how much work it did (0: idle)."""

    name: str
    every_seconds: float
    run: JobFunction


_JOBS: dict[str, Job] = {}


def job(name: str, *, every_seconds: float) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as job `name`."""

    def register(function: JobFunction) -> JobFunction:
        _JOBS[name] = Job(name=name, every_seconds=every_seconds, run=function)
        return function

    return register


def registered() -> list[Job]:
    """Every registered job (importing the catalog registers the built-in ones)."""
    from kizuna.jobs import catalog  # noqa: F401  (imported for its @job registrations)

    return list(_JOBS.values())

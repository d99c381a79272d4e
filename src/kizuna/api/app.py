"""The FastAPI application: `create_app(settings)` builds one, stateless, on one `Database`.

Every process (`kizuna serve --workers N`) builds its own; all state lives in the database, except
the rate-limit buckets (in a file the workers of one host share) and the short API-key cache.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from kizuna.api import problems
from kizuna.api.deps import KeyCache
from kizuna.api.observability import ObservabilityMiddleware, configure_logging
from kizuna.api.routers import (
    adjustments,
    batches,
    campaigns,
    docs,
    events,
    health,
    identity,
    members,
    purchases,
    ranks,
    webhooks,
)
from kizuna.clients.buckets import SharedTokenBuckets
from kizuna.clients.domain import TokenBuckets
from kizuna.console.router import install as install_console
from kizuna.core.settings import Settings, get_settings
from kizuna.db.database import Database

API_DESCRIPTION = """\
Kizuna's integration API for POS, EC sites, apps and LINE front ends.

* Authenticate with an API key: `Authorization: Bearer kz_…`.
* Every mutating call needs an `Idempotency-Key` header.
* Errors are RFC 9457 `application/problem+json`; `type` is a stable code.
"""


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """An application serving `/v1`, health, readiness, metrics and the OpenAPI docs."""
    settings = settings or get_settings()
    configure_logging(json_logs=settings.log_json)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's thread pool (40 threads by default): under load, dozens of
        # threads contending for one interpreter lock served fewer requests, later.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        # What start-up made (modules, mappers, compiled statements, the app) lives as long as
        # the process: out of the collector's sight, a full collection scans only what requests
        # made since. It scanned ~160,000 objects, ~55 ms with the interpreter lock held — every
        # request of the process waited, and that was the p99 at half load.
        gc.collect()
        gc.freeze()
        yield
        # Finish the commits under way; a fresh executor (no threads until used) serves the app
        # should it start again, as a test client's app does.
        app.state.commit_threads.shutdown(wait=True)
        app.state.commit_threads = _commit_threads(settings)

    app = FastAPI(
        lifespan=lifespan,
        title="Kizuna API",
        version="1",
        description=API_DESCRIPTION,
        docs_url=None,  # served by routers.docs from local assets
        openapi_url="/openapi.json",
        redoc_url=None,
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.database = database or Database(settings.database_url)
    app.state.key_cache = KeyCache()
    # The tills' commits run on threads of their own (`deps.on_commit_thread`), as many as the
    # thread pool has for every other route.
    app.state.commit_threads = _commit_threads(settings)
    app.state.rate_limits = (
        SharedTokenBuckets(settings.rate_limit_file) if settings.rate_limit_file else TokenBuckets()
    )
    problems.install(app)
    app.add_middleware(ObservabilityMiddleware)

    docs.install(app)
    # Routes are matched in order: the tills' purchase commits first, then the rest.
    app.include_router(purchases.router)
    app.include_router(health.router)
    app.include_router(members.router)
    app.include_router(identity.router)
    app.include_router(events.router)
    app.include_router(batches.router)
    app.include_router(adjustments.router)
    app.include_router(webhooks.router)
    app.include_router(campaigns.router)
    app.include_router(ranks.router)
    # Other areas mount their routers here, one line each.
    install_console(app)

    return app


def _commit_threads(settings: Settings) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="kizuna-commit")

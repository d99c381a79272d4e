"""Dependencies of the routes, as `Annotated` aliases.

`SessionDep` is a write transaction (`Database.write()`) that commits when the route returns and
before the response is sent, so an acknowledged change is durable; `ReadSessionDep` a read-only one.
`CurrentClient` authenticates the API key (`Authorization: Bearer kz_…`) and applies the client's
rate limit; `RequireScope("purchases:write")` also checks a scope. Those guard the POS and app
traffic. The admin routes (campaigns, ranks, adjustments, webhooks, batches, merges) use
`StaffOrScope(Permission.X, Scope.Y)` instead: an API key holding scope Y, exactly as before, or
a staff user's console session whose role holds permission X in the one permission table
(`security.domain.ROLE_PERMISSIONS`), with the CSRF token of the session in `X-CSRF-Token` on
unsafe methods; either way the route gets a `security.access.Caller`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kizuna.clients import service as clients
from kizuna.clients.domain import ClientIdentity, RateLimits, Scope, hash_key
from kizuna.clients.errors import ErrorCode
from kizuna.console.auth import SESSION_COOKIE, authorise
from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.security import access
from kizuna.security.access import Caller
from kizuna.security.domain import Permission
from kizuna.security.service import Staff

# An authenticated key is trusted for this long in a process; revocation and rotation through this
# process take effect at once, elsewhere within this time.
KEY_CACHE_SECONDS = 5.0


class ForbiddenError(KizunaError):
    status = 403


class RateLimitedError(KizunaError):
    status = 429


class KeyCache:
    """Authenticated identities by key hash, kept briefly so that a request costs no extra query."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ClientIdentity]] = {}

    def get(self, digest: str, now: float) -> ClientIdentity | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < now:
            return None
        return entry[1]

    def put(self, digest: str, identity: ClientIdentity, now: float) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (now + KEY_CACHE_SECONDS, identity)

    def forget_client(self, client_id: int) -> None:
        for digest, (_, identity) in list(self._entries.items()):
            if identity.id == client_id:
                self._entries.pop(digest, None)


# Dependencies that do not block are `async def`: FastAPI runs a sync one in the thread pool, and
# every hop there is a context switch that a loaded server pays for on each request.


T = TypeVar("T")


async def on_commit_thread(request: Request, work: Callable[[], T]) -> T:
    """Run `work` on the application's commit threads. A sync route goes through anyio's thread
    pool, whose bookkeeping per call (capacity limiter, cancel scope, context copy) cost the
    event loop about 5 % of its CPU on the tills' busiest route; a plain executor does not."""
    executor: Executor = request.app.state.commit_threads
    return await asyncio.get_running_loop().run_in_executor(executor, work)


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


def _write_session(database: DatabaseDep) -> Iterator[Session]:
    with database.write() as session:
        yield session


def _read_session(database: DatabaseDep) -> Iterator[Session]:
    with database.read() as session:
        yield session


# scope="function": the transaction ends when the route returns, before the response goes out.
SessionDep = Annotated[Session, Depends(_write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer kz_…`")


async def current_client(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ClientIdentity:
    """The authenticated API client, within its rate limit."""
    if credentials is None or not credentials.credentials:
        raise clients.UnauthenticatedError(ErrorCode.UNAUTHENTICATED, "an API key is required")
    key = credentials.credentials
    digest = hash_key(key)
    cache: KeyCache = request.app.state.key_cache
    now = time.monotonic()
    identity = cache.get(digest, now)
    if identity is None:
        identity = await run_in_threadpool(_authenticate, request.app.state.database, key)
        cache.put(digest, identity, now)
    buckets: RateLimits = request.app.state.rate_limits
    wait = buckets.retry_after(identity.id, identity.rate_per_minute, now)
    if wait > 0:
        raise RateLimitedError(
            ErrorCode.RATE_LIMITED,
            f"rate limit of {identity.rate_per_minute} requests per minute exceeded",
            retry_after=round(wait, 3),
        )
    request.scope.setdefault("state", {})["client_id"] = identity.id
    return identity


def _authenticate(database: Database, key: str) -> ClientIdentity:
    with database.read() as session:
        return clients.authenticate(session, key=key)


CurrentClient = Annotated[ClientIdentity, Depends(current_client)]


def _check_scope(client: ClientIdentity, scope: str) -> None:
    if scope not in client.scopes:
        raise ForbiddenError(
            ErrorCode.FORBIDDEN, f"this API key lacks the scope {scope}", scope=scope
        )


class RequireScope:
    """A dependency that passes the client on only if it holds `scope`."""

    def __init__(self, scope: Scope | str) -> None:
        self.scope = str(scope)

    # The client is authenticated here rather than through a `CurrentClient` sub-dependency: each
    # level FastAPI resolves costs the event loop on every call of the tills' routes.
    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ClientIdentity:
        client = await current_client(request, credentials)
        _check_scope(client, self.scope)
        return client


ProgramHeader = Annotated[
    int | None,
    Header(
        alias="Kizuna-Program",
        ge=1,
        description="Staff sessions only: the programme to act in when there are several "
        "(store staff and partner managers always act in their own; an API key in its client's).",
    ),
]


class StaffOrScope:
    """A dependency admitting an API key that holds `scope`, or a staff session whose role holds
    `permission` (403 `forbidden` otherwise, 403 `csrf_failed` for an unsafe call without the
    session's token, 401 when there is neither a key nor a session).

    A key, when sent, decides alone: integrations behave exactly as with `RequireScope`.
    """

    def __init__(self, permission: Permission, scope: Scope) -> None:
        self.permission = permission  # read by the route × role matrix test, as on console routes
        self.scope = str(scope)

    async def __call__(
        self,
        request: Request,
        database: DatabaseDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        program: ProgramHeader = None,
    ) -> Caller:
        if credentials is not None and credentials.credentials:
            client = await current_client(request, credentials)
            _check_scope(client, self.scope)
            return Caller.of_client(client)
        if not request.cookies.get(SESSION_COOKIE):
            raise clients.UnauthenticatedError(
                ErrorCode.UNAUTHENTICATED, "an API key or a staff session is required"
            )
        viewer = await authorise(request, self.permission)
        return await run_in_threadpool(_staff_caller, database, viewer.staff, program)


def _staff_caller(database: Database, staff: Staff, program: int | None) -> Caller:
    with database.read() as session:
        return access.staff_caller(session, staff=staff, program_id=program)


MembersReader = Annotated[ClientIdentity, Depends(RequireScope(Scope.MEMBERS_READ))]
MembersWriter = Annotated[ClientIdentity, Depends(RequireScope(Scope.MEMBERS_WRITE))]
PurchasesReader = Annotated[ClientIdentity, Depends(RequireScope(Scope.PURCHASES_READ))]
PurchasesWriter = Annotated[ClientIdentity, Depends(RequireScope(Scope.PURCHASES_WRITE))]
EventsWriter = Annotated[ClientIdentity, Depends(RequireScope(Scope.EVENTS_WRITE))]
BatchesWriter = Annotated[ClientIdentity, Depends(RequireScope(Scope.BATCHES_WRITE))]
QrIssuer = Annotated[ClientIdentity, Depends(RequireScope(Scope.QR_ISSUE))]


# Admin routes: an API key with the scope, or a staff session whose role holds the permission.
def _admin(permission: Permission, scope: Scope) -> Any:
    return Depends(StaffOrScope(permission, scope))


CampaignsReader = Annotated[Caller, _admin(Permission.CAMPAIGNS_READ, Scope.CAMPAIGNS_MANAGE)]
CampaignsWriter = Annotated[Caller, _admin(Permission.CAMPAIGNS_WRITE, Scope.CAMPAIGNS_MANAGE)]
# The programme's ranks are also shown in the member's app, which reads them with `members:read`.
RanksReader = Annotated[Caller, _admin(Permission.CAMPAIGNS_READ, Scope.MEMBERS_READ)]
AdjustmentRequester = Annotated[Caller, _admin(Permission.POINTS_ADJUST, Scope.POINTS_ADJUST)]
AdjustmentApprover = Annotated[Caller, _admin(Permission.POINTS_APPROVE, Scope.POINTS_ADJUST)]
WebhooksReader = Annotated[Caller, _admin(Permission.CLIENTS_READ, Scope.WEBHOOKS_MANAGE)]
WebhooksWriter = Annotated[Caller, _admin(Permission.CLIENTS_WRITE, Scope.WEBHOOKS_MANAGE)]
# Uploading a batch is the till's (`BatchesWriter`); its results are integration monitoring.
BatchesReader = Annotated[Caller, _admin(Permission.CLIENTS_READ, Scope.BATCHES_WRITE)]
MergeReader = Annotated[Caller, _admin(Permission.MEMBERS_MERGE, Scope.MEMBERS_READ)]
Merger = Annotated[Caller, _admin(Permission.MEMBERS_MERGE, Scope.MEMBERS_WRITE)]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="A unique key per logical operation; a retry with the same key and request "
        "returns the first response and does nothing again.",
    ),
]

"""Running a mutating route exactly once per `Idempotency-Key` (SPEC §4).

The route's work, the key and the response are written in the route's one write transaction by
`kizuna.db.idempotency.run_idempotent`; keys belong to the API client (or, on an admin route, to
the staff user calling through their session). A replayed response carries
`Idempotent-Replayed: true`. A business error is stored and replayed like a success; a request
refused by validation never reaches here, so its key stays unused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from kizuna.clients.domain import ClientIdentity
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.database import Database
from kizuna.db.idempotency import KeyUse, Outcome, run_idempotent, run_idempotent_write
from kizuna.privacy import crypto
from kizuna.security.access import Caller

from .observability import LEDGER_OPERATIONS
from .problems import from_error_dict


def _described(request: Request, body: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """What the request hash covers: method, path, body and query."""
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    described = {"method": request.method, "path": request.url.path, "body": payload}
    # The query (e.g. the client a staff user acts for) counts too; absent, hashes are as before.
    if request.url.query:
        described["query"] = request.url.query
    return described


def _response(outcome: Outcome, operation: str | None) -> JSONResponse:
    response = (
        from_error_dict(outcome.body)
        if outcome.status >= 400
        else JSONResponse(outcome.body, status_code=outcome.status)
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if operation is not None:
        result = "replayed" if outcome.replayed else str(outcome.body.get("code", "ok"))
        LEDGER_OPERATIONS.labels(operation, result if outcome.status >= 400 else "ok").inc()
    return response


def _dumped(model: tuple[int, BaseModel]) -> tuple[int, dict[str, Any]]:
    status, body = model
    return status, body.model_dump(mode="json")


def idempotent(
    session: Session,
    request: Request,
    client: ClientIdentity | Caller,
    key: str,
    body: BaseModel | dict[str, Any] | None,
    action: Callable[[], tuple[int, BaseModel]],
    operation: str | None = None,
    *,
    sealed: Sequence[str] = (),
) -> JSONResponse:
    """Run `action` once for (client, key) and `body` in the route's transaction; the response,
    live or replayed. `operation` names it in the ledger-operations metric. The response's
    `sealed` fields (a secret shown once) are stored encrypted for the replay, never in clear."""
    settings: Settings = request.app.state.settings
    outcome = run_idempotent(
        session,
        client=str(client.id),
        key=key,
        request=_described(request, body),
        action=lambda: _dumped(action()),
        as_of=utcnow(),
        keep_days=settings.idempotency_days,
        seal=partial(_seal, sealed),
        unseal=partial(_unseal, sealed),
    )
    return _response(outcome, operation)


_SEALED_FIELD = "idempotent_response"


def _seal(fields: Sequence[str], body: dict[str, Any]) -> dict[str, Any]:
    return body | {
        name: crypto.encrypt(body[name], field=_SEALED_FIELD) for name in fields if name in body
    }


def _unseal(fields: Sequence[str], body: dict[str, Any]) -> dict[str, Any]:
    return body | {
        name: crypto.decrypt(body[name], field=_SEALED_FIELD) for name in fields if name in body
    }


def idempotent_write(
    database: Database,
    request: Request,
    client: ClientIdentity | Caller,
    key: str,
    body: BaseModel,
    action: Callable[[Session, KeyUse], tuple[int, BaseModel]],
    operation: str,
) -> JSONResponse:
    """`idempotent` for a route that leaves the write transaction to it (the tills' commits): a
    success needs no savepoint; a refusal is stored in a transaction of its own. `action` gets the
    key (`db.idempotency.KeyUse`): `run_checks(session, key.checks)` looks it up alone."""
    settings: Settings = request.app.state.settings
    outcome = run_idempotent_write(
        database.write,
        client=str(client.id),
        key=key,
        request=_described(request, body),
        action=lambda session, key: _dumped(action(session, key)),
        as_of=utcnow(),
        keep_days=settings.idempotency_days,
    )
    return _response(outcome, operation)

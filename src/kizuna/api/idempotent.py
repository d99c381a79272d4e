"""Running a mutating route exactly once per `Idempotency-Key` (SPEC §4).

The route's work, the key and the response are written in the route's one write transaction by
`kizuna.db.idempotency.run_idempotent`; keys belong to the API client (or, on an admin route, to
the staff user calling through their session). A replayed response carries
`Idempotent-Replayed: true`. A business error is stored and replayed like a success; a request
refused by validation never reaches here, so its key stays unused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from kizuna.clients.domain import ClientIdentity
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.idempotency import run_idempotent
from kizuna.security.access import Caller

from .observability import LEDGER_OPERATIONS
from .problems import from_error_dict


def idempotent(
    session: Session,
    request: Request,
    client: ClientIdentity | Caller,
    key: str,
    body: BaseModel | dict[str, Any] | None,
    action: Callable[[], tuple[int, BaseModel]],
    operation: str | None = None,
) -> JSONResponse:
    """Run `action` once for (client, key) and `body`; the response, live or replayed.
    `operation` names it in the ledger-operations metric."""
    settings: Settings = request.app.state.settings
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    described = {"method": request.method, "path": request.url.path, "body": payload}
    # The query (e.g. the client a staff user acts for) counts too; absent, hashes are as before.
    if request.url.query:
        described["query"] = request.url.query

    def run() -> tuple[int, dict[str, Any]]:
        status, model = action()
        return status, model.model_dump(mode="json")

    outcome = run_idempotent(
        session,
        client=str(client.id),
        key=key,
        request=described,
        action=run,
        as_of=utcnow(),
        keep_days=settings.idempotency_days,
    )
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

"""`/v1/members/{id}/events`: visits, log-ins, app opens and custom events; recorded, and earning
whatever the campaigns covering them give."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kizuna.activity import service as activity
from kizuna.api.deps import DatabaseDep, EventsWriter, IdempotencyKey
from kizuna.api.idempotent import idempotent_write
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import EventCreate, EventRead, Id, breakdown_read
from kizuna.clients import access
from kizuna.core.clock import utcnow
from kizuna.db.idempotency import KeyUse
from kizuna.db.prepared import run_checks

router = APIRouter(prefix="/v1/members", tags=["events"], responses=ERROR_RESPONSES)


@router.post("/{member_id}/events", status_code=201, response_model=EventRead)
def record_event(
    member_id: Id,
    body: EventCreate,
    request: Request,
    client: EventsWriter,
    key: IdempotencyKey,
    database: DatabaseDep,
) -> JSONResponse:
    """Record what the member did (`visit`, `login`, `app_open`, `custom.<name>`)."""

    def action(session: Session, key: KeyUse) -> tuple[int, EventRead]:
        run_checks(session, key.checks)
        member = access.member(session, client, member_id)
        if body.store_id is not None:
            access.store(session, client, body.store_id)
        as_of = utcnow()
        recorded = activity.record_event(
            session,
            member=member,
            event_type=body.type,
            occurred_at=body.occurred_at or as_of,
            as_of=as_of,
            partner_id=client.partner_id,
            store_id=body.store_id if body.store_id is not None else client.store_id,
            channel=str(client.kind),
            attributes=body.attributes,
            actor=client.actor,
        )
        return 201, EventRead(
            member_id=recorded.member_id,
            type=recorded.event_type,
            occurred_at=recorded.occurred_at,
            earned=recorded.earned,
            breakdown=breakdown_read(recorded.breakdown),
        )

    return idempotent_write(database, request, client, key, body, action, "event")

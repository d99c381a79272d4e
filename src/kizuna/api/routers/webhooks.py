"""`/v1/webhooks`: a client's endpoints, its delivery log, and manual redelivery.

With an API key holding `webhooks:manage` these are the key's client's own. Through a staff session
(`clients:read` to read, `clients:write` to change) they are those of the client named by
`client_id` (partner managers: their partner's clients only), and changes are audited as in the
console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kizuna.api.deps import (
    IdempotencyKey,
    ReadSessionDep,
    SessionDep,
    WebhooksReader,
    WebhooksWriter,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import Id, Strict
from kizuna.core.clock import utcnow
from kizuna.core.errors import NotFound
from kizuna.security import access
from kizuna.webhooks import service as webhooks
from kizuna.webhooks.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)

ClientId = Annotated[
    int | None,
    Query(
        ge=1,
        description="Staff sessions: the API client whose webhooks these are (required). "
        "An API key always acts on its own client's.",
    ),
]


class EndpointCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=500, pattern=r"^https?://")]
    event_types: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=20
    )


class EndpointRead(BaseModel):
    id: int
    url: str
    event_types: list[str]
    created_at: datetime


class EndpointCreated(EndpointRead):
    secret: str = Field(description="Signs every delivery; shown only now.")


class AttemptRead(BaseModel):
    attempt_no: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryRead(BaseModel):
    id: int
    endpoint_id: int
    event_id: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    delivered_at: datetime | None


class DeliveryDetail(DeliveryRead):
    log: list[AttemptRead]


def _endpoint(endpoint: WebhookEndpoint) -> EndpointRead:
    return EndpointRead(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        created_at=endpoint.created_at,
    )


def _delivery(delivery: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status_code,
        delivered_at=delivery.delivered_at,
    )


@router.post("/endpoints", status_code=201, response_model=EndpointCreated)
def create_endpoint(
    body: EndpointCreate,
    request: Request,
    caller: WebhooksWriter,
    key: IdempotencyKey,
    session: SessionDep,
    client_id: ClientId = None,
) -> JSONResponse:
    """Register a URL for the given event types ("*" for all); the signing secret is shown once."""

    def action() -> tuple[int, EndpointCreated]:
        owner = access.api_client(session, caller, client_id)
        endpoint = webhooks.create_endpoint(
            session,
            client_id=owner,
            url=body.url,
            event_types=body.event_types,
            as_of=utcnow(),
        )
        access.record(
            session,
            caller,
            action="webhook.create",
            target=f"client:{owner}",
            details={"endpoint": endpoint.id, "events": body.event_types},
            as_of=utcnow(),
        )
        return 201, EndpointCreated(**_endpoint(endpoint).model_dump(), secret=endpoint.secret)

    return idempotent(
        session,
        request=request,
        client=caller,
        key=key,
        body=body,
        action=action,
        sealed=("secret",),
    )


@router.get("/endpoints", response_model=list[EndpointRead])
def list_endpoints(
    caller: WebhooksReader, session: ReadSessionDep, client_id: ClientId = None
) -> list[EndpointRead]:
    """The client's active endpoints."""
    owner = access.api_client(session, caller, client_id)
    return [_endpoint(e) for e in webhooks.list_endpoints(session, client_id=owner)]


@router.delete("/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(
    endpoint_id: Id,
    caller: WebhooksWriter,
    key: IdempotencyKey,
    session: SessionDep,
    client_id: ClientId = None,
) -> Response:
    """Stop sending to an endpoint (deleting twice is harmless)."""
    del key  # deleting is idempotent by nature; the key is still required like on every write
    owner = access.api_client(session, caller, client_id)
    try:
        webhooks.deactivate_endpoint(session, endpoint_id=endpoint_id, client_id=owner)
    except NotFound:
        pass  # already gone
    else:
        access.record(
            session,
            caller,
            action="webhook.deactivate",
            target=f"client:{owner}",
            details={"endpoint": endpoint_id},
            as_of=utcnow(),
        )
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[DeliveryRead])
def list_deliveries(
    caller: WebhooksReader,
    session: ReadSessionDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    client_id: ClientId = None,
) -> list[DeliveryRead]:
    """The client's deliveries, newest first (page with `before_id`)."""
    owner = access.api_client(session, caller, client_id)
    rows = webhooks.list_deliveries(
        session, client_id=owner, status=status, before_id=before_id, limit=limit
    )
    return [_delivery(row) for row in rows]


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(
    delivery_id: Id, caller: WebhooksReader, session: ReadSessionDep, client_id: ClientId = None
) -> DeliveryDetail:
    """A delivery with the log of its attempts."""
    owner = access.api_client(session, caller, client_id)
    delivery = webhooks.get_delivery(session, delivery_id=delivery_id, client_id=owner)
    log = [
        AttemptRead(
            attempt_no=a.attempt_no,
            attempted_at=a.attempted_at,
            status_code=a.status_code,
            error=a.error,
            duration_ms=a.duration_ms,
        )
        for a in webhooks.attempts_of(session, delivery_id=delivery.id)
    ]
    return DeliveryDetail(**_delivery(delivery).model_dump(), log=log)


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryRead)
def redeliver(
    delivery_id: Id,
    request: Request,
    caller: WebhooksWriter,
    key: IdempotencyKey,
    session: SessionDep,
    client_id: ClientId = None,
) -> JSONResponse:
    """Send a delivery again as soon as a worker can."""

    def action() -> tuple[int, DeliveryRead]:
        owner = access.api_client(session, caller, client_id)
        delivery = webhooks.redeliver(
            session, delivery_id=delivery_id, client_id=owner, as_of=utcnow()
        )
        access.record(
            session,
            caller,
            action="webhook.redeliver",
            target=f"client:{owner}",
            details={"delivery": delivery_id},
            as_of=utcnow(),
        )
        return 200, _delivery(delivery)

    return idempotent(session, request=request, client=caller, key=key, body=None, action=action)

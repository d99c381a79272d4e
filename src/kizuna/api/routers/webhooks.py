"""`/v1/webhooks`: a client's endpoints, its delivery log, and manual redelivery."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kizuna.api.deps import IdempotencyKey, ReadSessionDep, SessionDep, WebhooksManager
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import Id, Strict
from kizuna.core.clock import utcnow
from kizuna.core.errors import NotFound
from kizuna.webhooks import service as webhooks
from kizuna.webhooks.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


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
    client: WebhooksManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Register a URL for the given event types ("*" for all); the signing secret is shown once."""

    def action() -> tuple[int, EndpointCreated]:
        endpoint = webhooks.create_endpoint(
            session,
            client_id=client.id,
            url=body.url,
            event_types=body.event_types,
            as_of=utcnow(),
        )
        return 201, EndpointCreated(**_endpoint(endpoint).model_dump(), secret=endpoint.secret)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/endpoints", response_model=list[EndpointRead])
def list_endpoints(client: WebhooksManager, session: ReadSessionDep) -> list[EndpointRead]:
    """The client's active endpoints."""
    return [_endpoint(e) for e in webhooks.list_endpoints(session, client_id=client.id)]


@router.delete("/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(
    endpoint_id: Id, client: WebhooksManager, key: IdempotencyKey, session: SessionDep
) -> Response:
    """Stop sending to an endpoint (deleting twice is harmless)."""
    del key  # deleting is idempotent by nature; the key is still required like on every write
    with contextlib.suppress(NotFound):
        webhooks.deactivate_endpoint(session, endpoint_id=endpoint_id, client_id=client.id)
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[DeliveryRead])
def list_deliveries(
    client: WebhooksManager,
    session: ReadSessionDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryRead]:
    """The client's deliveries, newest first (page with `before_id`)."""
    rows = webhooks.list_deliveries(
        session, client_id=client.id, status=status, before_id=before_id, limit=limit
    )
    return [_delivery(row) for row in rows]


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(
    delivery_id: Id, client: WebhooksManager, session: ReadSessionDep
) -> DeliveryDetail:
    """A delivery with the log of its attempts."""
    delivery = webhooks.get_delivery(session, delivery_id=delivery_id, client_id=client.id)
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
    client: WebhooksManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Send a delivery again as soon as a worker can."""

    def action() -> tuple[int, DeliveryRead]:
        delivery = webhooks.redeliver(
            session, delivery_id=delivery_id, client_id=client.id, as_of=utcnow()
        )
        return 200, _delivery(delivery)

    return idempotent(session, request=request, client=client, key=key, body=None, action=action)

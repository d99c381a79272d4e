"""Use cases of webhooks: endpoints, fan-out of outbox events, claiming and settling deliveries.

Fan-out marks each outbox event once (`webhook_fanouts`) and creates a delivery for every active
endpoint that subscribed to its type and may see it: the endpoint's client is of the event's
partner, or is the operator of the event's programme. Claiming takes due deliveries with
`FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite serialises writers anyway) and leases them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kizuna.clients.models import ApiClient
from kizuna.core.errors import NotFound, Unprocessable
from kizuna.db.database import is_sqlite
from kizuna.members.models import Member
from kizuna.outbox.models import OutboxEvent
from kizuna.partners.models import Partner
from kizuna.webhooks.domain import ALL_EVENTS, EVENT_TYPES, MAX_ATTEMPTS, backoff, wants
from kizuna.webhooks.errors import ErrorCode
from kizuna.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookFanout
from kizuna.webhooks.secret_store import new_secret, reveal, seal


def create_endpoint(
    session: Session, *, client_id: int, url: str, event_types: list[str], as_of: datetime
) -> WebhookEndpoint:
    """Register a URL for a client's events; the signing secret is generated here."""
    if not url.startswith(("http://", "https://")):
        raise Unprocessable(ErrorCode.INVALID_URL, "the URL must be http:// or https://")
    unknown = sorted(set(event_types) - EVENT_TYPES - {ALL_EVENTS})
    if unknown or not event_types:
        raise Unprocessable(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"unknown event types: {', '.join(unknown) or '(none given)'}",
            known=sorted(EVENT_TYPES),
        )
    sealed, key_version = seal(new_secret())
    endpoint = WebhookEndpoint(
        client_id=client_id,
        url=url,
        secret_enc=sealed,
        key_version=key_version,
        event_types=sorted(set(event_types)),
        active=True,
        created_at=as_of,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def list_endpoints(session: Session, *, client_id: int) -> list[WebhookEndpoint]:
    """A client's active endpoints."""
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.client_id == client_id, WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.id)
        )
    )


def get_endpoint(session: Session, *, endpoint_id: int, client_id: int) -> WebhookEndpoint:
    """A client's endpoint, or `webhook_endpoint_not_found` (also for another client's)."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.client_id != client_id or not endpoint.active:
        raise NotFound(ErrorCode.ENDPOINT_NOT_FOUND, f"webhook endpoint {endpoint_id} not found")
    return endpoint


def deactivate_endpoint(session: Session, *, endpoint_id: int, client_id: int) -> None:
    """Stop sending to an endpoint (its delivery log stays)."""
    get_endpoint(session, endpoint_id=endpoint_id, client_id=client_id).active = False
    session.flush()


def _client_deliveries(client_id: int) -> Select[WebhookDelivery]:
    return (
        select(WebhookDelivery)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.client_id == client_id)
    )


def list_deliveries(
    session: Session,
    *,
    client_id: int,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """A client's deliveries, newest first."""
    query = _client_deliveries(client_id).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(session.scalars(query))


def get_delivery(session: Session, *, delivery_id: int, client_id: int) -> WebhookDelivery:
    """One of a client's deliveries, or `webhook_delivery_not_found`."""
    delivery = session.scalars(
        _client_deliveries(client_id).where(WebhookDelivery.id == delivery_id)
    ).one_or_none()
    if delivery is None:
        raise NotFound(ErrorCode.DELIVERY_NOT_FOUND, f"webhook delivery {delivery_id} not found")
    return delivery


def attempts_of(session: Session, *, delivery_id: int) -> list[WebhookAttempt]:
    """The attempt log of a delivery, oldest first."""
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
    )


def redeliver(
    session: Session, *, delivery_id: int, client_id: int, as_of: datetime
) -> WebhookDelivery:
    """Send a delivery again now, whatever its state (a delivered one is sent once more)."""
    delivery = get_delivery(session, delivery_id=delivery_id, client_id=client_id)
    delivery.status, delivery.next_attempt_at = "pending", as_of
    session.flush()
    return delivery


@dataclass(frozen=True)
class _Subscriber:
    endpoint_id: int
    partner_id: int
    program_id: int
    is_operator: bool
    event_types: list[str]

    def receives(self, event_type: str, partner_id: int | None, program_id: int | None) -> bool:
        if not wants(self.event_types, event_type):
            return False
        if partner_id is not None and partner_id == self.partner_id:
            return True
        return self.is_operator and program_id == self.program_id


def _subscribers(session: Session) -> list[_Subscriber]:
    rows = session.execute(
        select(
            WebhookEndpoint.id,
            Partner.id,
            Partner.program_id,
            Partner.is_operator,
            WebhookEndpoint.event_types,
        )
        .join(ApiClient, ApiClient.id == WebhookEndpoint.client_id)
        .join(Partner, Partner.id == ApiClient.partner_id)
        .where(WebhookEndpoint.active.is_(True), ApiClient.status == "active")
    )
    return [_Subscriber(*row) for row in rows]


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, spelled per engine."""
    if not rows:
        return
    insert = sqlite_insert if is_sqlite(session) else pg_insert
    session.execute(insert(table).on_conflict_do_nothing(), rows)


def fan_out(session: Session, *, as_of: datetime, after_id: int = 0, limit: int = 500) -> list[int]:
    """Turn up to `limit` new outbox events (ids above `after_id`) into deliveries; returns their
    ids in order."""
    events = session.execute(
        select(
            OutboxEvent.id, OutboxEvent.event_type, OutboxEvent.partner_id, OutboxEvent.member_id
        )
        .where(
            OutboxEvent.id > after_id,
            ~exists().where(WebhookFanout.event_id == OutboxEvent.id),
        )
        .order_by(OutboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not events:
        return []
    subscribers = _subscribers(session)
    programs = {
        row.id: row.program_id for row in session.execute(select(Partner.id, Partner.program_id))
    }
    # Events without a partner (expiry, merges) belong to their member's programme.
    orphans = {e.member_id for e in events if e.partner_id is None and e.member_id is not None}
    member_programs = (
        {
            row.id: row.program_id
            for row in session.execute(
                select(Member.id, Member.program_id).where(Member.id.in_(orphans))
            )
        }
        if orphans and subscribers
        else {}
    )
    deliveries: list[dict[str, Any]] = []
    for event in events:
        if event.partner_id is not None:
            program_id = programs.get(event.partner_id)
        else:
            program_id = member_programs.get(event.member_id)
        deliveries.extend(
            {
                "endpoint_id": subscriber.endpoint_id,
                "event_id": event.id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": as_of,
                "created_at": as_of,
            }
            for subscriber in subscribers
            if subscriber.receives(event.event_type, event.partner_id, program_id)
        )
    _insert_ignoring_duplicates(
        session, WebhookFanout, [{"event_id": e.id, "fanned_out_at": as_of} for e in events]
    )
    _insert_ignoring_duplicates(session, WebhookDelivery, deliveries)
    return [event.id for event in events]


@dataclass(frozen=True)
class Claim:
    """A leased delivery and everything needed to send it without the database."""

    delivery_id: int
    attempt_no: int
    url: str
    # The secret as stored (sealed, or clear from before encryption): decrypted per send, by
    # `signing_secret`, and kept out of any repr of a claim.
    secret_enc: str | None = field(repr=False)
    secret_legacy: str | None = field(repr=False)
    event_id: int
    event_type: str
    created_at: datetime
    payload: dict[str, Any]

    def signing_secret(self) -> str:
        """The endpoint's secret in clear, for signing this delivery."""
        return reveal(self.secret_enc, self.secret_legacy)


def claim_due(
    session: Session, *, as_of: datetime, lease: timedelta, limit: int = 20
) -> list[Claim]:
    """Lease up to `limit` due deliveries to this worker until `as_of + lease`."""
    due = session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= as_of)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return []
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due))
        .values(next_attempt_at=as_of + lease, attempts=WebhookDelivery.attempts + 1)
    )
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookEndpoint.url,
            WebhookEndpoint.secret_enc,
            WebhookEndpoint.secret_legacy,
            OutboxEvent.id,
            OutboxEvent.event_type,
            OutboxEvent.created_at,
            OutboxEvent.payload,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(due))
        .order_by(WebhookDelivery.id)
    )
    return [Claim(*row) for row in rows]


def settle(
    session: Session,
    *,
    claim: Claim,
    as_of: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
) -> str:
    """Log an attempt and move the delivery on: `delivered`, `pending` (retry later) or `failed`."""
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            attempt_no=claim.attempt_no,
            attempted_at=as_of,
            status_code=status_code,
            error=error[:500] if error else None,
            duration_ms=duration_ms,
        )
    )
    ok = status_code is not None and 200 <= status_code < 300
    if ok:
        values: dict[str, Any] = {"status": "delivered", "delivered_at": as_of}
    elif claim.attempt_no >= MAX_ATTEMPTS:
        values = {"status": "failed"}
    else:
        values = {"status": "pending", "next_attempt_at": as_of + backoff(claim.attempt_no)}
    values |= {"last_status_code": status_code, "last_error": error[:500] if error else None}
    # Only the holder of the current lease moves the state; a late report of an older attempt
    # (its lease ran out and another worker took over) is logged and otherwise ignored.
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claim.delivery_id,
            WebhookDelivery.attempts == claim.attempt_no,
            WebhookDelivery.status == "pending",
        )
        .values(**values)
    )
    session.flush()
    return str(values["status"])


def event_envelope(claim: Claim) -> dict[str, Any]:
    """The JSON body POSTed for a delivery."""
    return {
        "id": claim.event_id,
        "type": claim.event_type,
        "created_at": claim.created_at.isoformat(),
        "data": claim.payload,
    }

"""Publishing events to the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from kizuna.db.prepared import Call, Prepared, run_together
from kizuna.outbox.models import OutboxEvent

# Built once: every purchase publishes, and building the statement cost more than running it.
EVENT_COLUMNS = ("event_type", "payload", "partner_id", "member_id", "created_at")
_INSERT_EVENT = Prepared(insert(cast(Table, OutboxEvent.__table__)), EVENT_COLUMNS)


def publish(
    session: Session,
    *,
    event_type: str,
    payload: dict[str, Any],
    as_of: datetime,
    partner_id: int | None = None,
    member_id: int | None = None,
) -> None:
    """Record an event in the caller's transaction (e.g. `points.earned`)."""
    publish_all(
        session,
        [(event_type, payload)],
        as_of=as_of,
        partner_id=partner_id,
        member_id=member_id,
    )


def publish_all(
    session: Session,
    events: list[tuple[str, dict[str, Any]]],
    *,
    as_of: datetime,
    partner_id: int | None = None,
    member_id: int | None = None,
) -> None:
    """Record several (event type, payload) events of one member at once, in their order (the
    driver sends them in one round trip)."""
    calls = publish_calls(events, as_of=as_of, partner_id=partner_id, member_id=member_id)
    if calls:
        run_together(session, calls)


def publish_calls(
    events: list[tuple[str, dict[str, Any]]],
    *,
    as_of: datetime,
    partner_id: int | None = None,
    member_id: int | None = None,
) -> list[Call]:
    """`publish_all` as calls to run together with other statements (`db.prepared`)."""
    rows = [
        {
            "event_type": event_type,
            "payload": payload,
            "partner_id": partner_id,
            "member_id": member_id,
            "created_at": as_of,
        }
        for event_type, payload in events
    ]
    if not rows:
        return []
    if len(rows) == 1:
        return [Call(_INSERT_EVENT, rows[0])]
    return [Call(_INSERT_EVENT, rows, many=True)]

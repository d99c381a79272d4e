"""Recording a member event and posting what it earns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from kizuna.activity.models import MemberEvent
from kizuna.ledger import service as ledger
from kizuna.members.models import Member
from kizuna.outbox.service import publish
from kizuna.partners import service as partners
from kizuna.rules import service as rules
from kizuna.rules.domain import BreakdownRow, breakdown_total


@dataclass(frozen=True)
class RecordedEvent:
    event_id: int
    member_id: int
    event_type: str
    occurred_at: datetime
    earned: int
    breakdown: list[BreakdownRow]


def record_event(
    session: Session,
    *,
    member: Member,
    event_type: str,
    occurred_at: datetime,
    as_of: datetime,
    partner_id: int | None,
    store_id: int | None = None,
    channel: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> RecordedEvent:
    """Record what a member did and earn what the rules give for it (often nothing)."""
    policies = partners.policies(session, member.program_id)
    rows = rules.earn_for_event(
        session,
        policies=policies,
        member_id=member.id,
        event_type=event_type,
        occurred_at=occurred_at,
        store_id=store_id,
        channel=channel,
        attributes=attributes,
        reserve=True,
    )
    posted = ledger.earn(
        session,
        member_id=member.id,
        rows=rows,
        policy=policies.ledger,
        occurred_at=occurred_at,
        as_of=as_of,
        context=ledger.Context(
            actor=actor, partner_id=partner_id, store_id=store_id, channel=channel
        ),
    )
    event_id = session.scalar(
        insert(MemberEvent)
        .values(
            member_id=member.id,
            event_type=event_type,
            occurred_at=occurred_at,
            recorded_at=as_of,
            partner_id=partner_id,
            store_id=store_id,
            channel=channel,
            attributes=dict(attributes or {}),
            actor=actor,
            earn_entry_id=posted.entry_id if posted else None,
        )
        .returning(MemberEvent.id)
    )
    assert event_id is not None
    common = {"member_id": member.id, "event_type": event_type, "store_id": store_id}
    publish(
        session,
        event_type="event.recorded",
        payload={**common, "event_id": event_id, "occurred_at": occurred_at.isoformat()},
        as_of=as_of,
        partner_id=partner_id,
        member_id=member.id,
    )
    earned = breakdown_total(rows)
    if posted is not None:
        publish(
            session,
            event_type="points.earned",
            payload={
                **common,
                "points": earned,
                "breakdown": [row.to_dict() for row in rows],
            },
            as_of=as_of,
            partner_id=partner_id,
            member_id=member.id,
        )
    return RecordedEvent(event_id, member.id, event_type, occurred_at, earned, rows)

"""Withdrawal (退会) and deletion requests under APPI.

The member's points are forfeited by a journal entry (`forfeit`), the profile's ciphertexts are
deleted, every identifier is released (phone and e-mail can sign up again), cards are blocked with
their ciphertext erased (the blind index stays so that the till refuses the old card), marketing
consents are revoked at once. The member row stays, without personal data, so that the journal
and settlements remain complete under the pseudonymous member id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict
from kizuna.ledger import service as ledger
from kizuna.members import service
from kizuna.members.cards import BlockReason, CardStatus
from kizuna.members.domain import MemberStatus
from kizuna.members.errors import ErrorCode
from kizuna.members.identity import get_member
from kizuna.members.models import Card, MemberIdentifier
from kizuna.outbox.service import publish
from kizuna.security.audit import record as audit


@dataclass(frozen=True)
class Withdrawal:
    """What a withdrawal did."""

    member_id: int
    forfeited_points: int
    forfeit_entry_id: int | None
    identifiers_released: int
    cards_blocked: int


def withdraw(
    session: Session, *, member_id: int, actor: str, as_of: datetime, reason: str | None = None
) -> Withdrawal:
    """Withdraw a member: forfeit points, erase personal data, release identifiers."""
    member = get_member(session, member_id)
    if member.status in (MemberStatus.WITHDRAWN, MemberStatus.MERGED):
        raise Conflict(
            ErrorCode.ALREADY_WITHDRAWN,
            f"member {member_id} is {member.status}",
            member_status=member.status,
        )
    posted = ledger.forfeit(
        session,
        member_id=member_id,
        as_of=as_of,
        context=ledger.Context(actor=actor, reason_code="withdrawal", reason=reason),
    )
    released = session.execute(
        delete(MemberIdentifier).where(MemberIdentifier.member_id == member_id)
    )
    blocked = session.execute(
        update(Card)
        .where(Card.member_id == member_id, Card.status != CardStatus.BLOCKED)
        .values(status=CardStatus.BLOCKED, block_reason=BlockReason.WITHDRAWN, blocked_at=as_of)
    )
    session.execute(
        update(Card).where(Card.member_id == member_id).values(number_enc=None, key_version=None)
    )
    service.erase_profile(session, member_id=member_id)
    for channel, state in service.consents_of(session, member_id).items():
        if state.granted:
            service.set_consent(
                session,
                member_id=member_id,
                channel=channel,
                granted=False,
                source="withdrawal",
                as_of=as_of,
            )
    member.status = MemberStatus.WITHDRAWN
    member.withdrawn_at = as_of
    session.flush()
    result = Withdrawal(
        member_id=member_id,
        forfeited_points=-posted.amount if posted else 0,
        forfeit_entry_id=posted.entry_id if posted else None,
        identifiers_released=int(getattr(released, "rowcount", 0) or 0),
        cards_blocked=int(getattr(blocked, "rowcount", 0) or 0),
    )
    publish(
        session,
        event_type="member.withdrawn",
        payload={"member_id": member_id},
        member_id=member_id,
        as_of=as_of,
    )
    audit(
        session,
        actor=actor,
        action="member.withdraw",
        target=f"member:{member_id}",
        details={
            "forfeited_points": result.forfeited_points,
            "identifiers_released": result.identifiers_released,
            "cards_blocked": result.cards_blocked,
        },
        as_of=as_of,
    )
    return result

"""Use cases of members: sign-up and lookup by identifier.

Just enough for the ledger for now; normalisation, encryption, cards, merge and withdrawal build
on these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound
from kizuna.ledger import service as ledger
from kizuna.members.errors import ErrorCode
from kizuna.members.models import Member, MemberIdentifier


def create_member(
    session: Session,
    *,
    program_id: int,
    joined_at: datetime,
    identifiers: Mapping[str, str] | None = None,
    join_store_id: int | None = None,
    join_channel: str | None = None,
) -> Member:
    """A new active member with their identifiers and an empty point account."""
    member = Member(
        program_id=program_id,
        status="active",
        joined_at=joined_at,
        join_store_id=join_store_id,
        join_channel=join_channel,
    )
    session.add(member)
    session.flush()
    for kind, value in (identifiers or {}).items():
        add_identifier(session, member_id=member.id, kind=kind, value=value, as_of=joined_at)
    ledger.open_account(session, member_id=member.id, as_of=joined_at)
    return member


def add_identifier(
    session: Session, *, member_id: int, kind: str, value: str, as_of: datetime
) -> MemberIdentifier:
    """Attach identifier (kind, value) to a member; `identifier_taken` if another has it."""
    identifier = MemberIdentifier(member_id=member_id, type=kind, value=value, created_at=as_of)
    try:
        with session.begin_nested():
            session.add(identifier)
    except IntegrityError as taken:
        raise Conflict(ErrorCode.IDENTIFIER_TAKEN, f"{kind} identifier already in use") from taken
    return identifier


def find_by_identifier(session: Session, *, kind: str, value: str) -> Member:
    """The member an identifier belongs to, or `member_not_found`."""
    member = session.scalars(
        select(Member)
        .join(MemberIdentifier, MemberIdentifier.member_id == Member.id)
        .where(MemberIdentifier.type == kind, MemberIdentifier.value == value)
    ).one_or_none()
    if member is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, "no member with this identifier")
    return member


def get_member(session: Session, member_id: int) -> Member:
    """Member `member_id`, or `member_not_found`."""
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
    return member

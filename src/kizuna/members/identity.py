"""How an identifier is stored: personal kinds as a blind index plus ciphertext, others as given.

Writing and looking up go through `stored_value`, so a phone written ０９０-… at sign-up and
+81 90 … at the till meet on the same index.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound
from kizuna.members.domain import PERSONAL_KINDS, MemberStatus, normalise_identifier
from kizuna.members.errors import ErrorCode
from kizuna.members.models import Member, MemberIdentifier
from kizuna.privacy import crypto
from kizuna.privacy.keys import keyring

IDENTIFIER_FIELD = "member_identifiers.value"


def stored_value(kind: str, normalised: str) -> str:
    """The `value` column of an identifier: the blind index for personal kinds."""
    return crypto.blind_index(kind, normalised) if kind in PERSONAL_KINDS else normalised


def lookup_value(kind: str, raw: str) -> str:
    """What a lookup of `raw` compares with: normalised the way it was stored."""
    return stored_value(kind, normalise_identifier(kind, raw))


def insert_identifier(
    session: Session, *, member_id: int, kind: str, normalised: str, as_of: datetime
) -> MemberIdentifier:
    """Attach an already normalised identifier; `identifier_taken` if another member has it."""
    personal = kind in PERSONAL_KINDS
    ring = keyring()
    identifier = MemberIdentifier(
        member_id=member_id,
        type=kind,
        value=stored_value(kind, normalised),
        value_enc=crypto.encrypt(normalised, field=IDENTIFIER_FIELD, ring=ring)
        if personal
        else None,
        key_version=ring.current if personal else None,
        created_at=as_of,
    )
    try:
        with session.begin_nested():
            session.add(identifier)
    except IntegrityError as taken:
        raise Conflict(ErrorCode.IDENTIFIER_TAKEN, f"{kind} identifier already in use") from taken
    return identifier


def display_value(identifier: MemberIdentifier) -> str:
    """The identifier's plain value (decrypted for personal kinds)."""
    if identifier.value_enc is None:
        return identifier.value
    return crypto.decrypt(identifier.value_enc, field=IDENTIFIER_FIELD)


def get_member(session: Session, member_id: int) -> Member:
    """Member `member_id`, or `member_not_found`."""
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
    return member


def survivor_of(session: Session, member: Member) -> Member:
    """The member that now stands for `member`: itself, or the survivor of its merges."""
    seen = {member.id}
    while member.status == MemberStatus.MERGED and member.merged_into_id is not None:
        member = get_member(session, member.merged_into_id)
        if member.id in seen:  # a cycle would be a bug; stop rather than loop forever
            break
        seen.add(member.id)
    return member


def require_active(member: Member) -> None:
    """Refuse changes to a member that is merged, withdrawn or suspended."""
    if member.status != MemberStatus.ACTIVE:
        raise Conflict(
            ErrorCode.MEMBER_NOT_ACTIVE,
            f"member {member.id} is {member.status}",
            member_status=member.status,
        )


_MEMBER_LINK = select(Member.status, Member.merged_into_id).where(Member.id == bindparam("id"))


def survivor_id(
    connection: Connection, member_id: int, status: str, merged_into: int | None
) -> int:
    """`survivor_of` on the lean read path: the id that stands for member `member_id` (whose
    status and `merged_into_id` the caller has read), following merges with one prebuilt
    statement per step."""
    seen = {member_id}
    while status == MemberStatus.MERGED and merged_into is not None:
        row = connection.execute(_MEMBER_LINK, {"id": merged_into}).first()
        if row is None:
            raise NotFound(ErrorCode.MEMBER_NOT_FOUND, f"member {merged_into} not found")
        member_id, (status, merged_into) = merged_into, row
        if member_id in seen:  # a cycle would be a bug; stop rather than loop forever
            break
        seen.add(member_id)
    return member_id

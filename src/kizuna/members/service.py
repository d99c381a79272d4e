"""Use cases of members: sign-up, profile, identifiers, lookup, consents.

Sign-up needs only a programme; every profile field is optional. Personal fields are normalised
(`domain`), then encrypted field by field, with blind indexes for the values that are looked up
or matched. A lookup normalises its input the same way, so any common writing finds the member;
a merged member's identifiers were moved to the survivor, so old identifiers reach the survivor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, select
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound
from kizuna.db.base import Base
from kizuna.ledger import service as ledger
from kizuna.members import cards
from kizuna.members.domain import (
    PERSONAL_KINDS,
    PROFILE_FIELDS,
    ConsentChannel,
    IdentifierKind,
    MemberStatus,
    Profile,
    invalid,
    mask,
    normalise_identifier,
    normalise_kana,
    normalise_profile,
)
from kizuna.members.errors import ErrorCode
from kizuna.members.identity import (
    IDENTIFIER_FIELD,
    display_value,
    get_member,
    insert_identifier,
    lookup_value,
    require_active,
    survivor_id,
    survivor_of,
)
from kizuna.members.models import Card, Consent, Member, MemberIdentifier, MemberProfile
from kizuna.privacy import crypto
from kizuna.privacy.keys import Keyring, keyring
from kizuna.privacy.rotation import EncryptedTable

PROFILE_TABLE = "member_profiles"


def create_member(
    session: Session,
    *,
    program_id: int,
    joined_at: datetime,
    identifiers: Mapping[str, str] | None = None,
    join_store_id: int | None = None,
    join_channel: str | None = None,
    profile: Profile | None = None,
    consents: Mapping[str, bool] | None = None,
    consent_source: str = "signup",
) -> Member:
    """A new active member with their identifiers, profile, consents and an empty point account.

    A phone or e-mail given as an identifier is also the profile's contact unless one is given.
    """
    member = Member(
        program_id=program_id,
        status=MemberStatus.ACTIVE,
        joined_at=joined_at,
        join_store_id=join_store_id,
        join_channel=join_channel,
    )
    session.add(member)
    session.flush()
    for kind, value in (identifiers or {}).items():
        add_identifier(session, member_id=member.id, kind=kind, value=value, as_of=joined_at)
    contact = profile or Profile()
    given = dict(identifiers or {})
    if contact.phone is None and IdentifierKind.PHONE in given:
        contact = replace(contact, phone=given[IdentifierKind.PHONE])
    if contact.email is None and IdentifierKind.EMAIL in given:
        contact = replace(contact, email=given[IdentifierKind.EMAIL])
    if contact != Profile():
        write_profile(session, member.id, normalise_profile(contact), as_of=joined_at)
    for channel, granted in (consents or {}).items():
        set_consent(
            session,
            member_id=member.id,
            channel=channel,
            granted=granted,
            source=consent_source,
            as_of=joined_at,
        )
    ledger.open_account(session, member_id=member.id, as_of=joined_at)
    return member


def add_identifier(
    session: Session, *, member_id: int, kind: str, value: str, as_of: datetime
) -> MemberIdentifier:
    """Attach identifier (kind, value) to a member; `identifier_taken` if another has it.

    A card number is registered as a card too (an existing card from another system: active).
    """
    require_active(get_member(session, member_id))
    if kind == IdentifierKind.CARD:
        card = cards.register_card(session, member_id=member_id, number=value, as_of=as_of)
        return session.scalars(
            select(MemberIdentifier).where(
                MemberIdentifier.type == IdentifierKind.CARD,
                MemberIdentifier.value == card.number_index,
            )
        ).one()
    normalised = normalise_identifier(kind, value)
    return insert_identifier(
        session, member_id=member_id, kind=kind, normalised=normalised, as_of=as_of
    )


def remove_identifier(session: Session, *, member_id: int, identifier_id: int) -> None:
    """Detach one identifier from a member (its value becomes free for others)."""
    identifier = session.get(MemberIdentifier, identifier_id)
    if identifier is None or identifier.member_id != member_id:
        raise NotFound(ErrorCode.IDENTIFIER_NOT_FOUND, f"identifier {identifier_id} not found")
    if identifier.type == IdentifierKind.CARD:
        raise Conflict(ErrorCode.INVALID_IDENTIFIER, "a card is blocked, not removed")
    session.delete(identifier)
    session.flush()


# Built once: building this select cost more than running it (measured per lookup).
_MEMBER_BY_IDENTIFIER = (
    select(Member)
    .join(MemberIdentifier, MemberIdentifier.member_id == Member.id)
    .where(MemberIdentifier.type == bindparam("kind"), MemberIdentifier.value == bindparam("value"))
)
_MEMBER_ID_BY_IDENTIFIER = (
    select(Member.id, Member.status, Member.merged_into_id)
    .join(MemberIdentifier, MemberIdentifier.member_id == Member.id)
    .where(MemberIdentifier.type == bindparam("kind"), MemberIdentifier.value == bindparam("value"))
)


def find_by_identifier(session: Session, *, kind: str, value: str) -> Member:
    """The member an identifier belongs to, or `member_not_found`; cards must be usable."""
    if kind == IdentifierKind.CARD:
        return cards.resolve_card(session, value).member
    member = session.scalars(
        _MEMBER_BY_IDENTIFIER, {"kind": kind, "value": lookup_value(kind, value)}
    ).one_or_none()
    if member is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, "no member with this identifier")
    return survivor_of(session, member)


def member_id_by_identifier(connection: Connection, *, kind: str, value: str) -> int:
    """`find_by_identifier` on the lean read path: only the member's id (the survivor after
    merges), from one prebuilt Core statement on a connection — no session, no ORM objects.
    For callers that need nothing else of the member (a till resolving who is paying)."""
    if kind == IdentifierKind.CARD:
        return cards.card_member_id(connection, value)
    row = connection.execute(
        _MEMBER_ID_BY_IDENTIFIER, {"kind": kind, "value": lookup_value(kind, value)}
    ).first()
    if row is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, "no member with this identifier")
    return survivor_id(connection, *row)


def history_member_ids(session: Session, member_id: int) -> list[int]:
    """The member and every member merged into it (transitively): whose journal it shows."""
    ids = [member_id]
    frontier = [member_id]
    while frontier:
        merged = list(session.scalars(select(Member.id).where(Member.merged_into_id.in_(frontier))))
        ids.extend(merged)
        frontier = merged
    return ids


@dataclass(frozen=True)
class IdentifierView:
    """An identifier as staff and the API see it: personal values masked."""

    id: int
    type: str
    masked: str
    created_at: datetime


def identifiers_of(session: Session, member_id: int) -> list[IdentifierView]:
    """The member's identifiers, personal values masked."""
    rows = session.scalars(
        select(MemberIdentifier)
        .where(MemberIdentifier.member_id == member_id)
        .order_by(MemberIdentifier.id)
    )
    return [
        IdentifierView(
            id=row.id,
            type=row.type,
            masked=mask(row.type, display_value(row)) if row.type in PERSONAL_KINDS else row.value,
            created_at=row.created_at,
        )
        for row in rows
    ]


# Profile ------------------------------------------------------------------------------------


def profile_field(name: str) -> str:
    """The field name a profile value is encrypted for (its associated data)."""
    return f"{PROFILE_TABLE}.{name}"


def profile_columns(profile: Profile, ring: Keyring) -> dict[str, Any]:
    """The encrypted columns and blind indexes of a normalised profile, under the current key."""
    columns: dict[str, Any] = {
        f"{name}_enc": crypto.encrypt_optional(value, field=profile_field(name), ring=ring)
        for name, value in profile.fields().items()
    }
    columns["key_version"] = ring.current

    def index(kind: str, value: str | None) -> str | None:
        return crypto.blind_index(kind, value, ring=ring) if value else None

    columns["kana_index"] = index(
        "kana", normalise_kana(profile.name_kana) if profile.name_kana else None
    )
    columns["birth_index"] = index(
        "birth", profile.birth_date.isoformat() if profile.birth_date else None
    )
    columns["postal_index"] = index("postal", profile.postal_code)
    columns["phone_index"] = index(IdentifierKind.PHONE, profile.phone)
    columns["email_index"] = index(IdentifierKind.EMAIL, profile.email)
    return columns


def write_profile(session: Session, member_id: int, profile: Profile, *, as_of: datetime) -> None:
    """Store a normalised profile, every field under the current key."""
    columns = profile_columns(profile, keyring())
    row = session.get(MemberProfile, member_id)
    if row is None:
        session.add(MemberProfile(member_id=member_id, updated_at=as_of, **columns))
    else:
        for name, value in columns.items():
            setattr(row, name, value)
        row.updated_at = as_of
    session.flush()


def profile_of_row(row: MemberProfile | None, ring: Keyring | None = None) -> Profile:
    """The decrypted profile of a stored row (empty when there is none)."""
    if row is None:
        return Profile()
    plain = {
        name: crypto.decrypt_optional(
            getattr(row, f"{name}_enc"), field=profile_field(name), ring=ring
        )
        for name in Profile().fields()
    }
    birth = plain.pop("birth_date")
    return Profile(**plain, birth_date=date.fromisoformat(birth) if birth else None)


def get_profile(session: Session, member_id: int) -> Profile:
    """The member's profile, decrypted."""
    get_member(session, member_id)
    return profile_of_row(session.get(MemberProfile, member_id))


def update_profile(
    session: Session, *, member_id: int, changes: Mapping[str, Any], as_of: datetime
) -> Profile:
    """Change some profile fields (None clears one); returns the normalised profile."""
    require_active(get_member(session, member_id))
    unknown = set(changes) - set(Profile().fields())
    if unknown:
        raise invalid(sorted(unknown)[0], "not a profile field")
    merged = replace(get_profile(session, member_id), **dict(changes))
    normalised = normalise_profile(merged)
    write_profile(session, member_id, normalised, as_of=as_of)
    return normalised


def erase_profile(session: Session, *, member_id: int) -> None:
    """Delete the member's personal data irreversibly (the ciphertexts go, not just the keys)."""
    session.execute(delete(MemberProfile).where(MemberProfile.member_id == member_id))


# Consents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    """The consent in force for one channel."""

    channel: str
    granted: bool
    source: str | None
    recorded_at: datetime | None


def set_consent(
    session: Session,
    *,
    member_id: int,
    channel: str,
    granted: bool,
    source: str,
    as_of: datetime,
) -> ConsentState:
    """Record a consent decision; it is in force at once (the latest decision wins)."""
    if channel not in set(ConsentChannel):
        raise invalid("channel", "unknown consent channel")
    session.add(
        Consent(
            member_id=member_id, channel=channel, granted=granted, source=source, recorded_at=as_of
        )
    )
    session.flush()
    return ConsentState(channel, granted, source, as_of)


def consent_history(session: Session, member_id: int) -> list[Consent]:
    """Every consent decision of the member, oldest first."""
    return list(
        session.scalars(select(Consent).where(Consent.member_id == member_id).order_by(Consent.id))
    )


def consents_of(session: Session, member_id: int) -> dict[str, ConsentState]:
    """The consent in force per channel (not granted when never asked)."""
    states = {
        str(channel): ConsentState(str(channel), False, None, None) for channel in ConsentChannel
    }
    for row in consent_history(session, member_id):
        states[row.channel] = ConsentState(row.channel, row.granted, row.source, row.recorded_at)
    return states


def has_consent(session: Session, *, member_id: int, channel: str) -> bool:
    """True when the member's latest decision for `channel` grants it."""
    granted = session.scalar(
        select(Consent.granted)
        .where(Consent.member_id == member_id, Consent.channel == channel)
        .order_by(Consent.id.desc())
        .limit(1)
    )
    return bool(granted)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)  # declarative models are always mapped to a Table


def encrypted_tables() -> list[EncryptedTable]:
    """Every table of this area holding ciphertexts, for key rotation."""
    profile_fields = {f"{name}_enc": profile_field(name) for name in PROFILE_FIELDS}
    return [
        EncryptedTable(_table(MemberProfile), "member_id", "key_version", profile_fields),
        EncryptedTable(
            _table(MemberIdentifier), "id", "key_version", {"value_enc": IDENTIFIER_FIELD}
        ),
        EncryptedTable(_table(Card), "id", "key_version", {"number_enc": cards.CARD_FIELD}),
    ]

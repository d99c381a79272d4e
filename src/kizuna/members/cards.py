"""Membership cards: issue, activate, block (lost / stolen), reissue, and the till's card check.

A card only points at its member: the balance is the member's, so a reissue (new number, old one
blocked) moves nothing and is one step. Numbers of the programme's own series are its prefix, a
serial and a Luhn check digit; cards from an older system keep their numbers. A card number is
personal data: stored as a blind index (lookups, uniqueness), a ciphertext and its last 4 digits.
A blocked card keeps its index so that the till can say *blocked*, not *unknown*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, KizunaError, NotFound
from kizuna.members.domain import (
    IdentifierKind,
    card_number,
    mask,
    normalise_card_number,
    validate_programme_card,
)
from kizuna.members.errors import ErrorCode
from kizuna.members.identity import (
    IDENTIFIER_FIELD,
    get_member,
    insert_identifier,
    require_active,
    stored_value,
    survivor_id,
    survivor_of,
)
from kizuna.members.models import Card, CardSeries, Member
from kizuna.privacy import crypto
from kizuna.privacy.keys import Keyring, keyring

CARD_FIELD = "cards.number"


class CardStatus(StrEnum):
    ISSUED = "issued"  # printed and handed over, not yet usable
    ACTIVE = "active"
    BLOCKED = "blocked"


class BlockReason(StrEnum):
    LOST = "lost"
    STOLEN = "stolen"
    DAMAGED = "damaged"
    REISSUED = "reissued"
    WITHDRAWN = "withdrawn"


class CardOrigin(StrEnum):
    ISSUED = "issued"
    LEGACY = "legacy"


def default_prefix(program_id: int) -> str:
    """The card prefix a programme gets unless it chooses one: 98 and its id in four digits."""
    return f"98{program_id % 10_000:04d}"


def series_prefix(session: Session, program_id: int) -> str:
    """The programme's card prefix, without creating its series (read-only callers)."""
    series = session.get(CardSeries, program_id)
    return series.prefix if series is not None else default_prefix(program_id)


def ensure_series(session: Session, *, program_id: int, prefix: str | None = None) -> CardSeries:
    """The programme's card series, created with `prefix` (or the default) the first time."""
    series = session.get(CardSeries, program_id)
    if series is None:
        series = CardSeries(
            program_id=program_id, prefix=prefix or default_prefix(program_id), next_serial=1
        )
        session.add(series)
        session.flush()
    return series


def _next_number(session: Session, program_id: int) -> str:
    series = ensure_series(session, program_id=program_id)
    # A conditional UPDATE … RETURNING takes the row lock on PostgreSQL: no serial is given twice.
    serial = session.scalar(
        update(CardSeries)
        .where(CardSeries.program_id == program_id)
        .values(next_serial=CardSeries.next_serial + 1)
        .returning(CardSeries.next_serial - 1)
    )
    assert serial is not None
    return card_number(series.prefix, serial)


def card_rows(
    *,
    member_id: int,
    program_id: int,
    number: str,
    status: CardStatus,
    origin: CardOrigin,
    as_of: datetime,
    ring: Keyring,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identifier row and the card row of a normalised card number (for bulk inserts too)."""
    index = stored_value(IdentifierKind.CARD, number)
    identifier = {
        "member_id": member_id,
        "type": str(IdentifierKind.CARD),
        "value": index,
        "value_enc": crypto.encrypt(number, field=IDENTIFIER_FIELD, ring=ring),
        "key_version": ring.current,
        "created_at": as_of,
    }
    card = {
        "program_id": program_id,
        "member_id": member_id,
        "number_index": index,
        "number_enc": crypto.encrypt(number, field=CARD_FIELD, ring=ring),
        "key_version": ring.current,
        "last4": number[-4:],
        "status": str(status),
        "origin": str(origin),
        "issued_at": as_of,
        "activated_at": as_of if status is CardStatus.ACTIVE else None,
    }
    return identifier, card


def _store_card(
    session: Session,
    member: Member,
    number: str,
    *,
    status: CardStatus,
    origin: CardOrigin,
    as_of: datetime,
) -> Card:
    insert_identifier(
        session, member_id=member.id, kind=IdentifierKind.CARD, normalised=number, as_of=as_of
    )
    _, row = card_rows(
        member_id=member.id,
        program_id=member.program_id,
        number=number,
        status=status,
        origin=origin,
        as_of=as_of,
        ring=keyring(),
    )
    card = Card(**row)
    session.add(card)
    session.flush()
    return card


def issue_card(
    session: Session, *, member_id: int, as_of: datetime, activate: bool = True
) -> tuple[Card, str]:
    """A new card of the programme's series for the member; returns it and its number."""
    member = get_member(session, member_id)
    require_active(member)
    number = _next_number(session, member.program_id)
    status = CardStatus.ACTIVE if activate else CardStatus.ISSUED
    card = _store_card(
        session, member, number, status=status, origin=CardOrigin.ISSUED, as_of=as_of
    )
    return card, number


def register_card(
    session: Session,
    *,
    member_id: int,
    number: str,
    as_of: datetime,
    origin: CardOrigin = CardOrigin.LEGACY,
) -> Card:
    """Register an existing card number (another system's, or pre-printed) as an active card."""
    member = get_member(session, member_id)
    require_active(member)
    normalised = normalise_card_number(number)
    validate_programme_card(normalised, ensure_series(session, program_id=member.program_id).prefix)
    return _store_card(
        session, member, normalised, status=CardStatus.ACTIVE, origin=origin, as_of=as_of
    )


def get_card(session: Session, card_id: int, *, member_id: int | None = None) -> Card:
    """Card `card_id` (of `member_id` when given), or `card_not_found`."""
    card = session.get(Card, card_id)
    if card is None or (member_id is not None and card.member_id != member_id):
        raise NotFound(ErrorCode.CARD_NOT_FOUND, f"card {card_id} not found")
    return card


def activate_card(session: Session, *, card_id: int, as_of: datetime) -> Card:
    """Make an issued card usable."""
    card = get_card(session, card_id)
    if card.status == CardStatus.ACTIVE:
        raise Conflict(ErrorCode.CARD_ALREADY_ACTIVE, f"card {card_id} is already active")
    if card.status == CardStatus.BLOCKED:
        raise _blocked(card.block_reason, card.replaced_by_id is not None)
    card.status = CardStatus.ACTIVE
    card.activated_at = as_of
    session.flush()
    return card


def block_card(session: Session, *, card_id: int, reason: str, as_of: datetime) -> Card:
    """Stop a card for good (lost, stolen, damaged…); blocking twice keeps the first reason."""
    card = get_card(session, card_id)
    if card.status != CardStatus.BLOCKED:
        card.status = CardStatus.BLOCKED
        card.block_reason = str(BlockReason(reason))
        card.blocked_at = as_of
        session.flush()
    return card


def reissue_card(
    session: Session, *, card_id: int, as_of: datetime, reason: str = BlockReason.LOST
) -> tuple[Card, str]:
    """A new active card for the same member and the old one blocked, in one step."""
    old = get_card(session, card_id)
    block_card(session, card_id=card_id, reason=reason, as_of=as_of)
    new, number = issue_card(session, member_id=old.member_id, as_of=as_of)
    old.replaced_by_id = new.id
    session.flush()
    return new, number


@dataclass(frozen=True)
class ResolvedCard:
    """A usable card and the member it stands for (the survivor, after a merge)."""

    card: Card
    member: Member


def _blocked(block_reason: str | None, replaced: bool) -> KizunaError:
    return KizunaError(
        ErrorCode.CARD_BLOCKED,
        "this card is blocked and cannot be used; ask for the member's current card",
        status=409,
        block_reason=block_reason,
        replaced=replaced,
    )


def _check_usable(status: str, block_reason: str | None, replaced: bool) -> None:
    if status == CardStatus.BLOCKED:
        raise _blocked(block_reason, replaced)
    if status != CardStatus.ACTIVE:
        raise KizunaError(
            ErrorCode.CARD_NOT_ACTIVE, "this card has not been activated yet", status=409
        )


def _card_index(number: str) -> str:
    return stored_value(IdentifierKind.CARD, normalise_card_number(number))


# Built once: building a statement costs more than running it (and a till looks up every sale).
_CARD_BY_INDEX = select(Card).where(Card.number_index == bindparam("index"))
_CARD_HOLDER = (
    select(
        Card.status,
        Card.block_reason,
        Card.replaced_by_id,
        Member.id,
        Member.status,
        Member.merged_into_id,
    )
    .join(Member, Member.id == Card.member_id)
    .where(Card.number_index == bindparam("index"))
)


def resolve_card(session: Session, number: str) -> ResolvedCard:
    """The card a till presents and its member; `card_blocked` / `card_not_active` refuse it."""
    card = session.scalars(_CARD_BY_INDEX, {"index": _card_index(number)}).one_or_none()
    if card is None:
        raise NotFound(ErrorCode.CARD_NOT_FOUND, "no card with this number")
    _check_usable(card.status, card.block_reason, card.replaced_by_id is not None)
    return ResolvedCard(card, survivor_of(session, get_member(session, card.member_id)))


def card_member_id(connection: Connection, number: str) -> int:
    """`resolve_card` on the lean read path: the id of the member (the survivor after merges) a
    usable card stands for, from one prebuilt Core statement, with the same refusals."""
    row = connection.execute(_CARD_HOLDER, {"index": _card_index(number)}).first()
    if row is None:
        raise NotFound(ErrorCode.CARD_NOT_FOUND, "no card with this number")
    status, block_reason, replaced_by, member_id, member_status, merged_into = row
    _check_usable(status, block_reason, replaced_by is not None)
    return survivor_id(connection, member_id, member_status, merged_into)


@dataclass(frozen=True)
class CardView:
    """A card as staff see it: masked number, status, dates."""

    id: int
    member_id: int
    masked_number: str
    status: str
    origin: str
    issued_at: datetime
    activated_at: datetime | None
    blocked_at: datetime | None
    block_reason: str | None
    replaced_by_id: int | None


def view(card: Card) -> CardView:
    """The staff view of a card."""
    return CardView(
        id=card.id,
        member_id=card.member_id,
        masked_number=mask(IdentifierKind.CARD, "0" * 12 + card.last4),
        status=card.status,
        origin=card.origin,
        issued_at=card.issued_at,
        activated_at=card.activated_at,
        blocked_at=card.blocked_at,
        block_reason=card.block_reason,
        replaced_by_id=card.replaced_by_id,
    )


def cards_of(session: Session, member_id: int) -> list[Card]:
    """The member's cards, oldest first."""
    return list(session.scalars(select(Card).where(Card.member_id == member_id).order_by(Card.id)))

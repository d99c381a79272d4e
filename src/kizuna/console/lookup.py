"""Finding members from the console, and deciding whether a staff user may see them.

Staff type whatever the customer shows or says: a card number, a phone number written any way
(全角 too), an e-mail, a name in カナ or かな, or a member number. `guess_kind` reads which it is;
the lookups normalise exactly as the members area stores values, so any writing matches. Unlike
the till, staff must also find a member by a *blocked* card (that is how a lost card is handled).
Store staff see only members of their store, partner managers only those of their partner
(`security.access.in_scope`); anyone else is reported as not found.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.members import service as members
from kizuna.members.domain import IdentifierKind, normalise_card_number, normalise_kana
from kizuna.members.identity import stored_value, survivor_of
from kizuna.members.models import Card, Member, MemberProfile
from kizuna.privacy import crypto


class QueryKind(StrEnum):
    AUTO = "auto"
    CARD = "card"
    PHONE = "phone"
    EMAIL = "email"
    KANA = "kana"
    MEMBER_ID = "member_id"


_SEPARATORS = re.compile(r"[\s\-‐−–()]")


def guess_kind(text: str) -> QueryKind:
    """What a search box entry most likely is (after NFKC, so 全角 digits count as digits)."""
    value = unicodedata.normalize("NFKC", text).strip()
    if "@" in value:
        return QueryKind.EMAIL
    compact = _SEPARATORS.sub("", value)
    if compact.startswith("#") and compact[1:].isdigit():
        return QueryKind.MEMBER_ID
    if compact.startswith("+") and compact[1:].isdigit():
        return QueryKind.PHONE
    if compact.isdigit():
        if compact.startswith("0") and len(compact) in (10, 11):
            return QueryKind.PHONE
        if len(compact) >= 12:
            return QueryKind.CARD
        return QueryKind.MEMBER_ID
    return QueryKind.KANA


def find_members(session: Session, *, text: str, kind: QueryKind = QueryKind.AUTO) -> list[Member]:
    """The members a search matches (survivors of merges), best first; empty when none."""
    if kind is QueryKind.AUTO:
        kind = guess_kind(text)
    try:
        if kind is QueryKind.MEMBER_ID:
            digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).lstrip("#")
            member = session.get(Member, int(digits)) if digits.isdigit() else None
            return [survivor_of(session, member)] if member else []
        if kind is QueryKind.CARD:
            return _by_card(session, text)
        if kind is QueryKind.KANA:
            return _by_kana(session, text)
        return [members.find_by_identifier(session, kind=str(kind), value=text)]
    except KizunaError:
        # An unparsable phone number or e-mail simply matches nobody.
        return []


def _by_card(session: Session, text: str) -> list[Member]:
    number = normalise_card_number(text)
    card = session.scalars(
        select(Card).where(Card.number_index == stored_value(IdentifierKind.CARD, number))
    ).one_or_none()
    if card is None:
        return []
    member = session.get(Member, card.member_id)
    return [survivor_of(session, member)] if member else []


def _by_kana(session: Session, text: str) -> list[Member]:
    reading = normalise_kana(text)
    if not reading:
        return []
    digest = crypto.blind_index("kana", reading)
    return list(
        session.scalars(
            select(Member)
            .join(MemberProfile, MemberProfile.member_id == Member.id)
            .where(MemberProfile.kana_index == digest)
            .order_by(Member.id)
            .limit(50)
        )
    )

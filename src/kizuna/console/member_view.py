"""Everything the member page shows, from the members, ledger, partners and tiers services.

Personal data is masked unless the viewer's role holds `members:pii`; the page view itself is
audited by the caller (who saw whose data, masked or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.ledger import service as ledger
from kizuna.ledger.domain import Balance, LotState
from kizuna.ledger.models import JournalEntry
from kizuna.members import cards
from kizuna.members import service as members
from kizuna.members.cards import CardView
from kizuna.members.domain import Profile
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.partners.models import Store
from kizuna.security.domain import mask_email, mask_phone, mask_text
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Progress

HISTORY_ROWS = 50


def profile_fields(profile: Profile, *, unmasked: bool) -> list[tuple[str, str]]:
    """(message key, shown value) for each profile field, masked unless `unmasked`."""
    birth = profile.birth_date.isoformat() if profile.birth_date else ""
    postal = profile.postal_code or ""
    if unmasked:
        shown = {
            "name_kanji": profile.name_kanji or "",
            "name_kana": profile.name_kana or "",
            "birth_date": birth,
            "gender": profile.gender or "",
            "postal_code": postal,
            "address": profile.address or "",
            "phone": profile.phone or "",
            "email": profile.email or "",
        }
    else:
        shown = {
            "name_kanji": mask_text(profile.name_kanji),
            "name_kana": mask_text(profile.name_kana),
            # The birth month is what a store uses (birthday offers); the day and year are not.
            "birth_date": f"＊＊＊＊-{birth[5:7]}-＊＊" if birth else "",
            "gender": "＊" if profile.gender else "",
            "postal_code": postal[:3] + "-＊＊＊＊" if postal else "",
            "address": mask_text(profile.address, keep=3),
            "phone": mask_phone(profile.phone),
            "email": mask_email(profile.email),
        }
    return [(f"profile.{name}", value) for name, value in shown.items()]


@dataclass(frozen=True)
class MemberPage:
    member: Member
    join_store: Store | None
    profile: list[tuple[str, str]]
    balance: Balance
    point_value_yen: int
    lots: list[LotState]
    entries: list[JournalEntry]
    cards: list[CardView]
    identifiers: list[members.IdentifierView]
    rank: Progress | None


def member_page(session: Session, *, member: Member, unmasked: bool, as_of: datetime) -> MemberPage:
    """The member page's data at `as_of`."""
    policies = partners.policies(session, member.program_id)
    ids = members.history_member_ids(session, member.id)
    entries = list(
        session.scalars(
            select(JournalEntry)
            .where(JournalEntry.member_id.in_(ids))
            .order_by(JournalEntry.id.desc())
            .limit(HISTORY_ROWS)
        )
    )
    lots = sorted(
        (lot for lot in ledger.open_lots(session, member.id) if not lot.is_expired(as_of)),
        key=lambda lot: (lot.expires_at is None, lot.expires_at or as_of, lot.id),
    )
    return MemberPage(
        member=member,
        join_store=session.get(Store, member.join_store_id) if member.join_store_id else None,
        profile=profile_fields(members.get_profile(session, member.id), unmasked=unmasked),
        balance=ledger.balance(session, member_id=member.id, policy=policies.ledger, as_of=as_of),
        point_value_yen=policies.point_value_yen,
        lots=lots,
        entries=entries,
        cards=[cards.view(card) for card in cards.cards_of(session, member.id)],
        identifiers=members.identifiers_of(session, member.id),
        rank=tiers.progress(session, member_id=member.id, as_of=as_of),
    )

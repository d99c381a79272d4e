"""Use cases of earning: what a purchase or an event earns, as a breakdown of one row per rule.

`earn_for_purchase` is the one function every path calls — quote, commit, partial return, offline
batch and simulation — so that they all agree: the base row, the rank bonus of the rank in force at
`occurred_at`, and a row per campaign whose version was in force then. With `reserve=True` the
campaign points are taken from budgets and caps under row locks (the member's account first, then
campaigns by id: one order, no deadlocks) and recorded as grants keyed by the purchase; a later
call for the same `purchase_id` (a return) recomputes them with the purchase's own grants counted
as free, and moves the counters by the difference. `earn_for_event` does the same for visits,
logins, sign-ups, birthdays and custom events, where once-per-period limits are grant keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, literal, or_, select
from sqlalchemy.orm import Session

from kizuna.ledger.models import Lot
from kizuna.members import service as members
from kizuna.members.chains import merged_into
from kizuna.members.models import Member
from kizuna.partners.models import Store
from kizuna.partners.service import ProgramPolicies
from kizuna.rules import budgets
from kizuna.rules.book import CampaignBook
from kizuna.rules.campaigns import CampaignDefinition, CampaignRule
from kizuna.rules.domain import BreakdownRow, PurchaseLine, base_earn
from kizuna.rules.facts import (
    HISTORY_FIELDS,
    LOT_FIELDS,
    Facts,
    HeldLot,
    MemberFacts,
    PastPurchase,
    event_facts,
)
from kizuna.rules.models import Campaign, CampaignVersion
from kizuna.rules.sql import PROFILE_FIELDS, purchases
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import TierSpec


@dataclass(frozen=True)
class PurchaseFacts:
    """A purchase as the rules see it; `occurred_at` picks the rules in force."""

    member_id: int
    lines: Sequence[PurchaseLine]
    points_used: int
    occurred_at: datetime
    partner_id: int
    store_id: int
    channel: str
    # Set when re-evaluating a committed purchase (a return), so that its own use of caps and
    # budgets is not counted against it.
    purchase_id: int | None = None


# Versions in force never change (an edit opens a new version), so what they parse into is kept
# per process, keyed by id and stored text (ids alone could repeat across databases).
_RULES: dict[tuple[int, str], CampaignRule] = {}
_BOOKS: dict[tuple[tuple[int, str], ...], CampaignBook] = {}
_CACHE_LIMIT = 4096


def campaigns_in_force(session: Session, *, program_id: int, at: datetime) -> CampaignBook:
    """The campaign versions of a programme in force at `at` (window and version both)."""
    rows = session.execute(
        select(
            Campaign.id,
            Campaign.code,
            CampaignVersion.id,
            cast(CampaignVersion.definition, Text),
        )
        .join(CampaignVersion, CampaignVersion.campaign_id == Campaign.id)
        .where(
            Campaign.program_id == program_id,
            CampaignVersion.effective_from <= at,
            or_(CampaignVersion.effective_to.is_(None), CampaignVersion.effective_to > at),
            CampaignVersion.starts_at <= at,
            CampaignVersion.ends_at > at,
        )
        .order_by(Campaign.id)
    ).all()
    key = tuple((version_id, stored) for _, _, version_id, stored in rows)
    book = _BOOKS.get(key)
    if book is None:
        if len(_BOOKS) > _CACHE_LIMIT or len(_RULES) > _CACHE_LIMIT:
            _BOOKS.clear()
            _RULES.clear()
        rules = []
        for campaign_id, code, version_id, stored in rows:
            rule = _RULES.get((version_id, stored))
            if rule is None:
                definition = CampaignDefinition.from_dict(json.loads(stored))
                rule = _RULES[(version_id, stored)] = CampaignRule(
                    campaign_id, version_id, code, definition
                )
            rules.append(rule)
        book = _BOOKS[key] = CampaignBook(rules)
    return book


def _member_facts(
    session: Session,
    *,
    member_id: int,
    fields: frozenset[str],
    at: datetime,
    rank: TierSpec | None,
) -> MemberFacts:
    """The member as the conditions in play need them: history and lots only when asked for."""
    member = session.get(Member, member_id)
    assert member is not None
    past: list[PastPurchase] = []
    if fields & HISTORY_FIELDS:
        # Receipts stay under the buyer's id after a merge: the history is everyone's merged in.
        rows = session.execute(
            select(
                purchases.c.occurred_at,
                purchases.c.total_amount,
                purchases.c.refunded_amount,
                purchases.c.channel,
                purchases.c.store_id,
                purchases.c.lines,
            ).where(
                purchases.c.member_id.in_(merged_into(literal(member_id))),
                purchases.c.occurred_at < at,
            )
        )
        past = [
            PastPurchase(
                occurred_at=row.occurred_at,
                amount=row.total_amount,
                refunded=row.refunded_amount,
                channel=row.channel,
                store=row.store_id,
                categories=frozenset(
                    line["category"] for line in row.lines if line.get("category")
                ),
            )
            for row in rows
        ]
    lots: list[HeldLot] = []
    if fields & LOT_FIELDS:
        lots = [
            HeldLot(row.remaining, row.available_at, row.expires_at)
            for row in session.execute(
                select(Lot.remaining, Lot.available_at, Lot.expires_at).where(
                    Lot.member_id == member_id, Lot.remaining > 0
                )
            )
        ]
    profile = members.get_profile(session, member_id) if fields & PROFILE_FIELDS else None
    return MemberFacts(
        member_id=member_id,
        joined_at=member.joined_at,
        rank=rank.code if rank else None,
        birth_date=profile.birth_date if profile else None,
        gender=profile.gender if profile else None,
        postal_code=profile.postal_code if profile else None,
        join_channel=member.join_channel,
        join_store=member.join_store_id,
        purchases=past,
        lots=lots,
    )


def earn_for_purchase(
    session: Session,
    *,
    policies: ProgramPolicies,
    purchase: PurchaseFacts,
    reserve: bool,
    book: CampaignBook | None = None,
    ranked: bool = True,
) -> list[BreakdownRow]:
    """The breakdown a purchase earns. `reserve` consumes campaign budgets and caps (commit,
    return); quotes and simulations pass False and write nothing. `book` replaces the campaigns
    in force (a simulation's draft); `ranked=False` says the programme has no ranks (no look-up)."""
    at = purchase.occurred_at
    points_used_yen = purchase.points_used * policies.point_value_yen
    base = base_earn(purchase.lines, points_used_yen, policies.earn)
    rows = [base] if base.points else []
    rank = _rank(session, policies.program_id, purchase.member_id, at) if ranked else None
    if rank is not None and (bonus := rank.bonus(base.points)):
        rows.append(BreakdownRow(rule="rank", label=f"ランク特典 ({rank.name})", points=bonus))
    book = book or campaigns_in_force(session, program_id=policies.program_id, at=at)
    if not book.rules:
        # A purchase holds grants only from versions in force at its `occurred_at`: none here.
        return rows
    tz = policies.ledger.tz
    facts = Facts(
        as_of=at,
        tz=tz,
        event=event_facts(
            event_type="purchase",
            occurred_at=at,
            tz=tz,
            channel=purchase.channel,
            store=purchase.store_id,
            partner=purchase.partner_id,
            amount=sum(line.amount for line in purchase.lines),
            lines=purchase.lines,
        ),
        member=_member_facts(
            session,
            member_id=purchase.member_id,
            fields=book.fields_for("purchase"),
            at=at,
            rank=rank,
        ),
    )
    candidates = book.candidates(
        facts,
        lines=purchase.lines,
        points_used_yen=points_used_yen,
        policy=policies.earn,
        base_points=base.points,
    )
    awards = budgets.settle(
        session,
        candidates,
        member_id=purchase.member_id,
        purchase_id=purchase.purchase_id,
        reserve=reserve,
        facts=facts,
    )
    return rows + [award.rule.row(award.points, at) for award in awards]


def earn_for_event(
    session: Session,
    *,
    policies: ProgramPolicies,
    member_id: int,
    event_type: str,
    occurred_at: datetime,
    store_id: int | None,
    channel: str | None,
    attributes: Mapping[str, Any] | None = None,
    reserve: bool = True,
    book: CampaignBook | None = None,
) -> list[BreakdownRow]:
    """What an event earns (visit, login, app_open, signup, birthday, custom types): a row per
    campaign covering it, plus the rank's birthday bonus on `birthday`. `reserve` records the
    grants, which is what makes "once per store per day" hold; pass False to preview."""
    partner_id = (
        session.scalar(select(Store.partner_id).where(Store.id == store_id)) if store_id else None
    )
    rank = _rank(session, policies.program_id, member_id, occurred_at)
    book = book or campaigns_in_force(session, program_id=policies.program_id, at=occurred_at)
    tz = policies.ledger.tz
    facts = Facts(
        as_of=occurred_at,
        tz=tz,
        event=event_facts(
            event_type=event_type,
            occurred_at=occurred_at,
            tz=tz,
            channel=channel,
            store=store_id,
            partner=partner_id,
            attributes=attributes,
        ),
        member=_member_facts(
            session,
            member_id=member_id,
            fields=book.fields_for(event_type),
            at=occurred_at,
            rank=rank,
        ),
    )
    candidates = book.candidates(facts, policy=policies.earn)
    awards = budgets.settle(
        session, candidates, member_id=member_id, purchase_id=None, reserve=reserve, facts=facts
    )
    rows = [award.rule.row(award.points, occurred_at) for award in awards]
    if event_type == "birthday" and rank is not None and rank.birthday_points:
        label = f"誕生日特典 ({rank.name})"
        rows.insert(0, BreakdownRow(rule="rank_birthday", label=label, points=rank.birthday_points))
    return rows


def _rank(session: Session, program_id: int, member_id: int, at: datetime) -> TierSpec | None:
    ranks = tiers.rules_of(session, program_id)
    return tiers.rank_at(session, member_id=member_id, at=at, rules=ranks) if ranks else None


def release_purchase(session: Session, *, purchase_id: int, as_of: datetime) -> None:
    """Give back everything a purchase took from budgets and caps (a full return or cancel)."""
    own = budgets.own_grants(session, purchase_id)
    if not own:
        return
    member_id = next(iter(own.values())).member_id
    budgets.record(
        session, [], member_id=member_id, purchase_id=purchase_id, own=own, keys={}, as_of=as_of
    )

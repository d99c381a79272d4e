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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, Text, and_, cast, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kizuna.ledger.models import Lot, PointAccount
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.partners.models import Store
from kizuna.partners.service import ProgramPolicies
from kizuna.rules.campaigns import (
    Award,
    CampaignBook,
    CampaignDefinition,
    CampaignRule,
    choose_awards,
)
from kizuna.rules.conditions import (
    HISTORY_FIELDS,
    LOT_FIELDS,
    Facts,
    HeldLot,
    MemberFacts,
    PastPurchase,
    event_facts,
)
from kizuna.rules.domain import BreakdownRow, PurchaseLine, base_earn
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage, CampaignVersion
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
        rows = session.execute(
            select(
                purchases.c.occurred_at,
                purchases.c.total_amount,
                purchases.c.refunded_amount,
                purchases.c.channel,
                purchases.c.store_id,
                purchases.c.lines,
            ).where(purchases.c.member_id == member_id, purchases.c.occurred_at < at)
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
) -> list[BreakdownRow]:
    """The breakdown a purchase earns. `reserve` consumes campaign budgets and caps (commit,
    return); quotes and simulations pass False and write nothing. `book` replaces the campaigns
    in force (a simulation's draft)."""
    at = purchase.occurred_at
    points_used_yen = purchase.points_used * policies.point_value_yen
    base = base_earn(purchase.lines, points_used_yen, policies.earn)
    rows = [base] if base.points else []
    rank = _rank(session, policies.program_id, purchase.member_id, at)
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
    awards = _settle(
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
    awards = _settle(
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


# --- budgets, caps and grants --------------------------------------------------------------------


def lock_member(session: Session, member_id: int) -> None:
    """Take the member's write lock — the same first lock the ledger takes — so that the order is
    always member → campaigns → caps (on SQLite the writer lock already serialises)."""
    session.execute(
        select(PointAccount.member_id).where(PointAccount.member_id == member_id).with_for_update()
    )


def _insert_ignoring_duplicates(session: Session, table: Table) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING: both engines have it, through their own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _settle(
    session: Session,
    candidates: Sequence[Award],
    *,
    member_id: int,
    purchase_id: int | None,
    reserve: bool,
    facts: Facts,
) -> list[Award]:
    """Drop awards already had this period, limit the rest by caps and budgets, choose, and
    (when reserving) record the grants."""
    store = facts.event.store if facts.event else None
    keys = {a.rule.campaign_id: a.rule.period_key(facts.local_date, store) for a in candidates}
    taken = _periods_taken(session, member_id=member_id, purchase_id=purchase_id, keys=keys)
    candidates = [
        a for a in candidates if (a.rule.campaign_id, keys[a.rule.campaign_id]) not in taken
    ]
    own = _own_grants(session, purchase_id)
    if reserve and (purchase_id is not None or any(a.rule.limited for a in candidates)):
        lock_member(session, member_id)
    room = _room(session, candidates, member_id=member_id, own=own, lock=reserve)
    awards = choose_awards(candidates, room)
    if reserve:
        awards = _record(
            session,
            awards,
            member_id=member_id,
            purchase_id=purchase_id,
            own=own,
            keys=keys,
            as_of=facts.as_of,
        )
    return awards


def _periods_taken(
    session: Session, *, member_id: int, purchase_id: int | None, keys: Mapping[int, str | None]
) -> set[tuple[int, str | None]]:
    wanted = [(cid, key) for cid, key in keys.items() if key is not None]
    if not wanted:
        return set()
    query = select(CampaignGrant.campaign_id, CampaignGrant.period_key).where(
        CampaignGrant.member_id == member_id,
        or_(
            *(
                and_(CampaignGrant.campaign_id == cid, CampaignGrant.period_key == key)
                for cid, key in wanted
            )
        ),
    )
    if purchase_id is not None:
        query = query.where(
            or_(CampaignGrant.purchase_id.is_(None), CampaignGrant.purchase_id != purchase_id)
        )
    return {(row.campaign_id, row.period_key) for row in session.execute(query)}


@dataclass(frozen=True)
class _Grant:
    id: int
    campaign_id: int
    points: int
    budgeted: bool
    capped: bool


def _own_grants(session: Session, purchase_id: int | None) -> dict[int, _Grant]:
    """The grants a committed purchase already holds, and whether they count against limits."""
    if purchase_id is None:
        return {}
    rows = session.execute(
        select(
            CampaignGrant.id,
            CampaignGrant.campaign_id,
            CampaignGrant.points,
            CampaignVersion.definition,
        )
        .join(CampaignVersion, CampaignVersion.id == CampaignGrant.version_id)
        .where(CampaignGrant.purchase_id == purchase_id)
    )
    return {
        row.campaign_id: _Grant(
            id=row.id,
            campaign_id=row.campaign_id,
            points=row.points,
            budgeted=row.definition.get("budget") is not None,
            capped=row.definition.get("per_member_cap") is not None,
        )
        for row in rows
    }


def _room(
    session: Session,
    candidates: Iterable[Award],
    *,
    member_id: int,
    own: Mapping[int, _Grant],
    lock: bool,
) -> dict[int, int | None]:
    """What each limited campaign may still grant this member (its own grants count as free)."""
    limited = {a.rule.campaign_id: a.rule.definition for a in candidates if a.rule.limited}
    if not limited:
        return {}
    ids = sorted(limited)
    budget_query = (
        select(Campaign.id, Campaign.budget_used).where(Campaign.id.in_(ids)).order_by(Campaign.id)
    )
    used = {
        cid: n
        for cid, n in session.execute(budget_query.with_for_update() if lock else budget_query)
    }
    capped = [cid for cid in ids if limited[cid].per_member_cap is not None]
    usage: dict[int, int] = {}
    if capped:
        if lock:
            session.execute(
                _insert_ignoring_duplicates(session, CampaignMemberUsage.__table__),  # type: ignore[arg-type]
                [{"campaign_id": cid, "member_id": member_id, "points": 0} for cid in capped],
            )
        usage_query = (
            select(CampaignMemberUsage.campaign_id, CampaignMemberUsage.points)
            .where(
                CampaignMemberUsage.member_id == member_id,
                CampaignMemberUsage.campaign_id.in_(capped),
            )
            .order_by(CampaignMemberUsage.campaign_id)
        )
        usage = {
            cid: n
            for cid, n in session.execute(usage_query.with_for_update() if lock else usage_query)
        }
    room: dict[int, int | None] = {}
    for cid in ids:
        d = limited[cid]
        mine = own[cid].points if cid in own else 0
        left: int | None = None
        if d.budget is not None:
            left = d.budget - used.get(cid, 0) + (mine if cid in own and own[cid].budgeted else 0)
        if d.per_member_cap is not None:
            cap_left = (
                d.per_member_cap
                - usage.get(cid, 0)
                + (mine if cid in own and own[cid].capped else 0)
            )
            left = cap_left if left is None else min(left, cap_left)
        room[cid] = None if left is None else max(left, 0)
    return room


def _record(
    session: Session,
    awards: Sequence[Award],
    *,
    member_id: int,
    purchase_id: int | None,
    own: Mapping[int, _Grant],
    keys: Mapping[int, str | None],
    as_of: datetime,
) -> list[Award]:
    """Write the grants and move the counters by the change; returns the awards that stood (a
    concurrent earn of the same period wins over this one)."""
    kept: list[Award] = []
    chosen = {award.rule.campaign_id: award for award in awards}
    for cid in sorted(set(chosen) | set(own)):
        award, before = chosen.get(cid), own.get(cid)
        points = award.points if award else 0
        if before is not None:
            if points != before.points:
                session.execute(
                    update(CampaignGrant)
                    .where(CampaignGrant.id == before.id)
                    .values(points=points, updated_at=as_of)
                )
            delta_budget = points - before.points if before.budgeted else 0
            delta_cap = points - before.points if before.capped else 0
        else:
            assert award is not None
            inserted = session.execute(
                _insert_ignoring_duplicates(session, CampaignGrant.__table__)  # type: ignore[arg-type]
                .values(
                    campaign_id=cid,
                    version_id=award.rule.version_id,
                    member_id=member_id,
                    purchase_id=purchase_id,
                    period_key=keys.get(cid),
                    points=points,
                    created_at=as_of,
                    updated_at=as_of,
                )
                .returning(CampaignGrant.id)
            ).scalar()
            if inserted is None:
                continue
            delta_budget = points if award.rule.definition.budget is not None else 0
            delta_cap = points if award.rule.definition.per_member_cap is not None else 0
        if delta_budget:
            session.execute(
                update(Campaign)
                .where(Campaign.id == cid)
                .values(budget_used=Campaign.budget_used + delta_budget)
            )
        if delta_cap:
            session.execute(
                update(CampaignMemberUsage)
                .where(
                    CampaignMemberUsage.campaign_id == cid,
                    CampaignMemberUsage.member_id == member_id,
                )
                .values(points=CampaignMemberUsage.points + delta_cap)
            )
        if award is not None:
            kept.append(award)
    return kept


def release_purchase(session: Session, *, purchase_id: int, as_of: datetime) -> None:
    """Give back everything a purchase took from budgets and caps (a full return or cancel)."""
    own = _own_grants(session, purchase_id)
    if not own:
        return
    member_id = session.scalar(
        select(CampaignGrant.member_id).where(CampaignGrant.purchase_id == purchase_id).limit(1)
    )
    assert member_id is not None
    _record(
        session, [], member_id=member_id, purchase_id=purchase_id, own=own, keys={}, as_of=as_of
    )

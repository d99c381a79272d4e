"""Budgets, caps and grants: what campaigns may still give, taken under row locks.

A campaign's total budget is a counter on its row (`budget_used`), a member's cap a counter on
`campaign_member_usage`; a reservation locks the member's account first, then the campaigns by id,
then the caps — one order, so concurrent earns queue instead of deadlocking — reads what is left,
and moves the counters by what it grants. Every grant is recorded (`campaign_grants`) by purchase,
or by event period for once-per-period earns, so that a return recomputes a purchase's grants with
its own counted as free and releases the difference, and "once per store per day" is a unique key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Insert, Select, Table, and_, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kizuna.ledger.models import PointAccount
from kizuna.members.chains import merged_into
from kizuna.rules.campaigns import Award, choose_awards
from kizuna.rules.facts import Facts
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage, CampaignVersion


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


def settle(
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
    taken = periods_taken(session, member_id=member_id, purchase_id=purchase_id, keys=keys)
    candidates = [
        a for a in candidates if (a.rule.campaign_id, keys[a.rule.campaign_id]) not in taken
    ]
    own = own_grants(session, purchase_id)
    if reserve and (own or any(a.rule.limited for a in candidates)):
        lock_member(session, member_id)
    room = room_left(session, candidates, member_id=member_id, own=own, lock=reserve)
    awards = choose_awards(candidates, room)
    if reserve:
        awards = record(
            session,
            awards,
            member_id=member_id,
            purchase_id=purchase_id,
            own=own,
            keys=keys,
            as_of=facts.as_of,
        )
    return awards


def periods_taken(
    session: Session, *, member_id: int, purchase_id: int | None, keys: Mapping[int, str | None]
) -> set[tuple[int, str | None]]:
    wanted = [(cid, key) for cid, key in keys.items() if key is not None]
    if not wanted:
        return set()
    query = select(CampaignGrant.campaign_id, CampaignGrant.period_key).where(
        # a period a duplicate took before it was merged into this member is taken
        CampaignGrant.member_id.in_(merged_into(literal(member_id))),
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
class Grant:
    """A purchase's grant from one campaign, and whether it counts against budget and cap."""

    id: int
    campaign_id: int
    member_id: int
    points: int
    budgeted: bool
    capped: bool


def own_grants(session: Session, purchase_id: int | None) -> dict[int, Grant]:
    """The grants a committed purchase already holds, and whether they count against limits."""
    if purchase_id is None:
        return {}
    rows = session.execute(
        select(
            CampaignGrant.id,
            CampaignGrant.campaign_id,
            CampaignGrant.member_id,
            CampaignGrant.points,
            CampaignVersion.definition,
        )
        .join(CampaignVersion, CampaignVersion.id == CampaignGrant.version_id)
        .where(CampaignGrant.purchase_id == purchase_id)
    )
    return {
        row.campaign_id: Grant(
            id=row.id,
            campaign_id=row.campaign_id,
            member_id=row.member_id,
            points=row.points,
            budgeted=row.definition.get("budget") is not None,
            capped=row.definition.get("per_member_cap") is not None,
        )
        for row in rows
    }


def room_left(
    session: Session,
    candidates: Iterable[Award],
    *,
    member_id: int,
    own: Mapping[int, Grant],
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
        for cid, n in session.execute(_merged_usage(member_id, capped)):
            usage[cid] = usage.get(cid, 0) + int(n)  # what duplicates merged into it received
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


def _merged_usage(member_id: int, campaign_ids: list[int]) -> Select[int, int]:
    """Per capped campaign, the points of the members merged into `member_id` (their rows stay
    theirs: a return of one of their receipts gives back to them)."""
    return (
        select(CampaignMemberUsage.campaign_id, func.sum(CampaignMemberUsage.points))
        .where(
            CampaignMemberUsage.member_id.in_(merged_into(literal(member_id))),
            CampaignMemberUsage.member_id != member_id,
            CampaignMemberUsage.campaign_id.in_(campaign_ids),
        )
        .group_by(CampaignMemberUsage.campaign_id)
    )


def record(
    session: Session,
    awards: Sequence[Award],
    *,
    member_id: int,
    purchase_id: int | None,
    own: Mapping[int, Grant],
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

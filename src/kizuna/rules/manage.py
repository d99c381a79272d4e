"""Use cases of campaign management: create, edit, activate, end, look up, simulate.

A campaign starts as a draft whose one version is edited in place. Activation puts that version in
force from the moment of activation; every later edit closes the version in force and opens the
next one at the moment of the edit, so an earn or a return at `occurred_at` always finds the
version in force then. When an edit introduces a budget or a cap, the counters are rebuilt from
the grants so far. A simulation replays a period of past purchases through `earn_for_purchase`
with the draft alone and writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound, Unprocessable
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.rules.book import CampaignBook
from kizuna.rules.campaigns import CampaignDefinition, CampaignRule
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.errors import ErrorCode
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage, CampaignVersion
from kizuna.rules.service import PurchaseFacts, earn_for_purchase
from kizuna.rules.sql import purchases


class Status:
    DRAFT = "draft"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True)
class CampaignView:
    """A campaign with its current version and the history of its versions."""

    campaign: Campaign
    current: CampaignVersion
    versions: list[CampaignVersion]

    @property
    def definition(self) -> CampaignDefinition:
        return CampaignDefinition.from_dict(self.current.definition)


def _definition(data: Mapping[str, Any]) -> CampaignDefinition:
    return CampaignDefinition.from_dict(data)


def _versions(session: Session, campaign_id: int) -> list[CampaignVersion]:
    return list(
        session.scalars(
            select(CampaignVersion)
            .where(CampaignVersion.campaign_id == campaign_id)
            .order_by(CampaignVersion.version)
        )
    )


def get_campaign(session: Session, campaign_id: int, *, lock: bool = False) -> CampaignView:
    """Campaign `campaign_id` with its versions, or `campaign_not_found`."""
    query = select(Campaign).where(Campaign.id == campaign_id)
    campaign = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if campaign is None:
        raise NotFound(ErrorCode.CAMPAIGN_NOT_FOUND, f"campaign {campaign_id} not found")
    versions = _versions(session, campaign_id)
    return CampaignView(campaign=campaign, current=versions[-1], versions=versions)


def list_campaigns(
    session: Session, *, program_id: int, status: str | None = None
) -> list[CampaignView]:
    """The campaigns of a programme, newest first."""
    query = select(Campaign.id).where(Campaign.program_id == program_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    ids = session.scalars(query.order_by(Campaign.id.desc())).all()
    return [get_campaign(session, campaign_id) for campaign_id in ids]


def create_campaign(
    session: Session,
    *,
    program_id: int,
    code: str,
    definition: Mapping[str, Any],
    as_of: datetime,
    actor: str | None = None,
) -> CampaignView:
    """A new draft campaign; not in force until activated."""
    parsed = _definition(definition)
    partners.policies(session, program_id)
    taken = session.scalar(
        select(Campaign.id).where(Campaign.program_id == program_id, Campaign.code == code)
    )
    if taken is not None:
        raise Conflict(ErrorCode.INVALID_CAMPAIGN, f"campaign code {code!r} is already used")
    campaign = Campaign(
        program_id=program_id,
        code=code,
        status=Status.DRAFT,
        budget_used=0,
        created_at=as_of,
        updated_at=as_of,
    )
    session.add(campaign)
    session.flush()
    session.add(_version(campaign.id, 1, parsed, as_of=as_of, actor=actor, effective=None))
    session.flush()
    return get_campaign(session, campaign.id)


def _version(
    campaign_id: int,
    number: int,
    definition: CampaignDefinition,
    *,
    as_of: datetime,
    actor: str | None,
    effective: datetime | None,
) -> CampaignVersion:
    return CampaignVersion(
        campaign_id=campaign_id,
        version=number,
        starts_at=definition.starts_at,
        ends_at=definition.ends_at,
        effective_from=effective,
        definition=definition.to_dict(),
        created_at=as_of,
        created_by=actor,
    )


def update_campaign(
    session: Session,
    *,
    campaign_id: int,
    definition: Mapping[str, Any],
    as_of: datetime,
    actor: str | None = None,
) -> CampaignView:
    """Edit a campaign: a draft in place; an active one by a new version in force from now."""
    parsed = _definition(definition)
    view = get_campaign(session, campaign_id, lock=True)
    campaign, current = view.campaign, view.current
    if campaign.status == Status.ENDED:
        raise Conflict(ErrorCode.CAMPAIGN_NOT_EDITABLE, "an ended campaign cannot be edited")
    if campaign.status == Status.DRAFT:
        current.definition = parsed.to_dict()
        current.starts_at, current.ends_at = parsed.starts_at, parsed.ends_at
        current.created_by = actor
    else:
        before = CampaignDefinition.from_dict(current.definition)
        current.effective_to = as_of
        session.add(
            _version(
                campaign_id, current.version + 1, parsed, as_of=as_of, actor=actor, effective=as_of
            )
        )
        if parsed.budget is not None and before.budget is None:
            _rebuild_budget(session, campaign)
        if parsed.per_member_cap is not None and before.per_member_cap is None:
            _rebuild_usage(session, campaign_id)
    campaign.updated_at = as_of
    session.flush()
    return get_campaign(session, campaign_id)


def _rebuild_budget(session: Session, campaign: Campaign) -> None:
    """Count every point granted so far against a budget set only now."""
    campaign.budget_used = int(
        session.scalar(
            select(func.coalesce(func.sum(CampaignGrant.points), 0)).where(
                CampaignGrant.campaign_id == campaign.id
            )
        )
        or 0
    )


def _rebuild_usage(session: Session, campaign_id: int) -> None:
    """Count every member's grants so far against a cap set only now."""
    session.execute(
        delete(CampaignMemberUsage).where(CampaignMemberUsage.campaign_id == campaign_id)
    )
    session.execute(
        insert(CampaignMemberUsage).from_select(
            ["campaign_id", "member_id", "points"],
            select(
                CampaignGrant.campaign_id, CampaignGrant.member_id, func.sum(CampaignGrant.points)
            )
            .where(CampaignGrant.campaign_id == campaign_id)
            .group_by(CampaignGrant.campaign_id, CampaignGrant.member_id),
        )
    )


def activate_campaign(session: Session, *, campaign_id: int, as_of: datetime) -> CampaignView:
    """Put a draft in force from `as_of`."""
    view = get_campaign(session, campaign_id, lock=True)
    if view.campaign.status != Status.DRAFT:
        raise Conflict(ErrorCode.CAMPAIGN_STATE, f"campaign is {view.campaign.status}, not draft")
    view.current.effective_from = as_of
    view.campaign.status, view.campaign.updated_at = Status.ACTIVE, as_of
    session.flush()
    return get_campaign(session, campaign_id)


def end_campaign(session: Session, *, campaign_id: int, as_of: datetime) -> CampaignView:
    """Take an active campaign out of force from `as_of` (earlier purchases keep it)."""
    view = get_campaign(session, campaign_id, lock=True)
    if view.campaign.status != Status.ACTIVE:
        raise Conflict(ErrorCode.CAMPAIGN_STATE, f"campaign is {view.campaign.status}, not active")
    session.execute(
        update(CampaignVersion)
        .where(CampaignVersion.id == view.current.id)
        .values(effective_to=as_of)
    )
    view.campaign.status, view.campaign.updated_at = Status.ENDED, as_of
    session.flush()
    return get_campaign(session, campaign_id)


@dataclass(frozen=True)
class Simulation:
    """What a campaign would have cost over a period of past purchases."""

    start: datetime
    end: datetime
    purchases: int
    purchases_awarded: int
    members_reached: int
    points: int
    points_over_limits: int
    points_by_member: dict[int, int] = field(repr=False, default_factory=dict)


def simulate(
    session: Session,
    *,
    program_id: int,
    definition: Mapping[str, Any],
    start: datetime,
    end: datetime,
    code: str = "draft",
) -> Simulation:
    """Replay the programme's purchases of [start, end) with `definition` alone; writes nothing.

    Each purchase is evaluated as rung up, through `earn_for_purchase` at its `occurred_at`; the
    draft's own window is replaced by the period (it is usually in the future), and its per-member
    cap and total budget are applied in the order the purchases happened, as they would be live.
    """
    parsed = _definition(definition)
    if "purchase" not in parsed.event_types:
        raise Unprocessable(ErrorCode.INVALID_CAMPAIGN, "only purchase campaigns can be simulated")
    policies = partners.policies(session, program_id)
    # Limits are applied here, in order: the rule itself runs unlimited.
    book = CampaignBook(
        [
            CampaignRule(
                0,
                0,
                code,
                replace(parsed, starts_at=start, ends_at=end, per_member_cap=None, budget=None),
            )
        ]
    )
    rule_name = f"campaign:{code}"
    by_member: dict[int, int] = defaultdict(int)
    evaluated = awarded = total = over = 0
    rows = session.execute(
        select(
            purchases.c.id,
            purchases.c.member_id,
            purchases.c.occurred_at,
            purchases.c.channel,
            purchases.c.store_id,
            purchases.c.lines,
            purchases.c.partner_id,
            purchases.c.points_used,
        )
        .join(Member, Member.id == purchases.c.member_id)
        .where(
            Member.program_id == program_id,
            purchases.c.occurred_at >= start,
            purchases.c.occurred_at < end,
        )
        .order_by(purchases.c.occurred_at, purchases.c.id)
    )
    for row in rows:
        evaluated += 1
        facts = PurchaseFacts(
            member_id=row.member_id,
            lines=[PurchaseLine.from_dict(line) for line in row.lines],
            points_used=row.points_used,
            occurred_at=row.occurred_at,
            partner_id=row.partner_id,
            store_id=row.store_id,
            channel=row.channel,
        )
        earned = earn_for_purchase(
            session, policies=policies, purchase=facts, reserve=False, book=book
        )
        points = sum(r.points for r in earned if r.rule == rule_name)
        if not points:
            continue
        allowed = points
        if parsed.per_member_cap is not None:
            allowed = min(allowed, parsed.per_member_cap - by_member[row.member_id])
        if parsed.budget is not None:
            allowed = min(allowed, parsed.budget - total)
        allowed = max(allowed, 0)
        over += points - allowed
        if allowed:
            awarded += 1
            total += allowed
            by_member[row.member_id] += allowed
    return Simulation(
        start=start,
        end=end,
        purchases=evaluated,
        purchases_awarded=awarded,
        members_reached=len(by_member),
        points=total,
        points_over_limits=over,
        points_by_member=dict(by_member),
    )

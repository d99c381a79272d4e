"""`/v1/campaigns`: campaign management (scope `campaigns:manage`) and simulation.

Thin: parse, call `kizuna.rules.manage`, shape. A client sees only its programme's campaigns.
Edits of an active campaign create a new version; `simulate` replays past purchases and writes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kizuna.api.deps import IdempotencyKey, ReadSessionDep, RequireScope, SessionDep
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.clients.domain import ClientIdentity, Scope
from kizuna.core.clock import utcnow
from kizuna.core.errors import NotFound
from kizuna.rules import manage
from kizuna.rules.errors import ErrorCode
from kizuna.rules.schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    CampaignVersionRead,
    SimulationIn,
    SimulationRead,
)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)
CampaignsManager = Annotated[ClientIdentity, Depends(RequireScope(Scope.CAMPAIGNS_MANAGE))]


def campaign_read(view: manage.CampaignView) -> CampaignRead:
    """The API shape of a campaign and its versions."""
    return CampaignRead(
        id=view.campaign.id,
        code=view.campaign.code,
        status=view.campaign.status,
        budget_used=view.campaign.budget_used,
        version=view.current.version,
        definition=view.current.definition,
        versions=[
            CampaignVersionRead(
                version=v.version,
                effective_from=v.effective_from,
                effective_to=v.effective_to,
                created_at=v.created_at,
                created_by=v.created_by,
                definition=v.definition,
            )
            for v in view.versions
        ],
    )


def _own(session: Session, client: ClientIdentity, campaign_id: int) -> manage.CampaignView:
    view = manage.get_campaign(session, campaign_id)
    if view.campaign.program_id != client.program_id:
        raise NotFound(ErrorCode.CAMPAIGN_NOT_FOUND, f"campaign {campaign_id} not found")
    return view


@router.post("", status_code=201, response_model=CampaignRead)
def create(
    body: CampaignCreate,
    request: Request,
    client: CampaignsManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Create a draft campaign (not in force until activated)."""

    def action() -> tuple[int, CampaignRead]:
        view = manage.create_campaign(
            session,
            program_id=client.program_id,
            code=body.code,
            definition=body.definition.plain(),
            as_of=utcnow(),
            actor=client.actor,
        )
        return 201, campaign_read(view)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("", response_model=list[CampaignRead])
def list_(
    client: CampaignsManager, session: ReadSessionDep, status: str | None = None
) -> list[CampaignRead]:
    """The programme's campaigns, newest first (filter by `status`: draft, active, ended)."""
    views = manage.list_campaigns(session, program_id=client.program_id, status=status)
    return [campaign_read(view) for view in views]


@router.get("/{campaign_id}", response_model=CampaignRead)
def get(campaign_id: int, client: CampaignsManager, session: ReadSessionDep) -> CampaignRead:
    """A campaign with every version."""
    return campaign_read(_own(session, client, campaign_id))


@router.put("/{campaign_id}", response_model=CampaignRead)
def update(
    campaign_id: int,
    body: CampaignUpdate,
    request: Request,
    client: CampaignsManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Edit a campaign: a draft in place; an active one gets a new version in force from now."""

    def action() -> tuple[int, CampaignRead]:
        _own(session, client, campaign_id)
        view = manage.update_campaign(
            session,
            campaign_id=campaign_id,
            definition=body.definition.plain(),
            as_of=utcnow(),
            actor=client.actor,
        )
        return 200, campaign_read(view)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


def _change_state(
    change: Callable[..., manage.CampaignView],
    session: Session,
    request: Request,
    client: ClientIdentity,
    key: str,
    campaign_id: int,
) -> JSONResponse:
    def action() -> tuple[int, CampaignRead]:
        _own(session, client, campaign_id)
        return 200, campaign_read(change(session, campaign_id=campaign_id, as_of=utcnow()))

    return idempotent(session, request=request, client=client, key=key, body=None, action=action)


@router.post("/{campaign_id}/activate", response_model=CampaignRead)
def activate(
    campaign_id: int,
    request: Request,
    client: CampaignsManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Put a draft in force from now."""
    return _change_state(manage.activate_campaign, session, request, client, key, campaign_id)


@router.post("/{campaign_id}/end", response_model=CampaignRead)
def end(
    campaign_id: int,
    request: Request,
    client: CampaignsManager,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Take an active campaign out of force from now; purchases before keep it, returns too."""
    return _change_state(manage.end_campaign, session, request, client, key, campaign_id)


@router.post("/{campaign_id}/simulate", response_model=SimulationRead)
def simulate(
    campaign_id: int, body: SimulationIn, client: CampaignsManager, session: ReadSessionDep
) -> SimulationRead:
    """Replay the programme's purchases of [start, end) with this campaign (or the given
    `definition`) and report its cost and reach; writes nothing."""
    view = _own(session, client, campaign_id)
    definition = body.definition.plain() if body.definition else view.current.definition
    result = manage.simulate(
        session,
        program_id=client.program_id,
        definition=definition,
        start=body.start,
        end=body.end,
        code=view.campaign.code,
    )
    return SimulationRead(
        start=result.start,
        end=result.end,
        purchases=result.purchases,
        purchases_awarded=result.purchases_awarded,
        members_reached=result.members_reached,
        points=result.points,
        points_over_limits=result.points_over_limits,
    )

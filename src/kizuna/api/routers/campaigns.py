"""`/v1/campaigns`: campaign management and simulation, for an API key with `campaigns:manage`
or a staff session with `campaigns:read` (reading) or `campaigns:write` (the rest).

Thin: parse, call `kizuna.rules.manage`, shape. A client sees only its programme's campaigns.
Edits of an active campaign create a new version; `simulate` replays past purchases and writes
nothing. A staff user's changes are audited as the console audits them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kizuna.api.deps import (
    CampaignsReader,
    CampaignsWriter,
    IdempotencyKey,
    ReadSessionDep,
    SessionDep,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
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
from kizuna.security import access
from kizuna.security.access import Caller

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)


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


def _own(session: Session, caller: Caller, campaign_id: int) -> manage.CampaignView:
    view = manage.get_campaign(session, campaign_id)
    if not access.reaches_program(caller, view.campaign.program_id):
        raise NotFound(ErrorCode.CAMPAIGN_NOT_FOUND, f"campaign {campaign_id} not found")
    return view


def _audit(session: Session, caller: Caller, action: str, view: manage.CampaignView) -> None:
    access.record(
        session,
        caller,
        action=action,
        target=f"campaign:{view.campaign.id}",
        details={"code": view.campaign.code, "version": view.current.version},
        as_of=utcnow(),
    )


@router.post("", status_code=201, response_model=CampaignRead)
def create(
    body: CampaignCreate,
    request: Request,
    caller: CampaignsWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Create a draft campaign (not in force until activated)."""

    def action() -> tuple[int, CampaignRead]:
        view = manage.create_campaign(
            session,
            program_id=access.program(caller),
            code=body.code,
            definition=body.definition.plain(),
            as_of=utcnow(),
            actor=caller.actor,
        )
        _audit(session, caller, "campaign.create", view)
        return 201, campaign_read(view)

    return idempotent(session, request=request, client=caller, key=key, body=body, action=action)


@router.get("", response_model=list[CampaignRead])
def list_(
    caller: CampaignsReader, session: ReadSessionDep, status: str | None = None
) -> list[CampaignRead]:
    """The programme's campaigns, newest first (filter by `status`: draft, active, ended)."""
    views = manage.list_campaigns(session, program_id=access.program(caller), status=status)
    return [campaign_read(view) for view in views]


@router.get("/{campaign_id}", response_model=CampaignRead)
def get(campaign_id: int, caller: CampaignsReader, session: ReadSessionDep) -> CampaignRead:
    """A campaign with every version."""
    return campaign_read(_own(session, caller, campaign_id))


@router.put("/{campaign_id}", response_model=CampaignRead)
def update(
    campaign_id: int,
    body: CampaignUpdate,
    request: Request,
    caller: CampaignsWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Edit a campaign: a draft in place; an active one gets a new version in force from now."""

    def action() -> tuple[int, CampaignRead]:
        _own(session, caller, campaign_id)
        view = manage.update_campaign(
            session,
            campaign_id=campaign_id,
            definition=body.definition.plain(),
            as_of=utcnow(),
            actor=caller.actor,
        )
        _audit(session, caller, "campaign.update", view)
        return 200, campaign_read(view)

    return idempotent(session, request=request, client=caller, key=key, body=body, action=action)


def _change_state(
    change: Callable[..., manage.CampaignView],
    audited: str,
    session: Session,
    request: Request,
    caller: Caller,
    key: str,
    campaign_id: int,
) -> JSONResponse:
    def action() -> tuple[int, CampaignRead]:
        _own(session, caller, campaign_id)
        view = change(session, campaign_id=campaign_id, as_of=utcnow())
        _audit(session, caller, audited, view)
        return 200, campaign_read(view)

    return idempotent(session, request=request, client=caller, key=key, body=None, action=action)


@router.post("/{campaign_id}/activate", response_model=CampaignRead)
def activate(
    campaign_id: int,
    request: Request,
    caller: CampaignsWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Put a draft in force from now."""
    change = manage.activate_campaign
    return _change_state(change, "campaign.activate", session, request, caller, key, campaign_id)


@router.post("/{campaign_id}/end", response_model=CampaignRead)
def end(
    campaign_id: int,
    request: Request,
    caller: CampaignsWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Take an active campaign out of force from now; purchases before keep it, returns too."""
    change = manage.end_campaign
    return _change_state(change, "campaign.end", session, request, caller, key, campaign_id)


@router.post("/{campaign_id}/simulate", response_model=SimulationRead)
def simulate(
    campaign_id: int, body: SimulationIn, caller: CampaignsWriter, session: ReadSessionDep
) -> SimulationRead:
    """Replay the programme's purchases of [start, end) with this campaign (or the given
    `definition`) and report its cost and reach; writes nothing."""
    view = _own(session, caller, campaign_id)
    definition = body.definition.plain() if body.definition else view.current.definition
    result = manage.simulate(
        session,
        program_id=view.campaign.program_id,
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

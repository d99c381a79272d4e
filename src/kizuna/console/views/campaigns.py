"""Campaigns: list, create and edit with the visual condition builder, simulate, activate, end.

The form is plain HTML; the condition builder (static/builder.js) keeps the condition tree as
JSON in a hidden field, so the server validates exactly what the rules area will run
(`CampaignDefinition.from_dict`) and shows its error, which names the bad node. "Simulate"
replays a period of past purchases with the unsaved form and writes nothing.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.i18n import translate
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.partners.models import Partner, Program, Store
from kizuna.rules import manage
from kizuna.rules.campaigns import ActionType, CampaignDefinition
from kizuna.rules.conditions import FIELDS, OPS_BY_TYPE
from kizuna.security import audit
from kizuna.security.domain import Permission

router = APIRouter()
Reader = Annotated[Viewer, Depends(require(Permission.CAMPAIGNS_READ))]
Writer = Annotated[Viewer, Depends(require(Permission.CAMPAIGNS_WRITE))]
OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "exists")
EVENT_TYPES = ("purchase", "visit", "login", "app_open", "signup", "birthday", "referral")


def catalogue() -> dict[str, Any]:
    """The fields and operators the builder offers, from the condition language itself."""
    return {
        "fields": [
            {"name": spec.name, "type": str(spec.type), "window": spec.window}
            for spec in FIELDS.values()
        ],
        "ops": {
            str(kind): [op for op in OPS if op in ops or op == "exists"]
            for kind, ops in OPS_BY_TYPE.items()
        },
    }


def _programs(session: Session) -> list[Program]:
    return list(session.scalars(select(Program).order_by(Program.id)))


def _local_input(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if moment else ""


def _instant(value: str, tz: ZoneInfo) -> str | None:
    """A datetime-local field (programme time) as an ISO instant, or None when empty."""
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=tz).isoformat()


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.replace("、", ",").split(",") if item.strip()]


def _int_or_none(value: str) -> int | None:
    return int(value) if value.strip().lstrip("-").isdigit() else None


def definition_from_form(form: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The campaign definition JSON of a submitted form (validated later by the rules area)."""
    action: dict[str, Any] = {"type": form.get("action_type", "multiply")}
    if action["type"] == ActionType.MULTIPLY:
        action["times"] = form.get("times", "")
    else:
        action["points"] = _int_or_none(form.get("action_points", "")) or form.get("action_points")
    if categories := _csv(form.get("action_categories", "")):
        action["categories"] = categories
    try:
        condition = json.loads(form.get("condition") or '{"all": []}')
    except json.JSONDecodeError:
        condition = {"all": []}
    definition: dict[str, Any] = {
        "name": form.get("name", ""),
        "starts_at": _instant(form.get("starts_at", ""), tz),
        "ends_at": _instant(form.get("ends_at", ""), tz),
        "action": action,
        "event_types": form.get("event_types") or ["purchase"],
        "channels": _csv(form.get("channels", "")),
        "stores": [int(s) for s in form.get("stores", []) if str(s).isdigit()],
        "condition": condition,
        "points_kind": form.get("points_kind", "standard"),
        "stackable": form.get("stackable") == "on",
        "priority": _int_or_none(form.get("priority", "")) or 0,
        "per_member_cap": _int_or_none(form.get("per_member_cap", "")),
        "budget": _int_or_none(form.get("budget", "")),
    }
    if definition["points_kind"] == "limited":
        definition["limited_days"] = _int_or_none(form.get("limited_days", ""))
    return definition


def _form_of(definition: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """Form values of a stored definition (the inverse of `definition_from_form`)."""
    parsed = CampaignDefinition.from_dict(definition)
    action = definition.get("action", {})
    return {
        "name": parsed.name,
        "starts_at": _local_input(parsed.starts_at, tz),
        "ends_at": _local_input(parsed.ends_at, tz),
        "action_type": action.get("type", "multiply"),
        "times": action.get("times", ""),
        "action_points": action.get("points", ""),
        "action_categories": ", ".join(action.get("categories", [])),
        "event_types": sorted(parsed.event_types),
        "channels": ", ".join(sorted(parsed.channels)),
        "stores": sorted(parsed.stores),
        "condition": json.dumps(definition.get("condition") or {"all": []}, ensure_ascii=False),
        "points_kind": parsed.points_kind,
        "limited_days": parsed.limited_days or "",
        "stackable": parsed.stackable,
        "priority": parsed.priority,
        "per_member_cap": parsed.per_member_cap or "",
        "budget": parsed.budget or "",
    }


def _blank_form(tz: ZoneInfo) -> dict[str, Any]:
    today = utcnow().astimezone(tz).date()
    start = datetime.combine(today + timedelta(days=1), time(), tz)
    return {
        "name": "",
        "starts_at": _local_input(start, tz),
        "ends_at": _local_input(start + timedelta(days=30), tz),
        "action_type": "multiply",
        "times": "2",
        "action_points": "",
        "action_categories": "",
        "event_types": ["purchase"],
        "channels": "",
        "stores": [],
        "condition": '{"all": []}',
        "points_kind": "standard",
        "limited_days": "",
        "stackable": True,
        "priority": 0,
        "per_member_cap": "",
        "budget": "",
    }


async def _submitted(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {key: str(value) for key, value in form.items()}
    values["event_types"] = [str(v) for v in form.getlist("event_types")]
    values["stores"] = [str(v) for v in form.getlist("stores")]
    values["stackable"] = "on" if form.get("stackable") else ""
    return values


def _last_month(tz: ZoneInfo) -> tuple[date, date]:
    first = utcnow().astimezone(tz).date().replace(day=1)
    return (first - timedelta(days=1)).replace(day=1), first


def _editor(
    request: Request,
    viewer: Viewer,
    session: Session,
    *,
    program: Program,
    form: dict[str, Any],
    view: manage.CampaignView | None,
    code: str = "",
    error: str = "",
    simulation: manage.Simulation | None = None,
    sim_start: str = "",
    sim_end: str = "",
    status_code: int = 200,
) -> Response:
    tz = ZoneInfo(program.timezone)
    default_start, default_end = _last_month(tz)
    stores = list(
        session.scalars(
            select(Store)
            .join(Partner, Partner.id == Store.partner_id)
            .where(Partner.program_id == program.id)
            .order_by(Store.id)
        )
    )
    return render(
        request,
        "campaign.html",
        viewer=viewer,
        program=program,
        view=view,
        code=view.campaign.code if view else code,
        form=form,
        stores=stores,
        event_types=EVENT_TYPES,
        action_types=list(ActionType),
        catalogue=catalogue(),
        field_labels={name: translate(f"field.{name}", viewer.lang) for name in FIELDS},
        op_labels={op: translate(f"op.{op}", viewer.lang) for op in OPS},
        error=error,
        simulation=simulation,
        sim_start=sim_start or default_start.isoformat(),
        sim_end=sim_end or default_end.isoformat(),
        editable=viewer.can(Permission.CAMPAIGNS_WRITE)
        and (view is None or view.campaign.status != manage.Status.ENDED),
        status_code=status_code,
    )


@router.get("/campaigns")
def campaigns(
    request: Request,
    db: DatabaseDep,
    viewer: Reader,
    program: Annotated[int | None, Query()] = None,
) -> Response:
    """The campaigns of a programme, newest first."""
    with db.read() as session:
        programs = _programs(session)
        chosen = program or (programs[0].id if programs else None)
        views = manage.list_campaigns(session, program_id=chosen) if chosen else []
        rows = [(view, CampaignDefinition.from_dict(view.current.definition)) for view in views]
    return render(
        request, "campaigns.html", viewer=viewer, programs=programs, chosen=chosen, rows=rows
    )


@router.get("/campaigns/new")
def new_campaign(
    request: Request,
    db: DatabaseDep,
    viewer: Writer,
    program: Annotated[int | None, Query()] = None,
) -> Response:
    """An empty campaign form with the condition builder."""
    with db.read() as session:
        programs = _programs(session)
        chosen = next((p for p in programs if p.id == program), programs[0] if programs else None)
        if chosen is None:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        return _editor(
            request,
            viewer,
            session,
            program=chosen,
            form=_blank_form(ZoneInfo(chosen.timezone)),
            view=None,
        )


async def _save_or_simulate(
    request: Request, db: DatabaseDep, viewer: Viewer, campaign_id: int | None
) -> Response:
    submitted = await _submitted(request)
    now = utcnow()
    with db.write() as session:
        view = manage.get_campaign(session, campaign_id) if campaign_id else None
        program_id = (
            view.campaign.program_id if view else _int_or_none(submitted.get("program", ""))
        )
        program = session.get(Program, program_id) if program_id else None
        if program is None:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        tz = ZoneInfo(program.timezone)
        definition = definition_from_form(submitted, tz)
        code = view.campaign.code if view else submitted.get("code", "").strip()
        simulation = None
        try:
            # A savepoint: a refused save rolls back alone, and the form is shown again.
            with session.begin_nested():
                if submitted.get("intent") == "simulate":
                    start = datetime.combine(date.fromisoformat(submitted["sim_start"]), time(), tz)
                    end = datetime.combine(date.fromisoformat(submitted["sim_end"]), time(), tz)
                    simulation = manage.simulate(
                        session,
                        program_id=program.id,
                        definition=definition,
                        start=start,
                        end=end,
                        code=code or "draft",
                    )
                elif view is None:
                    created = manage.create_campaign(
                        session,
                        program_id=program.id,
                        code=code,
                        definition=definition,
                        as_of=now,
                        actor=viewer.staff.actor,
                    )
                    _audit(session, viewer, "campaign.create", created.campaign.id, created, now)
                    return redirect(f"{CONSOLE}/campaigns/{created.campaign.id}?saved=1")
                else:
                    updated = manage.update_campaign(
                        session,
                        campaign_id=view.campaign.id,
                        definition=definition,
                        as_of=now,
                        actor=viewer.staff.actor,
                    )
                    _audit(session, viewer, "campaign.update", view.campaign.id, updated, now)
                    return redirect(f"{CONSOLE}/campaigns/{view.campaign.id}?saved=1")
        except (KizunaError, ValueError, KeyError) as refused:
            message = refused.message if isinstance(refused, KizunaError) else str(refused)
            return _editor(
                request,
                viewer,
                session,
                program=program,
                form=submitted,
                view=view,
                code=code,
                error=message,
                status_code=422,
            )
        return _editor(
            request,
            viewer,
            session,
            program=program,
            form=submitted,
            view=view,
            code=code,
            simulation=simulation,
            sim_start=submitted.get("sim_start", ""),
            sim_end=submitted.get("sim_end", ""),
        )


def _audit(
    session: Session,
    viewer: Viewer,
    action: str,
    campaign_id: int,
    view: manage.CampaignView,
    now: datetime,
) -> None:
    audit.record(
        session,
        actor=viewer.staff.actor,
        action=action,
        target=f"campaign:{campaign_id}",
        details={"code": view.campaign.code, "version": view.current.version},
        as_of=now,
    )


@router.post("/campaigns")
async def create(request: Request, db: DatabaseDep, viewer: Writer) -> Response:
    """Save a new draft campaign, or simulate the unsaved form."""
    return await _save_or_simulate(request, db, viewer, None)


@router.get("/campaigns/{campaign_id}")
def campaign(request: Request, db: DatabaseDep, viewer: Reader, campaign_id: int) -> Response:
    """A campaign: its form (editable unless ended), versions and simulation."""
    with db.read() as session:
        try:
            view = manage.get_campaign(session, campaign_id)
        except KizunaError:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        program = session.get(Program, view.campaign.program_id)
        assert program is not None
        form = _form_of(view.current.definition, ZoneInfo(program.timezone))
        return _editor(request, viewer, session, program=program, form=form, view=view)


@router.post("/campaigns/{campaign_id}")
async def update(request: Request, db: DatabaseDep, viewer: Writer, campaign_id: int) -> Response:
    """Save an edit (a new version when active), or simulate the unsaved form."""
    try:
        return await _save_or_simulate(request, db, viewer, campaign_id)
    except KizunaError:
        return render(request, "not_found.html", viewer=viewer, status_code=404)


def _transition(
    request: Request, db: DatabaseDep, viewer: Viewer, campaign_id: int, *, activate: bool
) -> Response:
    now = utcnow()
    try:
        with db.write() as session:
            change = manage.activate_campaign if activate else manage.end_campaign
            view = change(session, campaign_id=campaign_id, as_of=now)
            action = "campaign.activate" if activate else "campaign.end"
            _audit(session, viewer, action, campaign_id, view, now)
    except KizunaError as refused:
        return render(
            request, "message.html", viewer=viewer, status_code=refused.status, error=refused.code
        )
    return redirect(f"{CONSOLE}/campaigns/{campaign_id}")


@router.post("/campaigns/{campaign_id}/activate")
def activate(request: Request, db: DatabaseDep, viewer: Writer, campaign_id: int) -> Response:
    """Put a draft in force from now."""
    return _transition(request, db, viewer, campaign_id, activate=True)


@router.post("/campaigns/{campaign_id}/end")
def end(request: Request, db: DatabaseDep, viewer: Writer, campaign_id: int) -> Response:
    """Take an active campaign out of force from now."""
    return _transition(request, db, viewer, campaign_id, activate=False)

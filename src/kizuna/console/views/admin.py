"""Administration: staff accounts (create, role and scope, deactivate, reset, unlock) and the
audit log viewer with filters and a chain check."""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.partners.models import Partner, Store
from kizuna.security import audit
from kizuna.security import service as security
from kizuna.security.domain import Permission, Role, can_assign

router = APIRouter()
StaffReader = Annotated[Viewer, Depends(require(Permission.STAFF_READ))]
StaffManager = Annotated[Viewer, Depends(require(Permission.STAFF_MANAGE))]
AuditReader = Annotated[Viewer, Depends(require(Permission.AUDIT_READ))]
AUDIT_PAGE = 50


def _staff_page(
    request: Request,
    db: DatabaseDep,
    viewer: Viewer,
    *,
    error: str = "",
    secret: tuple[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with db.read() as session:
        users = security.list_staff(session)
        stores = list(session.scalars(select(Store).order_by(Store.id)))
        partners = list(session.scalars(select(Partner).order_by(Partner.id)))
    return render(
        request,
        "staff.html",
        viewer=viewer,
        users=users,
        stores={store.id: store for store in stores},
        partners={partner.id: partner for partner in partners},
        roles=[role for role in Role if can_assign(viewer.staff.role, role)],
        all_roles=list(Role),
        may_manage=lambda user: (
            viewer.can(Permission.STAFF_MANAGE)
            and can_assign(viewer.staff.role, user.role)
            and user.id != viewer.staff.id
        ),
        now=utcnow(),
        error=error,
        secret=secret,
        status_code=status_code,
    )


@router.get("/staff")
def staff(request: Request, db: DatabaseDep, viewer: StaffReader) -> Response:
    """Every staff account with its role, scope and state."""
    return _staff_page(request, db, viewer)


def _scope_ids(role: str, store_id: str, partner_id: str) -> tuple[int | None, int | None]:
    store = int(store_id) if role == Role.STORE_STAFF and store_id.isdigit() else None
    partner = int(partner_id) if role == Role.PARTNER_MANAGER and partner_id.isdigit() else None
    return store, partner


@router.post("/staff")
def create_staff(
    request: Request,
    db: DatabaseDep,
    viewer: StaffManager,
    username: Annotated[str, Form(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")],
    display_name: Annotated[str, Form(max_length=100)],
    role: Annotated[str, Form()],
    store_id: Annotated[str, Form()] = "",
    partner_id: Annotated[str, Form()] = "",
) -> Response:
    """A new account with a one-time password shown once; it must be changed at first log-in."""
    if not can_assign(viewer.staff.role, role):
        return _staff_page(request, db, viewer, error="code.role_not_assignable", status_code=403)
    password = secrets.token_urlsafe(12)
    store, partner = _scope_ids(role, store_id, partner_id)
    try:
        with db.write() as session:
            security.create_staff(
                session,
                username=username,
                display_name=display_name,
                role=role,
                password=password,
                actor=viewer.staff.actor,
                as_of=utcnow(),
                store_id=store,
                partner_id=partner,
                must_change_password=True,
            )
    except KizunaError as refused:
        return _staff_page(request, db, viewer, error=f"code.{refused.code}", status_code=422)
    return _staff_page(request, db, viewer, secret=(username, password))


@router.post("/staff/{staff_id}")
def update_staff(
    request: Request,
    db: DatabaseDep,
    viewer: StaffManager,
    staff_id: int,
    role: Annotated[str, Form()],
    store_id: Annotated[str, Form()] = "",
    partner_id: Annotated[str, Form()] = "",
    active: Annotated[str, Form()] = "",
) -> Response:
    """Change a user's role and scope, or (de)activate them."""
    store, partner = _scope_ids(role, store_id, partner_id)
    try:
        with db.write() as session:
            security.update_staff(
                session,
                actor=viewer.staff,
                staff_id=staff_id,
                role=role,
                active=bool(active),
                as_of=utcnow(),
                store_id=store,
                partner_id=partner,
            )
    except KizunaError as refused:
        return _staff_page(
            request, db, viewer, error=f"code.{refused.code}", status_code=refused.status
        )
    return redirect(f"{CONSOLE}/staff")


@router.post("/staff/{staff_id}/reset-password")
def reset_password(
    request: Request, db: DatabaseDep, viewer: StaffManager, staff_id: int
) -> Response:
    """A one-time password for a user who forgot theirs (clears lock-out, TOTP and sessions)."""
    try:
        with db.write() as session:
            temporary = security.reset_password(
                session, actor=viewer.staff, staff_id=staff_id, as_of=utcnow()
            )
            username = security.get_staff(session, staff_id).username
    except KizunaError as refused:
        return _staff_page(
            request, db, viewer, error=f"code.{refused.code}", status_code=refused.status
        )
    return _staff_page(request, db, viewer, secret=(username, temporary))


@router.post("/staff/{staff_id}/unlock")
def unlock(request: Request, db: DatabaseDep, viewer: StaffManager, staff_id: int) -> Response:
    """Lift a lock-out now."""
    try:
        with db.write() as session:
            security.unlock(session, actor=viewer.staff, staff_id=staff_id, as_of=utcnow())
    except KizunaError as refused:
        return _staff_page(
            request, db, viewer, error=f"code.{refused.code}", status_code=refused.status
        )
    return redirect(f"{CONSOLE}/staff")


def _day(value: str, tz: ZoneInfo, *, end: bool = False) -> datetime | None:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime.combine(day + timedelta(days=1) if end else day, time(), tz)


@router.get("/audit")
def audit_log(
    request: Request,
    db: DatabaseDep,
    viewer: AuditReader,
    actor: Annotated[str, Query(max_length=100)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[int | None, Query()] = None,
    verify: Annotated[bool, Query()] = False,
) -> Response:
    """The audit log, newest first, filtered; `verify=1` walks the whole chain."""
    tz = ZoneInfo(getattr(getattr(request.app.state, "settings", None), "timezone", "Asia/Tokyo"))
    filters = audit.AuditFilter(
        actor=actor.strip() or None,
        action=action.strip() or None,
        target=target.strip() or None,
        since=_day(since, tz),
        until=_day(until, tz, end=True),
    )
    with db.read() as session:
        rows = audit.entries(session, filters=filters, before_seq=before, limit=AUDIT_PAGE)
        checked = audit.verify(session) if verify else None
    query = {
        "actor": actor,
        "action": action,
        "target": target,
        "since": since,
        "until": until,
    }
    return render(
        request,
        "audit.html",
        viewer=viewer,
        rows=rows,
        filters=query,
        next_before=rows[-1].seq if len(rows) == AUDIT_PAGE else None,
        checked=checked,
    )

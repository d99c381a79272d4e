"""The dashboard: headline KPIs of the month and daily charts (Chart.js, served locally)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from kizuna.console import kpis
from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.security.domain import Permission

router = APIRouter()

# Where each role lands after log-in: the first screen it may open.
_HOME = (
    (Permission.DASHBOARD_VIEW, "/dashboard"),
    (Permission.MEMBERS_READ, "/members"),
)


@router.get("/")
def home(viewer: Annotated[Viewer, Depends(require(Permission.SELF))]) -> Response:
    """The start page of the user's role."""
    for permission, path in _HOME:
        if viewer.can(permission):
            return redirect(CONSOLE + path)
    return redirect(f"{CONSOLE}/account")


@router.get("/dashboard")
def dashboard(
    request: Request,
    db: DatabaseDep,
    viewer: Annotated[Viewer, Depends(require(Permission.DASHBOARD_VIEW))],
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> Response:
    """KPIs of a month (this month by default)."""
    tz = ZoneInfo(getattr(getattr(request.app.state, "settings", None), "timezone", "Asia/Tokyo"))
    now = utcnow()
    period = kpis.Month(date.fromisoformat(f"{month}-01"), tz) if month else kpis.month_of(now, tz)
    with db.read() as session:
        figures = kpis.headline(session, month=period, as_of=now)
        series = kpis.daily(session, month=period)
    chart = {
        "labels": [day.strftime("%m/%d") for day in series.days],
        "issued": series.issued,
        "redeemed": series.redeemed,
        "expired": series.expired,
        "new_members": series.new_members,
    }
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        period=period,
        figures=figures,
        chart=chart,
    )

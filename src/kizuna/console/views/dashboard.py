"""The dashboard: headline KPIs of a period and daily charts (Chart.js, served locally).

The period selector offers this month, last month and a custom from–to range; the arrows step
through calendar months."""

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


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/dashboard")
def dashboard(
    request: Request,
    db: DatabaseDep,
    viewer: Annotated[Viewer, Depends(require(Permission.DASHBOARD_VIEW))],
    period: kpis.PeriodChoice = kpis.PeriodChoice.THIS_MONTH,
    first: Annotated[str, Query(alias="from", max_length=10)] = "",
    last: Annotated[str, Query(alias="to", max_length=10)] = "",
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> Response:
    """KPIs of a period: this month (the default), last month, a month chosen with the arrows
    (`month`), or a custom from–to range."""
    tz = ZoneInfo(getattr(getattr(request.app.state, "settings", None), "timezone", "Asia/Tokyo"))
    now = utcnow()
    error = ""
    try:
        if month and period is kpis.PeriodChoice.THIS_MONTH:
            chosen = kpis.month(date.fromisoformat(f"{month}-01"), tz)
        else:
            chosen = kpis.choose_period(
                period, as_of=now, tz=tz, first=_day(first), last=_day(last)
            )
    except kpis.InvalidPeriod:
        # Show this month, and say why the chosen range was not used.
        error, chosen = "dash.period_invalid", kpis.month_of(now, tz)
    with db.read() as session:
        figures = kpis.headline(session, period=chosen, as_of=now)
        series = kpis.daily(session, period=chosen)
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
        period=chosen,
        choice=period,
        choices=list(kpis.PeriodChoice),
        first=first or chosen.first.isoformat(),
        last=last or chosen.last.isoformat(),
        max_days=kpis.MAX_DAYS,
        error=error,
        figures=figures,
        chart=chart,
        status_code=422 if error else 200,
    )

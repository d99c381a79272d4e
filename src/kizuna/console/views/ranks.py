"""Rank settings (会員ランク): the metric, its window and the tiers with their thresholds and
benefits; the ranks area evaluates them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.partners.models import Program
from kizuna.security import audit
from kizuna.security.domain import Permission
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Metric, Window
from kizuna.tiers.service import TierInput

router = APIRouter()
Reader = Annotated[Viewer, Depends(require(Permission.CAMPAIGNS_READ))]
Writer = Annotated[Viewer, Depends(require(Permission.CAMPAIGNS_WRITE))]
ROWS = 6


def _page(
    request: Request,
    db: DatabaseDep,
    viewer: Viewer,
    program_id: int | None,
    *,
    error: str = "",
    status_code: int = 200,
) -> Response:
    with db.read() as session:
        programs = list(session.scalars(select(Program).order_by(Program.id)))
        chosen = program_id or (programs[0].id if programs else None)
        rules = tiers.rules_of(session, chosen) if chosen else None
    rows = list(rules.tiers) if rules else []
    return render(
        request,
        "ranks.html",
        viewer=viewer,
        programs=programs,
        chosen=chosen,
        rules=rules,
        rows=rows + [None] * max(ROWS - len(rows), 1),
        metrics=list(Metric),
        windows=list(Window),
        error=error,
        status_code=status_code,
    )


@router.get("/ranks")
def ranks(
    request: Request,
    db: DatabaseDep,
    viewer: Reader,
    program: Annotated[int | None, Query()] = None,
) -> Response:
    """A programme's ranks."""
    return _page(request, db, viewer, program)


@router.post("/ranks")
async def configure(request: Request, db: DatabaseDep, viewer: Writer) -> Response:
    """Save a programme's ranking (tiers matched by code; blank rows are ignored)."""
    form = await request.form()
    program_id = int(str(form.get("program", "0")) or 0)
    codes, names = form.getlist("code"), form.getlist("name")
    thresholds, multipliers = form.getlist("threshold"), form.getlist("multiplier")
    birthdays = form.getlist("birthday")
    try:
        given = [
            TierInput(
                code=str(code).strip(),
                name=str(name).strip() or str(code).strip(),
                threshold=int(str(threshold) or 0),
                earn_multiplier_pct=int(str(multiplier) or 100),
                birthday_points=int(str(birthday) or 0),
            )
            for code, name, threshold, multiplier, birthday in zip(
                codes, names, thresholds, multipliers, birthdays, strict=True
            )
            if str(code).strip()
        ]
        with db.write() as session:
            tiers.configure(
                session,
                program_id=program_id,
                metric=Metric(str(form.get("metric"))),
                window=Window(str(form.get("window"))),
                tiers=given,
                fiscal_year_start_month=int(str(form.get("fiscal_start") or 4)),
            )
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="ranks.configure",
                target=f"program:{program_id}",
                details={"tiers": [t.code for t in given], "metric": str(form.get("metric"))},
                as_of=utcnow(),
            )
    except (KizunaError, ValueError) as refused:
        message = refused.message if isinstance(refused, KizunaError) else str(refused)
        return _page(request, db, viewer, program_id, error=message, status_code=422)
    return redirect(f"{CONSOLE}/ranks?program={program_id}&saved=1")

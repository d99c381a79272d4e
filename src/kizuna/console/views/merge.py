"""名寄せ: candidate duplicate pairs, a side-by-side comparison, and the confirmed merge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.member_view import member_page
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.members import merge
from kizuna.members.models import Member
from kizuna.partners.models import Program
from kizuna.security import audit
from kizuna.security.domain import Permission

router = APIRouter()
Merger = Annotated[Viewer, Depends(require(Permission.MEMBERS_MERGE))]
SHOWN_PAIRS = 50


@router.get("/merge")
def candidates(
    request: Request,
    db: DatabaseDep,
    viewer: Merger,
    program: Annotated[int | None, Query()] = None,
) -> Response:
    """Candidate pairs of a programme, best first."""
    with db.read() as session:
        programs = list(session.scalars(select(Program).order_by(Program.id)))
        chosen = program or (programs[0].id if programs else None)
        pairs = merge.find_candidates(session, program_id=chosen)[:SHOWN_PAIRS] if chosen else []
    return render(
        request,
        "merge.html",
        viewer=viewer,
        programs=programs,
        chosen=chosen,
        pairs=pairs,
    )


@router.get("/merge/{first_id}/{second_id}")
def compare(
    request: Request, db: DatabaseDep, viewer: Merger, first_id: int, second_id: int
) -> Response:
    """The two members side by side (personal data in full: merging needs it), to confirm."""
    now = utcnow()
    with db.write() as session:
        first, second = session.get(Member, first_id), session.get(Member, second_id)
        if first is None or second is None or first.program_id != second.program_id:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        pages = [member_page(session, member=m, unmasked=True, as_of=now) for m in (first, second)]
        for m in (first, second):
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="member.view",
                target=f"member:{m.id}",
                details={"unmasked": True, "purpose": "merge"},
                as_of=now,
            )
        scored = [
            c
            for c in merge.candidates_for(session, member_id=first_id, threshold=-1000.0)
            if second_id in (c.member_id, c.other_id)
        ]
    return render(
        request,
        "merge_compare.html",
        viewer=viewer,
        pages=pages,
        candidate=scored[0] if scored else None,
    )


@router.post("/merge/{first_id}/{second_id}")
def confirm(
    request: Request,
    db: DatabaseDep,
    viewer: Merger,
    first_id: int,
    second_id: int,
    survivor: Annotated[int, Form()],
) -> Response:
    """Merge the other member into the chosen survivor (the merge service audits it)."""
    if survivor not in (first_id, second_id):
        return render(request, "not_found.html", viewer=viewer, status_code=404)
    merged_id = second_id if survivor == first_id else first_id
    try:
        with db.write() as session:
            found = [
                c
                for c in merge.candidates_for(session, member_id=survivor, threshold=-1000.0)
                if merged_id in (c.member_id, c.other_id)
            ]
            merge.merge_members(
                session,
                survivor_id=survivor,
                merged_id=merged_id,
                actor=viewer.staff.actor,
                as_of=utcnow(),
                score=found[0].score if found else None,
                reasons=found[0].reasons if found else (),
            )
    except KizunaError as refused:
        return render(
            request, "message.html", viewer=viewer, status_code=refused.status, error=refused.code
        )
    return redirect(f"{CONSOLE}/members/{survivor}?merged={merged_id}")

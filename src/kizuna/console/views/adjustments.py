"""Point adjustments by staff, with a reason; above the programme's threshold a second person
approves (maker–checker: the requester never approves their own), or anyone may reject."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.ledger import adjustments
from kizuna.ledger.adjustments import AdjustmentStatus, ReasonCode
from kizuna.ledger.models import AdjustmentRequest
from kizuna.partners import service as partners
from kizuna.security import audit
from kizuna.security.access import visible_member
from kizuna.security.domain import Permission, can_decide_adjustment

router = APIRouter()
Requester = Annotated[Viewer, Depends(require(Permission.POINTS_ADJUST))]
Approver = Annotated[Viewer, Depends(require(Permission.POINTS_APPROVE))]


@router.get("/members/{member_id}/adjust")
def adjust_form(request: Request, db: DatabaseDep, viewer: Requester, member_id: int) -> Response:
    """The adjustment form of one member."""
    with db.read() as session:
        member = visible_member(session, member_id=member_id, scope=viewer.staff.scope)
        if member is None:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        threshold = partners.policies(session, member.program_id).ledger.approval_threshold
    return render(
        request,
        "adjust.html",
        viewer=viewer,
        member_id=member_id,
        threshold=threshold,
        reasons=list(ReasonCode),
    )


@router.post("/members/{member_id}/adjust")
def adjust(
    request: Request,
    db: DatabaseDep,
    viewer: Requester,
    member_id: int,
    points: Annotated[int, Form(ge=-10_000_000, le=10_000_000)],
    reason_code: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Post an adjustment at once, or file it for a second person's approval."""
    now = utcnow()
    try:
        with db.write() as session:
            member = visible_member(session, member_id=member_id, scope=viewer.staff.scope)
            if member is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            policy = partners.policies(session, member.program_id).ledger
            outcome = adjustments.request_adjustment(
                session,
                member_id=member_id,
                points=points,
                reason_code=reason_code,
                reason=reason,
                requested_by=viewer.staff.actor,
                policy=policy,
                as_of=now,
            )
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="points.adjust_request",
                target=f"member:{member_id}",
                details={
                    "points": points,
                    "reason_code": reason_code,
                    "status": str(outcome.status),
                    "request_id": outcome.request_id,
                    "entry_id": outcome.posted.entry_id if outcome.posted else None,
                },
                as_of=now,
            )
    except KizunaError as refused:
        return render(
            request, "message.html", viewer=viewer, status_code=refused.status, error=refused.code
        )
    if outcome.status is AdjustmentStatus.PENDING:
        return redirect(f"{CONSOLE}/adjustments?filed={outcome.request_id}")
    return redirect(f"{CONSOLE}/members/{member_id}?adjusted={points}")


@router.get("/adjustments")
def pending(request: Request, db: DatabaseDep, viewer: Requester) -> Response:
    """Adjustments waiting for approval (approvers see all; others see their own)."""
    with db.read() as session:
        query = (
            select(AdjustmentRequest)
            .where(AdjustmentRequest.status == AdjustmentStatus.PENDING)
            .order_by(AdjustmentRequest.id)
        )
        if not viewer.can(Permission.POINTS_APPROVE):
            query = query.where(AdjustmentRequest.requested_by == viewer.staff.actor)
        waiting = list(session.scalars(query))
        recent = (
            list(
                session.scalars(
                    select(AdjustmentRequest)
                    .where(AdjustmentRequest.status != AdjustmentStatus.PENDING)
                    .order_by(AdjustmentRequest.decided_at.desc())
                    .limit(20)
                )
            )
            if viewer.can(Permission.POINTS_APPROVE)
            else []
        )
    return render(
        request,
        "adjustments.html",
        viewer=viewer,
        waiting=waiting,
        recent=recent,
        may_decide=lambda item: can_decide_adjustment(
            requested_by=item.requested_by, decided_by=viewer.staff.actor
        ),
    )


def _decide(
    request: Request, db: DatabaseDep, viewer: Viewer, request_id: int, *, approve: bool
) -> Response:
    now = utcnow()
    try:
        with db.write() as session:
            item = session.get(AdjustmentRequest, request_id)
            member = (
                visible_member(session, member_id=item.member_id, scope=viewer.staff.scope)
                if item
                else None
            )
            if item is None or member is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            if approve:
                policy = partners.policies(session, member.program_id).ledger
                posted = adjustments.approve_adjustment(
                    session,
                    request_id=request_id,
                    approver=viewer.staff.actor,
                    policy=policy,
                    as_of=now,
                )
                details = {"points": item.points, "entry_id": posted.entry_id}
            else:
                adjustments.reject_adjustment(
                    session, request_id=request_id, decided_by=viewer.staff.actor, as_of=now
                )
                details = {"points": item.points}
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="points.adjust_approve" if approve else "points.adjust_reject",
                target=f"member:{item.member_id}",
                details={"request_id": request_id, "requested_by": item.requested_by, **details},
                as_of=now,
            )
    except KizunaError as refused:
        return render(
            request, "message.html", viewer=viewer, status_code=refused.status, error=refused.code
        )
    return redirect(f"{CONSOLE}/adjustments?decided={request_id}")


@router.post("/adjustments/{request_id}/approve")
def approve(request: Request, db: DatabaseDep, viewer: Approver, request_id: int) -> Response:
    """Approve someone else's adjustment: it posts now."""
    return _decide(request, db, viewer, request_id, approve=True)


@router.post("/adjustments/{request_id}/reject")
def reject(request: Request, db: DatabaseDep, viewer: Approver, request_id: int) -> Response:
    """Turn an adjustment down."""
    return _decide(request, db, viewer, request_id, approve=False)

"""Staff-side point adjustments: small ones post at once, large ones wait for a second person's
approval (maker–checker); the requester is never their own approver.

Called with an API key holding `points:adjust`, `operator` names the person at the client's side.
Called through a staff session, the staff user is the person (`points:adjust` to ask,
`points:approve` to decide; store staff only for their store's members), and the action is
audited as in the console, so a request made in the console can be decided here and vice versa."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kizuna.api.deps import AdjustmentApprover, AdjustmentRequester, IdempotencyKey, SessionDep
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import BalanceRead, Id, Strict, balance_read
from kizuna.core.clock import utcnow
from kizuna.ledger import adjustments
from kizuna.ledger import service as ledger
from kizuna.partners import service as partners
from kizuna.security import access
from kizuna.security.access import Caller

router = APIRouter(prefix="/v1", tags=["adjustments"], responses=ERROR_RESPONSES)

Operator = Annotated[str, Field(min_length=1, max_length=60, description="who asks or decides")]


class AdjustmentIn(Strict):
    points: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason_code: Literal["goodwill", "correction", "compensation", "migration_fix", "other"]
    reason: Annotated[str, Field(max_length=500)] | None = None
    operator: Operator


class DecisionIn(Strict):
    operator: Operator


class AdjustmentRead(BaseModel):
    status: str
    request_id: int | None
    entry_id: int | None
    balance: BalanceRead


def _actor(caller: Caller, operator: str) -> str:
    # A client names the person at its side; a staff user calling through their session is that
    # person, named as the console names them.
    return caller.actor if caller.staff is not None else f"{caller.actor}/{operator}"


@router.post("/members/{member_id}/adjustments", status_code=201, response_model=AdjustmentRead)
def adjust(
    member_id: Id,
    body: AdjustmentIn,
    request: Request,
    caller: AdjustmentRequester,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Add (positive) or take (negative) points with a reason; above the programme's threshold
    the adjustment waits for approval."""

    def action() -> tuple[int, AdjustmentRead]:
        member = access.member(session, caller, member_id)
        policy = partners.policies(session, member.program_id).ledger
        outcome = adjustments.request_adjustment(
            session,
            member_id=member.id,
            points=body.points,
            reason_code=body.reason_code,
            reason=body.reason,
            requested_by=_actor(caller, body.operator),
            policy=policy,
            as_of=utcnow(),
        )
        access.record(
            session,
            caller,
            action="points.adjust_request",
            target=f"member:{member.id}",
            details={
                "points": body.points,
                "reason_code": body.reason_code,
                "status": str(outcome.status),
                "request_id": outcome.request_id,
                "entry_id": outcome.posted.entry_id if outcome.posted else None,
            },
            as_of=utcnow(),
        )
        view = ledger.balance(session, member_id=member.id, policy=policy, as_of=utcnow())
        return 201, AdjustmentRead(
            status=str(outcome.status),
            request_id=outcome.request_id,
            entry_id=outcome.posted.entry_id if outcome.posted else None,
            balance=balance_read(member.id, view),
        )

    return idempotent(session, request, caller, key, body, action, "adjust")


def _decide(
    session: SessionDep,
    request: Request,
    caller: Caller,
    key: str,
    request_id: int,
    body: DecisionIn,
    approve: bool,
) -> JSONResponse:
    def action() -> tuple[int, AdjustmentRead]:
        pending = access.adjustment_request(session, caller, request_id)
        member = access.member(session, caller, pending.member_id)
        policy = partners.policies(session, member.program_id).ledger
        entry_id = None
        if approve:
            posted = adjustments.approve_adjustment(
                session,
                request_id=request_id,
                approver=_actor(caller, body.operator),
                policy=policy,
                as_of=utcnow(),
            )
            entry_id = posted.entry_id
        else:
            adjustments.reject_adjustment(
                session,
                request_id=request_id,
                decided_by=_actor(caller, body.operator),
                as_of=utcnow(),
            )
        decided = {"entry_id": entry_id} if approve else {}
        access.record(
            session,
            caller,
            action="points.adjust_approve" if approve else "points.adjust_reject",
            target=f"member:{member.id}",
            details={
                "request_id": request_id,
                "requested_by": pending.requested_by,
                "points": pending.points,
                **decided,
            },
            as_of=utcnow(),
        )
        view = ledger.balance(session, member_id=member.id, policy=policy, as_of=utcnow())
        return 200, AdjustmentRead(
            status="approved" if approve else "rejected",
            request_id=request_id,
            entry_id=entry_id,
            balance=balance_read(member.id, view),
        )

    return idempotent(session, request, caller, key, body, action, "adjust")


@router.post("/adjustments/{request_id}/approve", response_model=AdjustmentRead)
def approve(
    request_id: Id,
    body: DecisionIn,
    request: Request,
    caller: AdjustmentApprover,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Approve a pending adjustment (by someone other than its requester): it posts now."""
    return _decide(session, request, caller, key, request_id, body, approve=True)


@router.post("/adjustments/{request_id}/reject", response_model=AdjustmentRead)
def reject(
    request_id: Id,
    body: DecisionIn,
    request: Request,
    caller: AdjustmentApprover,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Turn a pending adjustment down."""
    return _decide(session, request, caller, key, request_id, body, approve=False)

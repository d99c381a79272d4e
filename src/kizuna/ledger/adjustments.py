"""Staff adjustments: points added or taken by hand, with a reason, under maker–checker.

An adjustment is an `adjust` journal entry carrying a reason code (goodwill, correction,
compensation, migration_fix, or other with a free-text reason). Up to the programme's
`approval_threshold` points it posts at once; above it, it waits as an AdjustmentRequest until
a second person approves it (never the requester) or someone rejects it. A positive adjustment
makes a standard lot; a negative one takes points in redemption order and is refused whole when
the member has too few (it never creates debt).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, KizunaError, NotFound, Unprocessable
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType, LedgerPolicy
from kizuna.ledger.errors import ErrorCode
from kizuna.ledger.models import AdjustmentRequest, PointAccount
from kizuna.outbox.service import publish
from kizuna.rules.domain import BreakdownRow


class ReasonCode(StrEnum):
    GOODWILL = "goodwill"  # お詫び・サービス
    CORRECTION = "correction"  # 誤付与・誤利用の訂正
    COMPENSATION = "compensation"  # 補償
    MIGRATION_FIX = "migration_fix"  # 移行データの修正
    OTHER = "other"  # その他 (理由の記入が必要)


class AdjustmentStatus(StrEnum):
    POSTED = "posted"  # under the threshold: posted at once, no request kept
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AdjustmentOutcome:
    """What a request did: posted at once, or stored pending approval."""

    status: AdjustmentStatus
    request_id: int | None = None
    posted: ledger.Posted | None = None


def _reason(code: str, reason: str | None) -> tuple[ReasonCode, str | None]:
    try:
        reason_code = ReasonCode(code)
    except ValueError:
        raise Unprocessable(
            ErrorCode.INVALID_REASON_CODE,
            f"unknown reason code {code!r}",
            allowed=[str(item) for item in ReasonCode],
        ) from None
    text = (reason or "").strip() or None
    if reason_code is ReasonCode.OTHER and text is None:
        raise Unprocessable(ErrorCode.REASON_REQUIRED, "reason code 'other' needs a reason")
    return reason_code, text


def request_adjustment(
    session: Session,
    *,
    member_id: int,
    points: int,
    reason_code: str,
    requested_by: str,
    policy: LedgerPolicy,
    as_of: datetime,
    reason: str | None = None,
) -> AdjustmentOutcome:
    """Adjust a member's points by `points` (signed): post now, or queue it for approval."""
    if points == 0:
        raise KizunaError(
            ErrorCode.INVALID_POINTS, "an adjustment needs a non-zero number of points"
        )
    code, text = _reason(reason_code, reason)
    if abs(points) <= policy.approval_threshold:
        posted = _post(
            session,
            member_id=member_id,
            points=points,
            reason_code=code,
            reason=text,
            actor=requested_by,
            policy=policy,
            as_of=as_of,
        )
        return AdjustmentOutcome(AdjustmentStatus.POSTED, posted=posted)
    if session.get(PointAccount, member_id) is None:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
    request = AdjustmentRequest(
        member_id=member_id,
        points=points,
        reason_code=str(code),
        reason=text,
        requested_by=requested_by,
        requested_at=as_of,
        status=str(AdjustmentStatus.PENDING),
    )
    session.add(request)
    session.flush()
    return AdjustmentOutcome(AdjustmentStatus.PENDING, request_id=request.id)


def _pending(session: Session, request_id: int) -> AdjustmentRequest:
    request = session.scalars(
        select(AdjustmentRequest).where(AdjustmentRequest.id == request_id).with_for_update()
    ).one_or_none()
    if request is None:
        raise NotFound(ErrorCode.ADJUSTMENT_NOT_FOUND, f"adjustment request {request_id} not found")
    if request.status != AdjustmentStatus.PENDING:
        raise Conflict(
            ErrorCode.ADJUSTMENT_ALREADY_DECIDED,
            f"adjustment request {request_id} is already {request.status}",
        )
    return request


def approve_adjustment(
    session: Session, *, request_id: int, approver: str, policy: LedgerPolicy, as_of: datetime
) -> ledger.Posted:
    """Post a pending adjustment on a second person's word; never the requester's own."""
    request = _pending(session, request_id)
    if approver == request.requested_by:
        raise KizunaError(
            ErrorCode.SELF_APPROVAL,
            "an adjustment must be approved by someone other than its requester",
            status=403,
        )
    posted = _post(
        session,
        member_id=request.member_id,
        points=request.points,
        reason_code=ReasonCode(request.reason_code),
        reason=request.reason,
        actor=request.requested_by,
        policy=policy,
        as_of=as_of,
    )
    request.status = str(AdjustmentStatus.APPROVED)
    request.decided_by = approver
    request.decided_at = as_of
    request.entry_id = posted.entry_id
    session.flush()
    return posted


def reject_adjustment(
    session: Session, *, request_id: int, decided_by: str, as_of: datetime
) -> AdjustmentRequest:
    """Turn a pending adjustment down (the requester may withdraw their own)."""
    request = _pending(session, request_id)
    request.status = str(AdjustmentStatus.REJECTED)
    request.decided_by = decided_by
    request.decided_at = as_of
    session.flush()
    return request


def _post(
    session: Session,
    *,
    member_id: int,
    points: int,
    reason_code: ReasonCode,
    reason: str | None,
    actor: str,
    policy: LedgerPolicy,
    as_of: datetime,
) -> ledger.Posted:
    context = ledger.Context(actor=actor, reason_code=str(reason_code), reason=reason)
    if points > 0:
        posted = ledger.earn(
            session,
            member_id=member_id,
            rows=[BreakdownRow(rule=f"adjust:{reason_code}", label="調整", points=points)],
            policy=policy,
            occurred_at=as_of,
            as_of=as_of,
            context=context,
            entry_type=EntryType.ADJUST,
        )
        assert posted is not None  # points > 0
    else:
        posted = ledger.redeem(
            session,
            member_id=member_id,
            points=-points,
            policy=policy,
            occurred_at=as_of,
            as_of=as_of,
            context=context,
            entry_type=EntryType.ADJUST,
        )
    publish(
        session,
        event_type="points.adjusted",
        payload={
            "member_id": member_id,
            "points": points,
            "reason_code": str(reason_code),
            "entry_id": posted.entry_id,
        },
        as_of=as_of,
        member_id=member_id,
    )
    return posted

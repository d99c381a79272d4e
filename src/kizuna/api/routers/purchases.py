"""`/v1/purchases`: quote, commit (earn and redeem at once), EC orders with pending points and their
confirmation, and returns. A client acts only at its own partner's stores."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kizuna.api.deps import (
    DatabaseDep,
    IdempotencyKey,
    PurchasesReader,
    PurchasesWriter,
    ReadSessionDep,
    on_commit_thread,
)
from kizuna.api.idempotent import idempotent_write
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import (
    ConfirmIn,
    ConfirmRead,
    EcPurchaseIn,
    PurchaseDetail,
    PurchaseIn,
    PurchaseRead,
    QuoteRead,
    ReturnIn,
    ReturnRead,
    balance_read,
    breakdown_read,
)
from kizuna.clients import access
from kizuna.clients.domain import ClientIdentity
from kizuna.core.clock import utcnow
from kizuna.core.errors import NotFound
from kizuna.db.database import Database
from kizuna.db.idempotency import KeyUse
from kizuna.db.prepared import Call, run_checks
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.purchases.errors import ErrorCode as PurchaseError
from kizuna.rules.domain import PurchaseLine

router = APIRouter(prefix="/v1/purchases", tags=["purchases"], responses=ERROR_RESPONSES)


def purchase_request(
    session: Session, client: ClientIdentity, body: PurchaseIn, *, offline: bool = False
) -> PurchaseRequest:
    """The purchases service's request from the API body, after the access checks."""
    access.purchase_parties(session, client, member_id=body.member_id, store_id=body.store_id)
    return _request(body, offline=offline)


def _request(body: PurchaseIn, *, offline: bool = False) -> PurchaseRequest:
    return PurchaseRequest(
        member_id=body.member_id,
        store_id=body.store_id,
        receipt_no=body.receipt_no,
        occurred_at=body.occurred_at or utcnow(),
        lines=[PurchaseLine(**line.model_dump()) for line in body.lines],
        redeem_points=body.redeem_points,
        channel=body.channel,
        pending_until=body.available_at if isinstance(body, EcPurchaseIn) else None,
        offline=offline,
    )


def purchase_read(result: purchases.PurchaseResult) -> PurchaseRead:
    """The API shape of a committed purchase."""
    return PurchaseRead(
        purchase_id=result.purchase_id,
        member_id=result.member_id,
        earned=result.earned,
        redeemed=result.redeemed,
        pending=result.pending,
        breakdown=breakdown_read(result.breakdown),
        balance=balance_read(result.member_id, result.balance),
    )


@router.get("", response_model=PurchaseDetail)
def get_purchase(
    client: PurchasesReader,
    session: ReadSessionDep,
    store_id: Annotated[int, Query(ge=1, le=2**62)],
    receipt_no: Annotated[str, Query(min_length=1, max_length=100)],
) -> PurchaseDetail:
    """A receipt as recorded, with what has been returned and restored so far."""
    access.store(session, client, store_id)
    found = purchases.find_purchase(session, store_id=store_id, receipt_no=receipt_no)
    if found is None:
        raise NotFound(PurchaseError.PURCHASE_NOT_FOUND, f"no purchase {receipt_no} at this store")
    return PurchaseDetail(
        purchase_id=found.id,
        member_id=found.member_id,
        store_id=found.store_id,
        receipt_no=found.receipt_no,
        channel=found.channel,
        status=found.status,
        occurred_at=found.occurred_at,
        total_amount=found.total_amount,
        refunded_amount=found.refunded_amount,
        points_used=found.points_used,
        points_restored=found.points_restored,
        lines=found.lines,
        returned_quantities=found.returned_quantities,
    )


@router.post("/quote", response_model=QuoteRead)
def quote(body: PurchaseIn, client: PurchasesWriter, session: ReadSessionDep) -> QuoteRead:
    """What the purchase would earn, rule by rule, and whether the redemption would go through;
    nothing is written."""
    request = purchase_request(session, client, body)
    result = purchases.quote_purchase(session, request=request, as_of=utcnow())
    return QuoteRead(
        earned=result.earned,
        breakdown=breakdown_read(result.breakdown),
        redeemable=result.redeemable,
        balance=balance_read(body.member_id, result.balance),
    )


def _commit(request: Request, client: ClientIdentity, key: str, body: PurchaseIn) -> JSONResponse:
    # The transaction is opened by `idempotent_write` in the route's own thread rather than by a
    # session dependency (FastAPI runs a sync dependency's entry and exit in the thread pool apart
    # from the route: two more thread hops on the busiest route of a till's day).
    def action(session: Session, key: KeyUse) -> tuple[int, PurchaseRead]:
        read: PurchaseRead | None = None

        def record(result: purchases.PurchaseResult) -> list[Call]:
            nonlocal read
            read = purchase_read(result)
            return [key.record((201, read.model_dump(mode="json")))]

        # The key's look-up and the access check go with the member's lock; the key's record and
        # the COMMIT with the receipt's writes: three round trips in all.
        result = purchases.commit_purchase(
            session,
            request=_request(body),
            as_of=utcnow(),
            actor=client.actor,
            checks=[
                *key.checks,
                access.purchase_parties_check(
                    client, member_id=body.member_id, store_id=body.store_id
                ),
            ],
            then=record,
            commit=True,
        )
        return 201, read or purchase_read(result)

    database: Database = request.app.state.database
    return idempotent_write(database, request, client, key, body, action, "purchase")


@router.post("", status_code=201, response_model=PurchaseRead)
async def commit(
    body: PurchaseIn, request: Request, client: PurchasesWriter, key: IdempotencyKey
) -> JSONResponse:
    """Record a receipt: redeem `redeem_points` and earn what the rules give, in one transaction."""
    return await on_commit_thread(request, partial(_commit, request, client, key, body))


@router.post("/ec", status_code=201, response_model=PurchaseRead)
async def commit_ec(
    body: EcPurchaseIn, request: Request, client: PurchasesWriter, key: IdempotencyKey
) -> JSONResponse:
    """Record an EC order whose points stay pending until `available_at` (or confirmation)."""
    return await on_commit_thread(request, partial(_commit, request, client, key, body))


@router.post("/confirm", response_model=ConfirmRead)
def confirm(
    body: ConfirmIn,
    request: Request,
    client: PurchasesWriter,
    key: IdempotencyKey,
    database: DatabaseDep,
) -> JSONResponse:
    """The EC order shipped: its pending points become available now."""

    def action(session: Session, key: KeyUse) -> tuple[int, ConfirmRead]:
        run_checks(session, key.checks)
        access.store(session, client, body.store_id)
        points = returns.confirm_purchase(
            session, store_id=body.store_id, receipt_no=body.receipt_no, as_of=utcnow()
        )
        return 200, ConfirmRead(
            store_id=body.store_id, receipt_no=body.receipt_no, points_confirmed=points
        )

    return idempotent_write(database, request, client, key, body, action, "confirm")


@router.post("/returns", response_model=ReturnRead)
def return_purchase(
    body: ReturnIn,
    request: Request,
    client: PurchasesWriter,
    key: IdempotencyKey,
    database: DatabaseDep,
) -> JSONResponse:
    """A full (no `lines`) or partial return: restore redeemed points, reverse the earn."""

    def action(session: Session, key: KeyUse) -> tuple[int, ReturnRead]:
        run_checks(session, key.checks)
        access.store(session, client, body.store_id)
        result = returns.return_purchase(
            session,
            store_id=body.store_id,
            receipt_no=body.receipt_no,
            lines=[ReturnLine(item.line_no, item.quantity) for item in body.lines]
            if body.lines is not None
            else None,
            restore_points=body.restore_points,
            as_of=utcnow(),
            actor=client.actor,
        )
        return 200, ReturnRead(
            purchase_id=result.purchase_id,
            member_id=result.member_id,
            refunded_amount=result.refunded_amount,
            points_restored=result.points_restored,
            points_reversed=result.points_reversed,
            debt_added=result.debt_added,
            status=result.status,
            balance=balance_read(result.member_id, result.balance),
        )

    return idempotent_write(database, request, client, key, body, action, "return")

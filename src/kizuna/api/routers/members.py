"""`/v1/members`: sign-up, lookup by identifier, balance, journal, lots, and the app's QR token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kizuna.api import queries
from kizuna.api.deps import (
    IdempotencyKey,
    MembersReader,
    MembersWriter,
    QrIssuer,
    ReadSessionDep,
    SessionDep,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import (
    BalanceRead,
    Id,
    IdentifierType,
    IdentifierValue,
    JournalEntryRead,
    JournalPage,
    LotRead,
    MemberCreate,
    MemberRead,
    QrResolve,
    QrTokenRead,
    balance_read,
)
from kizuna.clients import access
from kizuna.clients import service as clients
from kizuna.core.clock import utcnow
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType, redemption_key
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.outbox.service import publish
from kizuna.partners import service as partners

router = APIRouter(prefix="/v1/members", tags=["members"], responses=ERROR_RESPONSES)


def _read(member: Member) -> MemberRead:
    return MemberRead(
        id=member.id,
        status=member.status,
        joined_at=member.joined_at,
        join_store_id=member.join_store_id,
        join_channel=member.join_channel,
        merged_into_id=member.merged_into_id,
    )


@router.post("", status_code=201, response_model=MemberRead)
def create_member(
    body: MemberCreate,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Sign a member up with the fewest fields; identifiers must be free."""

    def action() -> tuple[int, MemberRead]:
        as_of = utcnow()
        if body.join_store_id is not None:
            access.store(session, client, body.join_store_id)
        member = members.create_member(
            session,
            program_id=client.program_id,
            joined_at=as_of,
            identifiers={item.type: item.value for item in body.identifiers},
            join_store_id=body.join_store_id,
            join_channel=body.join_channel,
        )
        publish(
            session,
            event_type="member.created",
            payload={"member_id": member.id, "join_channel": member.join_channel},
            as_of=as_of,
            partner_id=client.partner_id,
            member_id=member.id,
        )
        return 201, _read(member)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/lookup", response_model=MemberRead)
def lookup_member(
    client: MembersReader,
    session: ReadSessionDep,
    type: Annotated[IdentifierType, Query(description="card, phone, email, line, app, …")],
    value: Annotated[IdentifierValue, Query()],
) -> MemberRead:
    """The member an identifier (card number, phone, e-mail…) belongs to."""
    found = members.find_by_identifier(session, kind=type, value=value)
    return _read(access.member(session, client, found.id))


@router.post("/identify", response_model=MemberRead)
def identify_by_qr(
    body: QrResolve,
    request: Request,
    client: MembersReader,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Resolve the QR token shown by a member's app at the till; the token is used up."""

    def action() -> tuple[int, MemberRead]:
        member_id = clients.resolve_qr_token(session, token=body.token, as_of=utcnow())
        return 200, _read(access.member(session, client, member_id))

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/{member_id}", response_model=MemberRead)
def get_member(member_id: Id, client: MembersReader, session: ReadSessionDep) -> MemberRead:
    """A member's status and where they joined."""
    return _read(access.member(session, client, member_id))


@router.get("/{member_id}/balance", response_model=BalanceRead)
def get_balance(member_id: Id, client: MembersReader, session: ReadSessionDep) -> BalanceRead:
    """Available, pending, by kind, debt and the next expiring amounts."""
    member = access.member(session, client, member_id)
    policy = partners.policies(session, member.program_id).ledger
    view = ledger.balance(session, member_id=member.id, policy=policy, as_of=utcnow())
    return balance_read(member.id, view)


@router.get("/{member_id}/journal", response_model=JournalPage)
def get_journal(
    member_id: Id,
    client: MembersReader,
    session: ReadSessionDep,
    type: Annotated[EntryType | None, Query(description="only entries of this type")] = None,
    occurred_from: Annotated[datetime | None, Query(alias="from")] = None,
    occurred_to: Annotated[datetime | None, Query(alias="to")] = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JournalPage:
    """The member's journal (with the members merged into it), newest first; a partner's client
    sees its own partner's entries and those of no partner."""
    member = access.member(session, client, member_id)
    rows, next_cursor = queries.journal_page(
        session,
        member_ids=members.history_member_ids(session, member.id),
        partner_id=None if client.is_operator else client.partner_id,
        entry_type=str(type) if type else None,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        after_cursor=cursor,
        limit=limit,
    )
    items = [
        JournalEntryRead(
            id=row.id,
            type=row.entry_type,
            amount=row.amount,
            debt_change=row.debt_change,
            occurred_at=row.occurred_at,
            recorded_at=row.recorded_at,
            partner_id=row.partner_id,
            store_id=row.store_id,
            channel=row.channel,
            external_ref=row.external_ref,
            reason_code=row.reason_code,
            reverses_entry_id=row.reverses_entry_id,
            breakdown=row.breakdown,
        )
        for row in rows
    ]
    return JournalPage(items=items, next_cursor=next_cursor)


@router.get("/{member_id}/lots", response_model=list[LotRead])
def get_lots(member_id: Id, client: MembersReader, session: ReadSessionDep) -> list[LotRead]:
    """The member's lots that still hold spendable or pending points, in redemption order."""
    member = access.member(session, client, member_id)
    now = utcnow()
    lots = [lot for lot in ledger.open_lots(session, member.id) if not lot.is_expired(now)]
    return [
        LotRead(
            id=lot.id,
            kind=str(lot.kind),
            amount=lot.amount,
            remaining=lot.remaining,
            earned_at=lot.earned_at,
            available_at=lot.available_at,
            expires_at=lot.expires_at,
            state="pending" if lot.is_pending(now) else "available",
        )
        for lot in sorted(lots, key=redemption_key)
    ]


@router.post("/{member_id}/qr-token", status_code=201, response_model=QrTokenRead)
def issue_qr_token(
    member_id: Id, request: Request, client: QrIssuer, key: IdempotencyKey, session: SessionDep
) -> JSONResponse:
    """A fresh single-use QR token for the member's app (earlier ones stop working)."""

    def action() -> tuple[int, QrTokenRead]:
        member = access.member(session, client, member_id)
        token, expires_at = clients.issue_qr_token(
            session, member_id=member.id, client_id=client.id, as_of=utcnow()
        )
        return 201, QrTokenRead(token=token, expires_at=expires_at)

    return idempotent(session, request=request, client=client, key=key, body=None, action=action)

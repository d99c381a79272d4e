"""Who may touch what: a client acts only within its programme, and only at its partner's stores
(a store or terminal client only at its own store). Anything outside is reported as not found, so
that a client cannot even learn that another partner's data exists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from kizuna.clients.domain import ClientIdentity
from kizuna.core.errors import NotFound
from kizuna.db.prepared import Call, Check, Prepared
from kizuna.ledger.errors import ErrorCode as LedgerError
from kizuna.ledger.models import AdjustmentRequest
from kizuna.members.models import Member
from kizuna.partners.errors import ErrorCode as PartnerError
from kizuna.partners.models import Store

MEMBER_NOT_FOUND = "member_not_found"


def member(session: Session, client: ClientIdentity, member_id: int) -> Member:
    """Member `member_id` if it belongs to the client's programme."""
    found = session.get(Member, member_id)
    if found is None or found.program_id != client.program_id:
        raise NotFound(MEMBER_NOT_FOUND, f"member {member_id} not found")
    return found


def store(session: Session, client: ClientIdentity, store_id: int) -> Store:
    """Store `store_id` if the client may act there."""
    found = session.get(Store, store_id)
    allowed = found is not None and (
        found.partner_id == client.partner_id
        if client.store_id is None
        else found.id == client.store_id
    )
    if found is None or not allowed:
        raise NotFound(PartnerError.STORE_NOT_FOUND, f"store {store_id} not found")
    return found


# Both parties of a purchase in one round trip (every till request asks); the store is
# outer-joined so that a missing one still leaves the member's row.
_PURCHASE_PARTIES = Prepared(
    select(Member.program_id, Store.id, Store.partner_id)
    .select_from(Member)
    .outerjoin(Store, Store.id == bindparam("store_id"))
    .where(Member.id == bindparam("member_id")),
    ("member_id", "store_id"),
)


def purchase_parties(
    session: Session, client: ClientIdentity, *, member_id: int, store_id: int
) -> None:
    """`member` and `store` for a purchase, in one statement: the member must be in the client's
    programme and the store one where the client may act."""
    purchase_parties_check(client, member_id=member_id, store_id=store_id).run(session)


def purchase_parties_check(client: ClientIdentity, *, member_id: int, store_id: int) -> Check:
    """`purchase_parties` as a check to run with other statements (`commit_purchase` runs it in
    its first round trip)."""

    def verify(rows: list[tuple[Any, ...]]) -> None:
        program_id, found_store, partner_id = rows[0] if rows else (None, None, None)
        if program_id is None or program_id != client.program_id:
            raise NotFound(MEMBER_NOT_FOUND, f"member {member_id} not found")
        allowed = found_store is not None and (
            partner_id == client.partner_id
            if client.store_id is None
            else found_store == client.store_id
        )
        if not allowed:
            raise NotFound(PartnerError.STORE_NOT_FOUND, f"store {store_id} not found")

    return Check(Call(_PURCHASE_PARTIES, {"member_id": member_id, "store_id": store_id}), verify)


def adjustment_request(
    session: Session, client: ClientIdentity, request_id: int
) -> AdjustmentRequest:
    """A pending-or-decided adjustment request of a member of the client's programme."""
    found = session.get(AdjustmentRequest, request_id)
    if found is None:
        raise NotFound(
            LedgerError.ADJUSTMENT_NOT_FOUND, f"adjustment request {request_id} not found"
        )
    try:
        member(session, client, found.member_id)
    except NotFound:
        raise NotFound(
            LedgerError.ADJUSTMENT_NOT_FOUND, f"adjustment request {request_id} not found"
        ) from None
    return found

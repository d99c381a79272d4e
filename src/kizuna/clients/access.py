"""Who may touch what: a client acts only within its programme, and only at its partner's stores
(a store or terminal client only at its own store). Anything outside is reported as not found, so
that a client cannot even learn that another partner's data exists."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kizuna.clients.domain import ClientIdentity
from kizuna.core.errors import NotFound
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

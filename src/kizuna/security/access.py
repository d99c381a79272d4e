"""Who may reach what: staff scopes, and one `Caller` for the admin API's two kinds of caller.

A staff user's *scope* (`domain.Scope`) bounds what they reach: store staff only the members of
their store (joined there, or with points activity there), partner managers only their partner's
members, API clients, webhooks and batches; every other role the whole installation. The console
and the admin API both ask the functions here, so one rule holds on both.

An admin API route is called either by an API client with its key, or by a staff user through
their console session. `Caller` carries whichever it is; the functions below take a caller and
answer for either (a client through `kizuna.clients.access`, bound to its programme and partner).
Anything out of reach is reported as *not found*, so that nobody learns that it exists. A staff
user's actions are written to the audit log with the very entries the console writes (`record`);
a client's actions are named in the journal and the idempotency store, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from kizuna.batches.errors import ErrorCode as BatchError
from kizuna.batches.models import PurchaseBatch
from kizuna.clients import access as client_access
from kizuna.clients.domain import ClientIdentity
from kizuna.clients.errors import ErrorCode as ClientError
from kizuna.clients.models import ApiClient
from kizuna.core.errors import NotFound, Unprocessable
from kizuna.ledger.errors import ErrorCode as LedgerError
from kizuna.ledger.models import AdjustmentRequest, JournalEntry
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.partners.errors import ErrorCode as PartnerError
from kizuna.partners.models import Partner, Program, Store
from kizuna.security import audit
from kizuna.security.domain import Scope
from kizuna.security.errors import ErrorCode
from kizuna.security.service import Staff

# --- a staff user's scope ------------------------------------------------------------------------


def in_scope(session: Session, *, member: Member, scope: Scope) -> bool:
    """True when a staff user with `scope` may see `member`."""
    if scope.unrestricted:
        return True
    if scope.store_id is not None:
        if member.join_store_id == scope.store_id:
            return True
        activity = JournalEntry.store_id == scope.store_id
    else:
        joined_at_partner = session.scalar(
            select(Store.partner_id).where(Store.id == member.join_store_id)
        )
        if joined_at_partner is not None and joined_at_partner == scope.partner_id:
            return True
        activity = or_(
            JournalEntry.partner_id == scope.partner_id,
            JournalEntry.store_id.in_(select(Store.id).where(Store.partner_id == scope.partner_id)),
        )
    ids = members.history_member_ids(session, member.id)
    return bool(session.scalar(select(exists().where(JournalEntry.member_id.in_(ids), activity))))


def visible_member(session: Session, *, member_id: int, scope: Scope) -> Member | None:
    """Member `member_id` if it exists and `scope` may see it, else None (reported as not found)."""
    member = session.get(Member, member_id)
    if member is None or not in_scope(session, member=member, scope=scope):
        return None
    return member


def reaches_partner(scope: Scope, partner_id: int) -> bool:
    """True when a staff user with `scope` may see the partner's own data (its API clients,
    webhooks and batches): everyone unrestricted, a partner manager their partner's, store staff
    none (a store is not its partner)."""
    if scope.unrestricted:
        return True
    return scope.store_id is None and scope.partner_id == partner_id


def _bound_partner(session: Session, scope: Scope) -> int | None:
    if scope.store_id is not None:
        return session.scalar(select(Store.partner_id).where(Store.id == scope.store_id))
    return scope.partner_id


# --- the caller of an admin API route ----------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An API client (by its key) or a staff user (by their session) calling an admin route.

    `program_id` is the programme the call acts in: a client's own; a scoped staff user's store's
    or partner's; for other staff the programme they named, or the only one there is (else None,
    and a route that needs one says `program_required`).
    """

    client: ClientIdentity | None = None
    staff: Staff | None = None
    program_id: int | None = None

    @classmethod
    def of_client(cls, client: ClientIdentity) -> Caller:
        return cls(client=client, program_id=client.program_id)

    @property
    def id(self) -> str:
        """Whose idempotency keys these are (a client's id, as before; a staff user's own)."""
        if self.client is not None:
            return str(self.client.id)
        return f"staff:{self._staff.id}"

    @property
    def actor(self) -> str:
        """How journal entries, campaigns and the audit log name the caller."""
        return self.client.actor if self.client is not None else self._staff.actor

    @property
    def bound(self) -> bool:
        """True when the caller is held to one programme (clients and scoped staff)."""
        return self.client is not None or not self._staff.scope.unrestricted

    @property
    def _staff(self) -> Staff:
        assert self.staff is not None, "a caller is a client or a staff user"
        return self.staff


def staff_caller(session: Session, *, staff: Staff, program_id: int | None = None) -> Caller:
    """The caller a staff user's session makes: held to their store's or partner's programme when
    scoped; otherwise in programme `program_id` when named (`program_not_found` if there is no
    such programme), else in the only programme there is."""
    partner_id = _bound_partner(session, staff.scope)
    if partner_id is not None:
        bound = session.scalar(select(Partner.program_id).where(Partner.id == partner_id))
        return Caller(staff=staff, program_id=bound)
    if program_id is not None:
        if session.get(Program, program_id) is None:
            raise NotFound(PartnerError.PROGRAM_NOT_FOUND, f"programme {program_id} not found")
        return Caller(staff=staff, program_id=program_id)
    only = session.scalars(select(Program.id).order_by(Program.id).limit(2)).all()
    return Caller(staff=staff, program_id=only[0] if len(only) == 1 else None)


def program(caller: Caller) -> int:
    """The programme the call acts in, or `program_required` (staff with several to choose from)."""
    if caller.program_id is None:
        raise Unprocessable(
            ErrorCode.PROGRAM_REQUIRED,
            "there are several programmes: name one with the Kizuna-Program header",
        )
    return caller.program_id


def reaches_program(caller: Caller, program_id: int) -> bool:
    """True when the caller may act on things of programme `program_id`."""
    return not caller.bound or caller.program_id == program_id


def member(session: Session, caller: Caller, member_id: int) -> Member:
    """Member `member_id` if the caller may reach them, else `member_not_found`."""
    if caller.client is not None:
        return client_access.member(session, caller.client, member_id)
    assert caller.staff is not None
    found = visible_member(session, member_id=member_id, scope=caller.staff.scope)
    if found is None:
        raise NotFound(LedgerError.MEMBER_NOT_FOUND, f"member {member_id} not found")
    return found


def adjustment_request(session: Session, caller: Caller, request_id: int) -> AdjustmentRequest:
    """An adjustment request of a member the caller may reach, else `adjustment_not_found`."""
    if caller.client is not None:
        return client_access.adjustment_request(session, caller.client, request_id)
    assert caller.staff is not None
    found = session.get(AdjustmentRequest, request_id)
    scope = caller.staff.scope
    if found is None or visible_member(session, member_id=found.member_id, scope=scope) is None:
        raise NotFound(
            LedgerError.ADJUSTMENT_NOT_FOUND, f"adjustment request {request_id} not found"
        )
    return found


def visible_pairs(session: Session, caller: Caller, pairs: list[Any]) -> list[Any]:
    """The pairs (with `member_id` and `other_id`) of which the caller may see both members."""
    if caller.client is not None or caller.staff is None or caller.staff.scope.unrestricted:
        return pairs
    scope = caller.staff.scope
    seen: dict[int, bool] = {}

    def visible(member_id: int) -> bool:
        if member_id not in seen:
            seen[member_id] = visible_member(session, member_id=member_id, scope=scope) is not None
        return seen[member_id]

    return [pair for pair in pairs if visible(pair.member_id) and visible(pair.other_id)]


def api_client(session: Session, caller: Caller, client_id: int | None) -> int:
    """The API client whose webhooks a call concerns: a client always its own (naming another is
    `client_not_found`); a staff user the one they name (`client_required` if none), within
    their scope."""
    if caller.client is not None:
        if client_id is not None and client_id != caller.client.id:
            raise NotFound(ClientError.CLIENT_NOT_FOUND, f"API client {client_id} not found")
        return caller.client.id
    assert caller.staff is not None
    if client_id is None:
        raise Unprocessable(
            ErrorCode.CLIENT_REQUIRED, "name the API client with the client_id parameter"
        )
    found = session.get(ApiClient, client_id)
    if found is None or not reaches_partner(caller.staff.scope, found.partner_id):
        raise NotFound(ClientError.CLIENT_NOT_FOUND, f"API client {client_id} not found")
    return found.id


def batch_partner(session: Session, caller: Caller, batch_id: int) -> int:
    """The partner whose batch `batch_id` the caller may read: a client's own partner; for staff
    the batch's partner when within their scope, else `batch_not_found`."""
    if caller.client is not None:
        return caller.client.partner_id
    assert caller.staff is not None
    query = select(PurchaseBatch.partner_id).where(PurchaseBatch.id == batch_id)
    partner_id = session.scalar(query)
    if partner_id is None or not reaches_partner(caller.staff.scope, partner_id):
        raise NotFound(BatchError.BATCH_NOT_FOUND, f"batch {batch_id} not found")
    return partner_id


def record(
    session: Session,
    caller: Caller,
    *,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    as_of: datetime,
) -> None:
    """Audit a staff caller's action with the entry the console writes for it (marked `via`
    api); a client's call writes nothing here."""
    if caller.staff is None:
        return
    audit.record(
        session,
        actor=caller.staff.actor,
        action=action,
        target=target,
        details={**(details or {}), "via": "api"},
        as_of=as_of,
    )

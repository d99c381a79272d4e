"""`/v1/members/{id}/…` identity routes: profile, identifiers, cards, consents, merge, withdrawal.

Thin: check the client may see the member (`access.member`), call the members services, shape the
answer. Every mutating route runs once per `Idempotency-Key`; errors are problem+json with the
members area's codes (`card_blocked`, `identifier_taken`, `member_not_active`, …). Merge
candidates and the merge itself are also open to a staff session with `members:merge`
(`security.access` then checks the staff user's scope; the merge service audits the merge).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kizuna.api.deps import (
    IdempotencyKey,
    MembersReader,
    MembersWriter,
    Merger,
    MergeReader,
    ReadSessionDep,
    SessionDep,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.api.schemas import Id
from kizuna.clients import access
from kizuna.clients.domain import ClientIdentity
from kizuna.core.clock import utcnow
from kizuna.members import cards, merge, service, withdrawal
from kizuna.members.domain import Candidate, Profile
from kizuna.members.models import Card, MemberMerge
from kizuna.members.schemas import (
    CandidateList,
    CandidateRead,
    CardBlock,
    CardIssue,
    CardIssued,
    CardRead,
    ConsentList,
    ConsentRead,
    ConsentUpdate,
    IdentifierCreate,
    IdentifierRead,
    MergeRead,
    MergeRequest,
    ProfileFields,
    ProfileRead,
    Removed,
    WithdrawalRead,
    WithdrawRequest,
)
from kizuna.security import access as admin_access

router = APIRouter(prefix="/v1", tags=["identity"], responses=ERROR_RESPONSES)


def _actor(client: ClientIdentity) -> str:
    return f"client:{client.id}"


def _profile(member_id: int, profile: Profile) -> ProfileRead:
    return ProfileRead(member_id=member_id, **profile.fields())


def _card(card: Card) -> CardRead:
    return CardRead(**asdict(cards.view(card)))


def _candidates(found: list[Candidate]) -> CandidateList:
    return CandidateList(candidates=[CandidateRead(**asdict(pair)) for pair in found])


def _merge(record: MemberMerge) -> MergeRead:
    return MergeRead(
        id=record.id,
        survivor_id=record.survivor_id,
        merged_id=record.merged_id,
        score=record.score,
        reasons=record.reasons,
        merged_at=record.merged_at,
        out_entry_id=record.out_entry_id,
        in_entry_id=record.in_entry_id,
        moved=record.moved,
    )


@router.get("/members/{member_id}/profile", response_model=ProfileRead)
def get_profile(member_id: Id, client: MembersReader, session: ReadSessionDep) -> ProfileRead:
    """The member's personal data, decrypted and normalised."""
    access.member(session, client, member_id)
    return _profile(member_id, service.get_profile(session, member_id))


@router.patch("/members/{member_id}/profile", response_model=ProfileRead)
def update_profile(
    member_id: Id,
    body: ProfileFields,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Change the fields sent (null clears one); values are normalised and encrypted."""

    def action() -> tuple[int, ProfileRead]:
        access.member(session, client, member_id)
        changes = body.model_dump(exclude_unset=True)
        updated = service.update_profile(
            session, member_id=member_id, changes=changes, as_of=utcnow()
        )
        return 200, _profile(member_id, updated)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/members/{member_id}/identifiers", response_model=list[IdentifierRead])
def list_identifiers(
    member_id: Id, client: MembersReader, session: ReadSessionDep
) -> list[IdentifierRead]:
    """The member's identifiers; phone, e-mail and card numbers masked."""
    access.member(session, client, member_id)
    return [IdentifierRead(**asdict(view)) for view in service.identifiers_of(session, member_id)]


@router.post("/members/{member_id}/identifiers", status_code=201, response_model=IdentifierRead)
def add_identifier(
    member_id: Id,
    body: IdentifierCreate,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Attach an identifier (normalised; `identifier_taken` if another member has it)."""

    def action() -> tuple[int, IdentifierRead]:
        access.member(session, client, member_id)
        added = service.add_identifier(
            session, member_id=member_id, kind=body.type, value=body.value, as_of=utcnow()
        )
        view = next(v for v in service.identifiers_of(session, member_id) if v.id == added.id)
        return 201, IdentifierRead(**asdict(view))

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.delete("/members/{member_id}/identifiers/{identifier_id}", response_model=Removed)
def remove_identifier(
    member_id: Id,
    identifier_id: Id,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Detach an identifier; its value becomes free for others."""

    def action() -> tuple[int, Removed]:
        access.member(session, client, member_id)
        service.remove_identifier(session, member_id=member_id, identifier_id=identifier_id)
        return 200, Removed(id=identifier_id)

    return idempotent(session, request=request, client=client, key=key, body=None, action=action)


@router.get("/members/{member_id}/cards", response_model=list[CardRead])
def list_cards(member_id: Id, client: MembersReader, session: ReadSessionDep) -> list[CardRead]:
    """The member's cards with their status; numbers masked."""
    access.member(session, client, member_id)
    return [_card(card) for card in cards.cards_of(session, member_id)]


@router.post("/members/{member_id}/cards", status_code=201, response_model=CardIssued)
def issue_card(
    member_id: Id,
    body: CardIssue,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Issue a card of the programme's series; the full number is in this response only."""

    def action() -> tuple[int, CardIssued]:
        access.member(session, client, member_id)
        card, number = cards.issue_card(
            session, member_id=member_id, as_of=utcnow(), activate=body.activate
        )
        return 201, CardIssued(**asdict(cards.view(card)), number=number)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.post("/members/{member_id}/cards/{card_id}/activate", response_model=CardRead)
def activate_card(
    member_id: Id,
    card_id: Id,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Make an issued card usable at the till."""

    def action() -> tuple[int, CardRead]:
        access.member(session, client, member_id)
        cards.get_card(session, card_id, member_id=member_id)
        return 200, _card(cards.activate_card(session, card_id=card_id, as_of=utcnow()))

    return idempotent(session, request=request, client=client, key=key, body=None, action=action)


@router.post("/members/{member_id}/cards/{card_id}/block", response_model=CardRead)
def block_card(
    member_id: Id,
    card_id: Id,
    body: CardBlock,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Block a lost, stolen or damaged card; the till refuses it with `card_blocked`."""

    def action() -> tuple[int, CardRead]:
        access.member(session, client, member_id)
        cards.get_card(session, card_id, member_id=member_id)
        blocked = cards.block_card(session, card_id=card_id, reason=body.reason, as_of=utcnow())
        return 200, _card(blocked)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.post(
    "/members/{member_id}/cards/{card_id}/reissue", status_code=201, response_model=CardIssued
)
def reissue_card(
    member_id: Id,
    card_id: Id,
    body: CardBlock,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """A new card and the old one blocked, in one step; the balance stays with the member."""

    def action() -> tuple[int, CardIssued]:
        access.member(session, client, member_id)
        cards.get_card(session, card_id, member_id=member_id)
        new, number = cards.reissue_card(
            session, card_id=card_id, reason=body.reason, as_of=utcnow()
        )
        return 201, CardIssued(**asdict(cards.view(new)), number=number)

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/members/{member_id}/consents", response_model=ConsentList)
def get_consents(member_id: Id, client: MembersReader, session: ReadSessionDep) -> ConsentList:
    """The consent in force for each channel (email, push, LINE, DM)."""
    access.member(session, client, member_id)
    states = service.consents_of(session, member_id).values()
    return ConsentList(consents=[ConsentRead(**asdict(state)) for state in states])


@router.post("/members/{member_id}/consents", response_model=ConsentRead)
def set_consent(
    member_id: Id,
    body: ConsentUpdate,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Grant or withdraw a consent; it is in force at once and the history is kept."""

    def action() -> tuple[int, ConsentRead]:
        access.member(session, client, member_id)
        state = service.set_consent(
            session,
            member_id=member_id,
            channel=body.channel,
            granted=body.granted,
            source=body.source,
            as_of=utcnow(),
        )
        return 200, ConsentRead(**asdict(state))

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)


@router.get("/members/{member_id}/merge-candidates", response_model=CandidateList)
def member_candidates(member_id: Id, caller: MergeReader, session: ReadSessionDep) -> CandidateList:
    """Members that may be the same person, with a score and the reasons."""
    admin_access.member(session, caller, member_id)
    found = merge.candidates_for(session, member_id=member_id)
    return _candidates(admin_access.visible_pairs(session, caller, found))


@router.get("/merge-candidates", response_model=CandidateList)
def programme_candidates(
    caller: MergeReader,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CandidateList:
    """The programme's likeliest duplicate pairs, best first."""
    found = merge.find_candidates(session, program_id=admin_access.program(caller))
    return _candidates(admin_access.visible_pairs(session, caller, found)[:limit])


@router.post("/members/{member_id}/merge", response_model=MergeRead)
def merge_member(
    member_id: Id,
    body: MergeRequest,
    request: Request,
    caller: Merger,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Merge `merged_id` into this member (confirmed by staff): identifiers, cards, points move."""

    def action() -> tuple[int, MergeRead]:
        admin_access.member(session, caller, member_id)
        admin_access.member(session, caller, body.merged_id)
        pair = merge.score_pair(session, member_id=member_id, other_id=body.merged_id)
        record = merge.merge_members(
            session,
            survivor_id=member_id,
            merged_id=body.merged_id,
            actor=caller.actor,
            as_of=utcnow(),
            score=pair.score,
            reasons=pair.reasons,
        )
        return 200, _merge(record)

    return idempotent(session, request=request, client=caller, key=key, body=body, action=action)


@router.post("/members/{member_id}/withdraw", response_model=WithdrawalRead)
def withdraw_member(
    member_id: Id,
    body: WithdrawRequest,
    request: Request,
    client: MembersWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Withdraw the member (退会): points forfeited, personal data erased, identifiers released."""

    def action() -> tuple[int, WithdrawalRead]:
        access.member(session, client, member_id)
        result = withdrawal.withdraw(
            session, member_id=member_id, actor=_actor(client), as_of=utcnow(), reason=body.reason
        )
        return 200, WithdrawalRead(**asdict(result))

    return idempotent(session, request=request, client=client, key=key, body=body, action=action)

"""Member search, the member page, and a lost card's block-and-reissue in one step."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from kizuna.console.auth import CONSOLE, DatabaseDep, Viewer, require
from kizuna.console.lookup import QueryKind, find_members, guess_kind
from kizuna.console.member_view import member_page
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.members import cards
from kizuna.members.cards import BlockReason
from kizuna.members.models import Member
from kizuna.security import audit
from kizuna.security.access import in_scope, visible_member
from kizuna.security.domain import Permission

router = APIRouter()
Reader = Annotated[Viewer, Depends(require(Permission.MEMBERS_READ))]
CardManager = Annotated[Viewer, Depends(require(Permission.CARDS_MANAGE))]


@router.get("/members")
def search(
    request: Request,
    db: DatabaseDep,
    viewer: Reader,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: QueryKind = QueryKind.AUTO,
) -> Response:
    """Search by card, phone, e-mail, カナ name or member number; one hit opens the member."""
    found: list[Member] = []
    if q.strip():
        used = guess_kind(q) if kind is QueryKind.AUTO else kind
        with db.write() as session:
            found = [
                member
                for member in find_members(session, text=q, kind=used)
                if in_scope(session, member=member, scope=viewer.staff.scope)
            ]
            # The search words are personal data: the log keeps only what kind of search it was.
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="member.search",
                target="members",
                details={"kind": str(used), "results": len(found)},
                as_of=utcnow(),
            )
        if len(found) == 1:
            return redirect(f"{CONSOLE}/members/{found[0].id}")
    return render(
        request,
        "members.html",
        viewer=viewer,
        q=q,
        kind=kind,
        kinds=list(QueryKind),
        results=found,
        searched=bool(q.strip()),
    )


@router.get("/members/{member_id}")
def member(request: Request, db: DatabaseDep, viewer: Reader, member_id: int) -> Response:
    """The member page: profile (masked by role), balance, lots, history, cards."""
    unmasked = viewer.can(Permission.MEMBERS_PII)
    now = utcnow()
    with db.write() as session:
        found = visible_member(session, member_id=member_id, scope=viewer.staff.scope)
        if found is None:
            return render(request, "not_found.html", viewer=viewer, status_code=404)
        page = member_page(session, member=found, unmasked=unmasked, as_of=now)
        audit.record(
            session,
            actor=viewer.staff.actor,
            action="member.view",
            target=f"member:{member_id}",
            details={"unmasked": unmasked},
            as_of=now,
        )
    return render(
        request,
        "member.html",
        viewer=viewer,
        page=page,
        now=now,
        reasons=[BlockReason.LOST, BlockReason.STOLEN, BlockReason.DAMAGED],
    )


@router.post("/members/{member_id}/cards/{card_id}/reissue")
def reissue(
    request: Request,
    db: DatabaseDep,
    viewer: CardManager,
    member_id: int,
    card_id: int,
    reason: Annotated[BlockReason, Form()] = BlockReason.LOST,
) -> Response:
    """Block a lost, stolen or damaged card and issue its replacement, in one step."""
    now = utcnow()
    try:
        with db.write() as session:
            found = visible_member(session, member_id=member_id, scope=viewer.staff.scope)
            card = cards.get_card(session, card_id, member_id=member_id) if found else None
            if found is None or card is None:
                return render(request, "not_found.html", viewer=viewer, status_code=404)
            new, number = cards.reissue_card(session, card_id=card_id, as_of=now, reason=reason)
            audit.record(
                session,
                actor=viewer.staff.actor,
                action="card.reissue",
                target=f"member:{member_id}",
                details={"old_card": card_id, "new_card": new.id, "reason": str(reason)},
                as_of=now,
            )
    except KizunaError as refused:
        return render(
            request, "message.html", viewer=viewer, status_code=refused.status, error=refused.code
        )
    return render(
        request,
        "card_reissued.html",
        viewer=viewer,
        member_id=member_id,
        number=number,
        reason=reason,
    )

"""Merging duplicate members (名寄せ): finding candidate pairs, and the confirmed merge.

Candidates come from the decrypted, normalised profiles of a programme's active members, compared
only within blocks (same phone, e-mail, kana name, birth date, or postal code + initial) and
scored by `domain.compare`. For one member, the blind indexes find the block mates in SQL first.

A merge, confirmed by staff, moves the merged member's identifiers and cards, its points lot by
lot (`ledger.transfer`: `merge_out` / `merge_in`) and its debt to the survivor, fills the
survivor's empty profile fields, gives the survivor the higher of the two ranks
(`tiers.service.after_merge`), marks the merged member `merged` with a pointer, and records the
merge, an outbox event and an audit entry. There is no coupon area yet: coupons will follow from
the `member.merged` event.

The merged member's journal and receipts stay under its own id — they record who did what, and
the receipt's earn, redemption, campaign grants and caps, and the rank it earned at all name that
member, so moving the receipts alone (`UPDATE purchases SET member_id`) would split a receipt from
its own postings. Instead, readers of a person's whole activity follow the merges: rank metrics
sum over everyone merged into the member, `service.history_member_ids` shows the journals
together, and a return of a pre-merge receipt acts on the live survivor (`carried_to`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict
from kizuna.ledger.service import Context
from kizuna.ledger.transfer import transfer_all
from kizuna.members import service
from kizuna.members.domain import (
    CANDIDATE_THRESHOLD,
    Candidate,
    MatchRecord,
    MemberStatus,
    Profile,
    candidate_pairs,
    compare,
    match_record,
)
from kizuna.members.errors import ErrorCode
from kizuna.members.identity import get_member, require_active
from kizuna.members.models import Card, Member, MemberIdentifier, MemberMerge, MemberProfile
from kizuna.outbox.service import publish
from kizuna.privacy import crypto
from kizuna.security.audit import record as audit
from kizuna.tiers import service as tiers

_INDEXES = ("kana_index", "birth_index", "postal_index", "phone_index", "email_index")


_MATCHED = ("name_kana", "name_kanji", "birth_date", "postal_code", "address")


def _match_query() -> Select[Any]:
    """The columns duplicate detection needs: five ciphertexts and the phone/e-mail indexes."""
    columns = [getattr(MemberProfile, f"{name}_enc") for name in _MATCHED]
    return select(
        MemberProfile.member_id, *columns, MemberProfile.phone_index, MemberProfile.email_index
    )


def _record(row: Any) -> MatchRecord:
    # Exact phone and e-mail agreement is read from the blind indexes: no need to decrypt them.
    plain = {
        name: crypto.decrypt_optional(
            getattr(row, f"{name}_enc"), field=service.profile_field(name)
        )
        for name in _MATCHED
    }
    birth = plain.pop("birth_date")
    profile = Profile(**plain, birth_date=date.fromisoformat(birth) if birth else None)
    return replace(
        match_record(row.member_id, profile), phone=row.phone_index, email=row.email_index
    )


def match_records(session: Session, *, program_id: int) -> list[MatchRecord]:
    """What duplicate detection compares, for every active member of the programme."""
    rows = session.execute(
        _match_query()
        .join(Member, Member.id == MemberProfile.member_id)
        .where(Member.program_id == program_id, Member.status == MemberStatus.ACTIVE)
    )
    return [_record(row) for row in rows]


def find_candidates(
    session: Session, *, program_id: int, threshold: float = CANDIDATE_THRESHOLD
) -> list[Candidate]:
    """Candidate duplicate pairs of the programme, best first."""
    return candidate_pairs(match_records(session, program_id=program_id), threshold=threshold)


def candidates_for(
    session: Session, *, member_id: int, threshold: float = CANDIDATE_THRESHOLD
) -> list[Candidate]:
    """Candidate duplicates of one member: its block mates found by blind index, then scored."""
    member = get_member(session, member_id)
    own = session.get(MemberProfile, member_id)
    if own is None:
        return []
    matches = [
        getattr(MemberProfile, name) == getattr(own, name)
        for name in _INDEXES
        if getattr(own, name) is not None
    ]
    if not matches:
        return []
    mates = session.execute(
        _match_query()
        .join(Member, Member.id == MemberProfile.member_id)
        .where(
            Member.program_id == member.program_id,
            Member.status == MemberStatus.ACTIVE,
            MemberProfile.member_id != member_id,
            or_(*matches),
        )
        .limit(1000)
    ).all()
    me = _record(session.execute(_match_query().where(MemberProfile.member_id == member_id)).one())
    found = [compare(me, _record(other)) for other in mates]
    return sorted(
        (c for c in found if c.score >= threshold),
        key=lambda c: (-c.score, c.member_id, c.other_id),
    )


def score_pair(session: Session, *, member_id: int, other_id: int) -> Candidate:
    """The score and reasons of any two members, block mates or not."""
    records = {
        row.member_id: _record(row)
        for row in session.execute(
            _match_query().where(MemberProfile.member_id.in_([member_id, other_id]))
        )
    }
    return compare(
        records.get(member_id, MatchRecord(member_id)), records.get(other_id, MatchRecord(other_id))
    )


def _fill_gaps(survivor: Profile, merged: Profile) -> tuple[Profile, list[str]]:
    """The survivor's profile with empty fields taken from the merged member's."""
    filled = {
        name: getattr(merged, name)
        for name in survivor.fields()
        if getattr(survivor, name) is None and getattr(merged, name) is not None
    }
    return replace(survivor, **filled), sorted(filled)


def merge_members(
    session: Session,
    *,
    survivor_id: int,
    merged_id: int,
    actor: str,
    as_of: datetime,
    score: float | None = None,
    reasons: Sequence[str] = (),
) -> MemberMerge:
    """Merge `merged_id` into `survivor_id` (staff confirmed the pair); see the module docs."""
    survivor = get_member(session, survivor_id)
    merged = get_member(session, merged_id)
    if survivor_id == merged_id or survivor.program_id != merged.program_id:
        raise Conflict(
            ErrorCode.MERGE_NOT_ALLOWED, "only two different members of one programme merge"
        )
    require_active(survivor)
    require_active(merged)
    moved_points = transfer_all(
        session,
        from_member_id=merged_id,
        to_member_id=survivor_id,
        as_of=as_of,
        context=Context(
            actor=actor, reason_code="merge", reason=f"merge {merged_id}→{survivor_id}"
        ),
    )
    identifiers = session.execute(
        update(MemberIdentifier)
        .where(MemberIdentifier.member_id == merged_id)
        .values(member_id=survivor_id)
    )
    cards = session.execute(
        update(Card).where(Card.member_id == merged_id).values(member_id=survivor_id)
    )
    profile, filled = _fill_gaps(
        service.get_profile(session, survivor_id), service.get_profile(session, merged_id)
    )
    if filled:
        service.write_profile(session, survivor_id, profile, as_of=as_of)
    service.erase_profile(session, member_id=merged_id)
    merged.status = MemberStatus.MERGED
    merged.merged_into_id = survivor_id
    merged.merged_at = as_of
    moved: dict[str, Any] = {
        "identifiers": int(getattr(identifiers, "rowcount", 0) or 0),
        "cards": int(getattr(cards, "rowcount", 0) or 0),
        "lots": moved_points.lots,
        "points": moved_points.points,
        "debt": moved_points.debt,
        "profile_fields": filled,
    }
    merge = MemberMerge(
        survivor_id=survivor_id,
        merged_id=merged_id,
        score=score,
        reasons=list(reasons),
        actor=actor,
        merged_at=as_of,
        out_entry_id=moved_points.out_entry_id,
        in_entry_id=moved_points.in_entry_id,
        moved=moved,
    )
    session.add(merge)
    session.flush()
    tiers.after_merge(session, survivor_id=survivor_id, merged_id=merged_id, as_of=as_of)
    publish(
        session,
        event_type="member.merged",
        payload={"survivor_id": survivor_id, "merged_id": merged_id, "points": moved_points.points},
        member_id=survivor_id,
        as_of=as_of,
    )
    audit(
        session,
        actor=actor,
        action="member.merge",
        target=f"member:{survivor_id}",
        details={"merged_id": merged_id, "merge_id": merge.id, **moved},
        as_of=as_of,
    )
    return merge


def merges_of(session: Session, member_id: int) -> list[MemberMerge]:
    """The merges in which the member survived, oldest first."""
    return list(
        session.scalars(
            select(MemberMerge).where(MemberMerge.survivor_id == member_id).order_by(MemberMerge.id)
        )
    )


def carried_to(session: Session, member_id: int) -> tuple[int, list[tuple[int, int]]]:
    """The member who now stands for `member_id` (itself unless merged), and the
    (`merge_out`, `merge_in`) entry pairs that carried its points there, oldest first."""
    transfers: list[tuple[int, int]] = []
    seen = {member_id}
    while True:
        step = session.scalars(
            select(MemberMerge).where(MemberMerge.merged_id == member_id)
        ).one_or_none()
        if step is None or step.survivor_id in seen:  # a cycle would be a bug: stop there
            return member_id, transfers
        if step.out_entry_id is not None and step.in_entry_id is not None:
            transfers.append((step.out_entry_id, step.in_entry_id))
        member_id = step.survivor_id
        seen.add(member_id)

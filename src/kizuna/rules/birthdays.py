"""Birthday points (誕生日ポイント): the daily job that gives each member their birthday earn.

Birth dates are encrypted, so the job reads the programme's profiles in batches and decrypts them
in the process; a member born on 29 February celebrates on 28 February in other years. What a
birthday earns is `earn_for_event("birthday")` — the rank's birthday bonus and any birthday
campaign — posted as one earn whose external reference `birthday:YYYY` makes the job safe to run
any number of times a day, in several workers. Finding the members only reads; each grant is its
own short write transaction, so the writers of the day are never held up.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.ledger import service as ledger
from kizuna.ledger.models import JournalEntry
from kizuna.members import service as members
from kizuna.members.models import Member, MemberProfile
from kizuna.partners.service import ProgramPolicies
from kizuna.rules.budgets import lock_member
from kizuna.rules.service import earn_for_event


def is_birthday(birth: date, today: date) -> bool:
    """True when `today` is the birthday of someone born on `birth`."""
    if (birth.month, birth.day) == (2, 29) and not calendar.isleap(today.year):
        return (today.month, today.day) == (2, 28)
    return (birth.month, birth.day) == (today.month, today.day)


def birthdays_today(
    session: Session, *, policies: ProgramPolicies, as_of: datetime, batch: int = 1000
) -> list[int]:
    """The active members of a programme whose birthday it is today (reads only)."""
    today = as_of.astimezone(policies.ledger.tz).date()
    found: list[int] = []
    after = 0
    while True:
        page = session.scalars(
            select(MemberProfile)
            .join(Member, Member.id == MemberProfile.member_id)
            .where(
                Member.program_id == policies.program_id,
                Member.status == "active",
                MemberProfile.birth_date_enc.is_not(None),
                MemberProfile.member_id > after,
            )
            .order_by(MemberProfile.member_id)
            .limit(batch)
        ).all()
        if not page:
            return found
        after = page[-1].member_id
        for row in page:
            birth = members.profile_of_row(row).birth_date
            if birth is not None and is_birthday(birth, today):
                found.append(row.member_id)


def grant_birthday(
    session: Session, *, policies: ProgramPolicies, member_id: int, as_of: datetime
) -> int:
    """Post one member's birthday earn unless this year's is already there; returns 0 or 1."""
    reference = f"birthday:{as_of.astimezone(policies.ledger.tz).year}"
    lock_member(session, member_id)
    done = session.scalar(
        select(JournalEntry.id).where(
            JournalEntry.member_id == member_id,
            JournalEntry.external_ref == reference,
            JournalEntry.reason_code == "birthday",
        )
    )
    if done is not None:
        return 0
    earned = earn_for_event(
        session,
        policies=policies,
        member_id=member_id,
        event_type="birthday",
        occurred_at=as_of,
        store_id=None,
        channel=None,
    )
    posted = ledger.earn(
        session,
        member_id=member_id,
        rows=earned,
        policy=policies.ledger,
        occurred_at=as_of,
        as_of=as_of,
        context=ledger.Context(
            actor="job:birthdays", external_ref=reference, reason_code="birthday"
        ),
    )
    return int(posted is not None)

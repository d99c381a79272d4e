"""The dashboard's headline figures, as plain SQL over members, journal entries and lots.

A month is a calendar month in the programme's time zone. Issued points are the balance
effect of earn, migrate-in and positive adjust entries; redeemed and expired are the points that
redeem and expire entries took. Outstanding points are the unexpired remainder of all lots
(pending included: the programme owes them too), and their value in yen is the liability
(未使用ポイント残高). Daily series group entries by the local day they occurred on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Subquery, and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Case

from kizuna.db.base import UtcDateTime
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.members.models import Member
from kizuna.partners.models import Program

ISSUED = ("earn", "migrate_in")
LIVE_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class Month:
    """One calendar month in a time zone, as UTC instants [start, end)."""

    first: date
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.next_first, time(), self.tz)

    @property
    def next_first(self) -> date:
        return (self.first.replace(day=28) + timedelta(days=4)).replace(day=1)

    @property
    def previous_first(self) -> date:
        return (self.first - timedelta(days=1)).replace(day=1)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.next_first - self.first).days)]


def month_of(moment: datetime, tz: ZoneInfo) -> Month:
    """The month containing `moment` in zone `tz`."""
    return Month(moment.astimezone(tz).date().replace(day=1), tz)


@dataclass(frozen=True)
class Headline:
    members_total: int
    members_new: int
    members_active: int
    issued: int
    redeemed: int
    expired: int
    outstanding: int
    outstanding_yen: int

    @property
    def breakage_rate(self) -> float | None:
        """Expired ÷ (redeemed + expired) this month: the share of used-up points nobody used."""
        spent = self.redeemed + self.expired
        return self.expired / spent if spent else None


def _issued_amount() -> Case[int]:
    positive_adjust = and_(JournalEntry.entry_type == "adjust", JournalEntry.amount > 0)
    return case(
        (or_(JournalEntry.entry_type.in_(ISSUED), positive_adjust), JournalEntry.amount), else_=0
    )


def _taken(entry_type: str) -> Case[int]:
    return case((JournalEntry.entry_type == entry_type, -JournalEntry.amount), else_=0)


def headline(session: Session, *, month: Month, as_of: datetime) -> Headline:
    """The dashboard's numbers for `month`; outstanding points as of `as_of`."""
    members_total, members_new = session.execute(
        select(
            func.count(),
            func.coalesce(
                func.sum(
                    case(
                        (and_(Member.joined_at >= month.start, Member.joined_at < month.end), 1),
                        else_=0,
                    )
                ),
                0,
            ),
        ).where(Member.status.in_(LIVE_STATUSES))
    ).one()
    in_month = and_(JournalEntry.occurred_at >= month.start, JournalEntry.occurred_at < month.end)
    active, issued, redeemed, expired = session.execute(
        select(
            func.count(
                func.distinct(
                    case(
                        (
                            JournalEntry.entry_type.in_(("earn", "redeem")),
                            JournalEntry.member_id,
                        )
                    )
                )
            ),
            func.coalesce(func.sum(_issued_amount()), 0),
            func.coalesce(func.sum(_taken("redeem")), 0),
            func.coalesce(func.sum(_taken("expire")), 0),
        ).where(in_month)
    ).one()
    live_lot = and_(Lot.remaining > 0, or_(Lot.expires_at.is_(None), Lot.expires_at > as_of))
    outstanding, outstanding_yen = session.execute(
        select(
            func.coalesce(func.sum(Lot.remaining), 0),
            func.coalesce(func.sum(Lot.remaining * Program.point_value_yen), 0),
        )
        .join(Member, Member.id == Lot.member_id)
        .join(Program, Program.id == Member.program_id)
        .where(live_lot)
    ).one()
    return Headline(
        members_total=int(members_total),
        members_new=int(members_new),
        members_active=int(active),
        issued=int(issued),
        redeemed=int(redeemed),
        expired=int(expired),
        outstanding=int(outstanding),
        outstanding_yen=int(outstanding_yen),
    )


def _day_buckets(month: Month) -> Subquery:
    # One row per local day, built from bound parameters: portable to both engines, where date
    # arithmetic and time-zone conversion in SQL are not.
    rows = []
    for n, day in enumerate(month.days()):
        start = datetime.combine(day, time(), month.tz)
        end = datetime.combine(day + timedelta(days=1), time(), month.tz)
        rows.append(
            select(
                literal(n).label("n"),
                literal(start, UtcDateTime).label("day_start"),
                literal(end, UtcDateTime).label("day_end"),
            )
        )
    return union_all(*rows).subquery("days")


@dataclass(frozen=True)
class DailySeries:
    days: list[date]
    issued: list[int]
    redeemed: list[int]
    expired: list[int]
    new_members: list[int]


def daily(session: Session, *, month: Month) -> DailySeries:
    """Points issued / redeemed / expired and new members for each day of `month`."""
    days = _day_buckets(month)
    size = len(month.days())
    issued, redeemed, expired, joined = [0] * size, [0] * size, [0] * size, [0] * size
    rows = session.execute(
        select(
            days.c.n,
            func.sum(_issued_amount()),
            func.sum(_taken("redeem")),
            func.sum(_taken("expire")),
        )
        .select_from(days)
        .join(
            JournalEntry,
            and_(
                JournalEntry.occurred_at >= days.c.day_start,
                JournalEntry.occurred_at < days.c.day_end,
            ),
        )
        .group_by(days.c.n)
    )
    for n, day_issued, day_redeemed, day_expired in rows:
        issued[n], redeemed[n], expired[n] = int(day_issued), int(day_redeemed), int(day_expired)
    members = session.execute(
        select(days.c.n, func.count())
        .select_from(days)
        .join(Member, and_(Member.joined_at >= days.c.day_start, Member.joined_at < days.c.day_end))
        .group_by(days.c.n)
    )
    for n, count in members:
        joined[n] = int(count)
    return DailySeries(month.days(), issued, redeemed, expired, joined)

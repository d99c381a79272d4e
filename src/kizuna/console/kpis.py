"""The dashboard's headline figures, as plain SQL over members, journal entries and lots.

A period is a run of local days in the programme's time zone: this month, last month, a month
chosen with the arrows, or any from–to range up to `MAX_DAYS` (`choose_period`). Issued points are
the balance
effect of earn, migrate-in and positive adjust entries; redeemed and expired are the points that
redeem and expire entries took. Outstanding points are the unexpired remainder of all lots
(pending included: the programme owes them too), and their value in yen is the liability
(未使用ポイント残高). Daily series group entries by the local day they occurred on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
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
# A custom period is at most a year and a day: the daily chart has a bar per day.
MAX_DAYS = 366


def _next_month(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Period:
    """The local days `first` to `last` (both included) in a time zone, as UTC [start, end)."""

    first: date
    last: date
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), self.tz)

    @property
    def is_month(self) -> bool:
        """True when the period is exactly one calendar month."""
        return self.first.day == 1 and self.last + timedelta(days=1) == _next_month(self.first)

    @property
    def next_first(self) -> date:
        """The first day of the month after the one the period starts in."""
        return _next_month(self.first.replace(day=1))

    @property
    def previous_first(self) -> date:
        """The first day of the month before the one the period starts in."""
        return (self.first.replace(day=1) - timedelta(days=1)).replace(day=1)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def month(first: date, tz: ZoneInfo) -> Period:
    """The calendar month starting on `first` (any day of it will do)."""
    first = first.replace(day=1)
    return Period(first, _next_month(first) - timedelta(days=1), tz)


def month_of(moment: datetime, tz: ZoneInfo) -> Period:
    """The month containing `moment` in zone `tz`."""
    return month(moment.astimezone(tz).date(), tz)


class PeriodChoice(StrEnum):
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"
    CUSTOM = "custom"


class InvalidPeriod(ValueError):
    """A custom period with a missing or unreadable date, the wrong way round, or too long."""


def choose_period(
    choice: PeriodChoice,
    *,
    as_of: datetime,
    tz: ZoneInfo,
    first: date | None = None,
    last: date | None = None,
) -> Period:
    """The period the dashboard's selector names, seen at `as_of` in zone `tz`."""
    this_month = month_of(as_of, tz)
    if choice is PeriodChoice.THIS_MONTH:
        return this_month
    if choice is PeriodChoice.LAST_MONTH:
        return month(this_month.previous_first, tz)
    if first is None or last is None:
        raise InvalidPeriod("both dates are needed")
    if last < first:
        raise InvalidPeriod("the period ends before it starts")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidPeriod(f"a period is at most {MAX_DAYS} days")
    return Period(first, last, tz)


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
        """Expired ÷ (redeemed + expired) in the period: the share of used-up points nobody
        used."""
        spent = self.redeemed + self.expired
        return self.expired / spent if spent else None


def _issued_amount() -> Case[int]:
    positive_adjust = and_(JournalEntry.entry_type == "adjust", JournalEntry.amount > 0)
    return case(
        (or_(JournalEntry.entry_type.in_(ISSUED), positive_adjust), JournalEntry.amount), else_=0
    )


def _taken(entry_type: str) -> Case[int]:
    return case((JournalEntry.entry_type == entry_type, -JournalEntry.amount), else_=0)


def headline(session: Session, *, period: Period, as_of: datetime) -> Headline:
    """The dashboard's numbers for `period`; outstanding points as of `as_of`."""
    members_total, members_new = session.execute(
        select(
            func.count(),
            func.coalesce(
                func.sum(
                    case(
                        (and_(Member.joined_at >= period.start, Member.joined_at < period.end), 1),
                        else_=0,
                    )
                ),
                0,
            ),
        ).where(Member.status.in_(LIVE_STATUSES))
    ).one()
    in_period = and_(
        JournalEntry.occurred_at >= period.start, JournalEntry.occurred_at < period.end
    )
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
        ).where(in_period)
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


def _day_buckets(period: Period) -> Subquery:
    # One row per local day, built from bound parameters: portable to both engines, where date
    # arithmetic and time-zone conversion in SQL are not.
    rows = []
    for n, day in enumerate(period.days()):
        start = datetime.combine(day, time(), period.tz)
        end = datetime.combine(day + timedelta(days=1), time(), period.tz)
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


def daily(session: Session, *, period: Period) -> DailySeries:
    """Points issued / redeemed / expired and new members for each day of `period`."""
    days = _day_buckets(period)
    size = len(period.days())
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
    return DailySeries(period.days(), issued, redeemed, expired, joined)

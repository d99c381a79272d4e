"""Ranks (会員ランク) without a database: tiers, qualification windows, progress.

A programme ranks members by one metric — spend (yen, net of returns), points earned (net of
reversals) or visits (receipts not wholly returned) — over a window: the calendar year, the fiscal
year (starting in a given month) or the rolling 12 months, all in the programme's time zone. A
member reaches the highest tier whose threshold the metric meets. Upgrades happen at once, within
the current window; at evaluation the rank becomes the tier of the window just ended (or of the
current window so far, if that is higher), which is the only moment a rank goes down. The earn
multiplier is an integer percentage: the rank bonus is base × (pct − 100) ÷ 100, rounded down.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from kizuna.core.errors import Unprocessable
from kizuna.tiers.errors import ErrorCode

# The smallest step of time: makes "up to and including `at`" a half-open window.
INSTANT = timedelta(microseconds=1)


class Metric(StrEnum):
    SPEND = "spend"
    POINTS = "points"
    VISITS = "visits"


class Window(StrEnum):
    CALENDAR_YEAR = "calendar_year"
    FISCAL_YEAR = "fiscal_year"
    ROLLING_12M = "rolling_12m"


@dataclass(frozen=True)
class TierSpec:
    """One rank of a programme."""

    id: int
    code: str
    name: str
    level: int
    threshold: int
    earn_multiplier_pct: int = 100
    birthday_points: int = 0

    def bonus(self, base_points: int) -> int:
        """The rank bonus on `base_points`: the one rounding rule of rank multipliers."""
        return base_points * (self.earn_multiplier_pct - 100) // 100


@dataclass(frozen=True)
class RankRules:
    """A programme's ranking: metric, window and tiers ordered by level (lowest first)."""

    metric: Metric
    window: Window
    fiscal_year_start_month: int
    tiers: Sequence[TierSpec]
    tz: ZoneInfo

    @property
    def lowest(self) -> TierSpec | None:
        return self.tiers[0] if self.tiers else None

    def tier_for(self, value: int) -> TierSpec | None:
        """The highest tier whose threshold `value` meets."""
        reached = None
        for tier in self.tiers:
            if value >= tier.threshold:
                reached = tier
        return reached

    def next_tier(self, current: TierSpec | None) -> TierSpec | None:
        """The tier above `current`, if any."""
        level = current.level if current else -1
        return next((tier for tier in self.tiers if tier.level > level), None)

    def period_of(self, at: datetime) -> tuple[datetime, datetime]:
        """The qualification window [start, end) that contains `at` (rolling: the 12 months up to
        and including `at`)."""
        local = at.astimezone(self.tz)
        if self.window is Window.ROLLING_12M:
            return _shift_months(local, -12).astimezone(UTC), at + INSTANT
        first_month = 1 if self.window is Window.CALENDAR_YEAR else self.fiscal_year_start_month
        year = local.year if local.month >= first_month else local.year - 1
        start = _midnight(date(year, first_month, 1), self.tz)
        return start, _midnight(date(year + 1, first_month, 1), self.tz)

    def evaluation_periods(self, as_of: datetime) -> tuple[datetime, datetime, datetime]:
        """(start of the window just ended, start of the current window, `as_of`).

        For rolling windows the "window just ended" is the 12 months before `as_of` and the
        current one is empty.
        """
        if self.window is Window.ROLLING_12M:
            start = _shift_months(as_of.astimezone(self.tz), -12).astimezone(UTC)
            return start, as_of, as_of
        current_start, _ = self.period_of(as_of)
        previous_start, _ = self.period_of(current_start - INSTANT)
        return previous_start, current_start, as_of

    def evaluation_boundary(self, as_of: datetime) -> datetime:
        """The last instant at or before `as_of` at which an evaluation falls due (rolling
        windows are evaluated on the first of every month)."""
        if self.window is Window.ROLLING_12M:
            local = as_of.astimezone(self.tz)
            return _midnight(date(local.year, local.month, 1), self.tz)
        start, _ = self.period_of(as_of)
        return start


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _shift_months(local: datetime, months: int) -> datetime:
    """`local` moved by whole months, the day clamped to the month's end (29 Feb → 28 Feb)."""
    year, month = divmod(local.year * 12 + local.month - 1 + months, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return local.replace(year=year, month=month + 1, day=min(local.day, last_day))


def validate_tiers(tiers: Sequence[TierSpec]) -> None:
    """Tiers must climb: levels and thresholds strictly increasing, the lowest at threshold 0."""
    ordered = sorted(tiers, key=lambda tier: tier.level)
    if not ordered:
        raise Unprocessable(ErrorCode.INVALID_TIERS, "a ranking needs at least one tier")
    if ordered[0].threshold != 0:
        raise Unprocessable(ErrorCode.INVALID_TIERS, "the lowest tier has threshold 0")
    for lower, upper in itertools.pairwise(ordered):
        if upper.level == lower.level or upper.threshold <= lower.threshold:
            raise Unprocessable(
                ErrorCode.INVALID_TIERS,
                f"tier {upper.code} must have a higher level and threshold than {lower.code}",
            )
    if len({tier.code for tier in ordered}) != len(ordered):
        raise Unprocessable(ErrorCode.INVALID_TIERS, "tier codes are unique")


@dataclass(frozen=True)
class Progress:
    """Where a member stands: their rank, the metric so far in this window, what the next needs."""

    tier: TierSpec | None
    metric: Metric
    value: int
    period_start: datetime
    period_end: datetime
    next_tier: TierSpec | None
    remaining: int


def rank_after_merge(
    rules: RankRules, held: Sequence[TierSpec | None], value: int
) -> TierSpec | None:
    """The survivor's rank after a merge: the highest of the ranks the two members held, or the
    tier their combined metric (`value`) reaches if that is higher still — an upgrade never waits.
    """
    reached = [tier for tier in (*held, rules.tier_for(value)) if tier is not None]
    return max(reached, key=lambda tier: tier.level, default=None)


def progress_of(rules: RankRules, tier: TierSpec | None, value: int, at: datetime) -> Progress:
    """The member's progress towards the next tier at `at`."""
    start, end = rules.period_of(at)
    upcoming = rules.next_tier(tier)
    return Progress(
        tier=tier,
        metric=rules.metric,
        value=value,
        period_start=start,
        period_end=end,
        next_tier=upcoming,
        remaining=max(upcoming.threshold - value, 0) if upcoming else 0,
    )

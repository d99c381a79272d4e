"""The ledger's rules, without a database.

A member's points live in *lots*: points earned together, with how many remain, when they become
available (pending points, 仮ポイント, wait for `available_at`) and when they expire. A lot is
expired from the instant `expires_at` on, and an expired lot is never counted, spent or pending,
even before the expiry job writes its `expire` entry.

Every change is a *journal entry*. An entry takes points from lots or gives them back through
*allocations* (positive: taken; negative: given back), and may create lots. Expiry is the one
exception: a lot expires once, so it records its own write-off (`expired_points`, and the
`expire` entry that wrote it off), and one `expire` entry covers all lots of a member that one
run wrote off. So for every entry

    lots it created − points it allocated − points it wrote off in lots == amount + debt_change

where `amount` is the change of the member's balance and `debt_change` the change of their debt:
points that had to be taken back but were already spent. Only earns repay debt. For every lot,
remaining == amount − points allocated from it − expired_points.

Redemption takes available lots in a fixed order: limited before standard, then the soonest
expiry, then the earliest earning, then the lot id.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from kizuna.core.errors import KizunaError
from kizuna.ledger.errors import ErrorCode


class EntryType(StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    EXPIRE = "expire"
    ADJUST = "adjust"
    CANCEL = "cancel"
    MIGRATE_IN = "migrate_in"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    FORFEIT = "forfeit"


class LotKind(StrEnum):
    STANDARD = "standard"  # 通常ポイント
    LIMITED = "limited"  # 期間限定ポイント


class ExpiryRule(StrEnum):
    FIXED = "fixed"  # N days from earning
    MONTH_END = "month_end"  # end of the month N months after earning
    ROLLING = "rolling"  # N days from the member's last earn or redeem
    NEVER = "never"


@dataclass(frozen=True)
class ExpiryPolicy:
    """How long the points of one kind live."""

    rule: ExpiryRule = ExpiryRule.FIXED
    days: int = 365
    months: int = 12

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpiryPolicy:
        return cls(
            rule=ExpiryRule(data.get("rule", "fixed")),
            days=int(data.get("days", 365)),
            months=int(data.get("months", 12)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rule": str(self.rule), "days": self.days, "months": self.months}

    def expires_at(self, earned_at: datetime, tz: ZoneInfo) -> datetime | None:
        """When points earned at `earned_at` expire under this policy (None: never)."""
        if self.rule in (ExpiryRule.FIXED, ExpiryRule.ROLLING):
            return earned_at + timedelta(days=self.days)
        if self.rule is ExpiryRule.MONTH_END:
            return month_end_after(earned_at, self.months, tz)
        return None


def month_end_after(earned_at: datetime, months: int, tz: ZoneInfo) -> datetime:
    """00:00 local time on the first day of the month after the month `months` after earning."""
    local = earned_at.astimezone(tz)
    index = local.year * 12 + (local.month - 1) + months + 1
    first = datetime(index // 12, index % 12 + 1, 1, tzinfo=tz)
    return first.astimezone(earned_at.tzinfo)


@dataclass(frozen=True)
class LedgerPolicy:
    """The ledger settings of a programme."""

    timezone: str = "Asia/Tokyo"
    expiry: Mapping[LotKind, ExpiryPolicy] = field(
        default_factory=lambda: {
            LotKind.STANDARD: ExpiryPolicy(ExpiryRule.FIXED, days=365),
            LotKind.LIMITED: ExpiryPolicy(ExpiryRule.FIXED, days=90),
        }
    )
    restore_grace_days: int = 30
    approval_threshold: int = 10_000

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], timezone: str = "Asia/Tokyo") -> LedgerPolicy:
        default = cls()
        expiry = dict(default.expiry)
        for kind, policy in data.get("expiry", {}).items():
            expiry[LotKind(kind)] = ExpiryPolicy.from_dict(policy)
        return cls(
            timezone=timezone,
            expiry=expiry,
            restore_grace_days=int(data.get("restore_grace_days", default.restore_grace_days)),
            approval_threshold=int(data.get("approval_threshold", default.approval_threshold)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "expiry": {str(kind): policy.to_dict() for kind, policy in self.expiry.items()},
            "restore_grace_days": self.restore_grace_days,
            "approval_threshold": self.approval_threshold,
        }


@dataclass(frozen=True)
class LotState:
    """What the domain needs to know of a lot."""

    id: int
    kind: LotKind
    amount: int
    remaining: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    expired_points: int = 0  # written off by the expiry job

    def is_expired(self, as_of: datetime) -> bool:
        return self.expires_at is not None and as_of >= self.expires_at

    def is_available(self, as_of: datetime) -> bool:
        return self.available_at <= as_of and not self.is_expired(as_of)

    def is_pending(self, as_of: datetime) -> bool:
        return self.available_at > as_of and not self.is_expired(as_of)


def redemption_key(lot: LotState) -> tuple[int, float, float, int]:
    """Sort key of the redemption order: limited first, soonest expiry, earliest earned, id."""
    expires = lot.expires_at.timestamp() if lot.expires_at else float("inf")
    return (0 if lot.kind is LotKind.LIMITED else 1, expires, lot.earned_at.timestamp(), lot.id)


Take = tuple[int, int]  # (lot id, points)


def take_in_order(lots: Iterable[LotState], points: int, as_of: datetime) -> tuple[list[Take], int]:
    """Take up to `points` from the available lots in redemption order; returns takes, shortfall."""
    takes: list[Take] = []
    needed = points
    for lot in sorted((lot for lot in lots if lot.is_available(as_of)), key=redemption_key):
        if needed == 0:
            break
        taken = min(lot.remaining, needed)
        if taken > 0:
            takes.append((lot.id, taken))
            needed -= taken
    return takes, needed


def allocate_redemption(lots: Iterable[LotState], points: int, as_of: datetime) -> list[Take]:
    """The lots a redemption of `points` consumes; refuses when the available balance is short."""
    if points <= 0:
        raise KizunaError(ErrorCode.INVALID_POINTS, "points must be a positive integer")
    takes, shortfall = take_in_order(lots, points, as_of)
    if shortfall:
        raise KizunaError(
            ErrorCode.INSUFFICIENT_POINTS,
            "not enough available points",
            status=409,
            requested=points,
            available=points - shortfall,
        )
    return takes


def restore_plan(allocations: Sequence[Take], already_restored: int, points: int) -> list[Take]:
    """Where `points` of a redemption go back: its allocations in order, after those restored."""
    plan: list[Take] = []
    skip, needed = already_restored, points
    for lot_id, taken in allocations:
        skipped = min(skip, taken)
        skip -= skipped
        give = min(taken - skipped, needed)
        if give > 0:
            plan.append((lot_id, give))
            needed -= give
    if needed:
        raise KizunaError(ErrorCode.ALREADY_REVERSED, "more points restored than were redeemed")
    return plan


@dataclass(frozen=True)
class EarnReversal:
    """How reversing `points` of an earn is paid for."""

    from_own_lots: list[Take]
    waived: int  # the part that had expired: costs the member nothing
    from_other_lots: list[Take]
    debt: int

    @property
    def amount(self) -> int:
        """The change of the member's balance."""
        taken = sum(p for _, p in self.from_own_lots) + sum(p for _, p in self.from_other_lots)
        return -(taken + self.debt)


def plan_earn_reversal(
    *,
    own_lots: Sequence[LotState],
    expired_points: int,
    other_lots: Sequence[LotState],
    points: int,
    as_of: datetime,
) -> EarnReversal:
    """Reverse `points` of an earn: its own unspent lots (pending too), then the expired part for
    free, then other available lots in redemption order; what is still missing becomes debt.

    `expired_points` is the part of the earn that expired and was not waived by earlier reversals.
    """
    own: list[Take] = []
    needed = points
    for lot in sorted((lot for lot in own_lots if not lot.is_expired(as_of)), key=redemption_key):
        taken = min(lot.remaining, needed)
        if taken > 0:
            own.append((lot.id, taken))
            needed -= taken
    waived = min(needed, expired_points)
    needed -= waived
    others, debt = take_in_order(other_lots, needed, as_of)
    return EarnReversal(own, waived, others, debt)


def expired_points_of(lots: Iterable[LotState], as_of: datetime) -> int:
    """Points of an earn's lots that expired: written off by the expiry job or past their time."""
    return sum(lot.expired_points + (lot.remaining if lot.is_expired(as_of) else 0) for lot in lots)


@dataclass(frozen=True)
class DueLot:
    """A lot past its expiry that still holds points, as the expiry job reads it."""

    id: int
    member_id: int
    remaining: int
    expires_at: datetime
    funding_partner_id: int | None


@dataclass(frozen=True)
class WriteOff:
    """One member's `expire` entry for the due lots of one expiry batch."""

    member_id: int
    points: int
    occurred_at: datetime
    partner_id: int | None
    lot_ids: list[int]


def write_offs(due: Iterable[DueLot]) -> list[WriteOff]:
    """One write-off per member (in member order) for a batch of due lots.

    The entry is dated at the *latest* expiry among its lots: only from then on is all of its
    amount gone (dating it at the earliest would book points as expired while some could still
    be spent). Its partner is the lots' funding partner when they share one, else None; each lot
    keeps its own funding partner and expiry for settlement.
    """
    by_member: dict[int, list[DueLot]] = {}
    for lot in due:
        by_member.setdefault(lot.member_id, []).append(lot)
    result = []
    for member_id in sorted(by_member):
        lots = by_member[member_id]
        partners = {lot.funding_partner_id for lot in lots}
        result.append(
            WriteOff(
                member_id=member_id,
                points=sum(lot.remaining for lot in lots),
                occurred_at=max(lot.expires_at for lot in lots),
                partner_id=partners.pop() if len(partners) == 1 else None,
                lot_ids=[lot.id for lot in lots],
            )
        )
    return result


def restored_after_return(redeemed: int, refunded: int, purchase_amount: int) -> int:
    """Points restored in total once `refunded` yen of a purchase have come back (floor)."""
    if purchase_amount <= 0:
        return redeemed
    return redeemed * min(refunded, purchase_amount) // purchase_amount


def split_debt_repayment(points: int, debt: int) -> tuple[int, int]:
    """An earn of `points` repays debt first: returns (repaid, left for lots)."""
    repaid = min(points, debt)
    return repaid, points - repaid


@dataclass(frozen=True)
class ExpiringAmount:
    day: date
    points: int


@dataclass(frozen=True)
class Balance:
    """What a member has, as a member or a till sees it."""

    available: int
    pending: int
    debt: int
    by_kind: dict[str, int]
    next_expiring: list[ExpiringAmount]

    @property
    def total(self) -> int:
        return self.available + self.pending - self.debt


def balance_of(
    lots: Iterable[LotState], debt: int, as_of: datetime, tz: ZoneInfo, horizon: int = 3
) -> Balance:
    """The balance view: available, pending, by kind, debt and the next `horizon` expiry dates."""
    available = pending = 0
    by_kind = {str(kind): 0 for kind in LotKind}
    expiring: dict[date, int] = {}
    for lot in lots:
        if lot.remaining == 0 or lot.is_expired(as_of):
            continue
        if lot.is_pending(as_of):
            pending += lot.remaining
            continue
        available += lot.remaining
        by_kind[str(lot.kind)] += lot.remaining
        if lot.expires_at is not None:
            # The last day on which the points can still be used, in the programme's zone.
            day = (lot.expires_at - timedelta(microseconds=1)).astimezone(tz).date()
            expiring[day] = expiring.get(day, 0) + lot.remaining
    upcoming = [ExpiringAmount(day, expiring[day]) for day in sorted(expiring)[:horizon]]
    return Balance(available, pending, debt, by_kind, upcoming)


def last_day_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])

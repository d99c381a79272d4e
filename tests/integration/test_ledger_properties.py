"""The ledger against a reference model: hypothesis drives random earns (pending and limited
ones too), redeems, full and partial reversals, adjustments, forfeits, purchases and returns,
time jumps and expiry runs, and after every step the member's balance, every lot and every
invariant of reconciliation must agree with a small model written here, independently of
`kizuna.ledger.domain`.

One fresh member per example, inside the test's rolled-back transaction; each step runs in a
savepoint so that a refused request leaves nothing behind, as a request transaction would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kizuna.core.errors import KizunaError
from kizuna.ledger import adjustments, expiry, reconcile, reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import ExpiryPolicy, ExpiryRule
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.rules.domain import BreakdownRow, PurchaseLine
from tests.factories import T0
from tests.integration import ledger_support as s

TOKYO = ZoneInfo("Asia/Tokyo")
TERM_DAYS = 30
LIMITED_DAYS = 10
GRACE_DAYS = 5
THRESHOLD = 60
VARIANTS = {
    "fixed": ExpiryPolicy(ExpiryRule.FIXED, days=TERM_DAYS),
    "rolling": ExpiryPolicy(ExpiryRule.ROLLING, days=TERM_DAYS),
    "month_end": ExpiryPolicy(ExpiryRule.MONTH_END, months=0),
}
_receipts = count(1)


# --- the reference model ----------------------------------------------------------------------


@dataclass(eq=False)
class Lot:
    seq: int
    kind: str
    rule: str
    amount: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime
    source: int  # the entry that made it (-1: a restore)
    partner: int | None
    remaining: int = -1
    written_off: int = 0

    def __post_init__(self) -> None:
        self.remaining = self.amount

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def usable(self, now: datetime) -> bool:
        return self.available_at <= now and not self.expired(now)

    def order(self) -> tuple[int, datetime, datetime, int]:
        return (0 if self.kind == "limited" else 1, self.expires_at, self.earned_at, self.seq)


@dataclass(eq=False)
class Entry:
    entry_id: int
    earns: bool  # earn-like (reversal takes points back) or redeem-like (reversal restores)
    points: int
    takes: list[tuple[Lot, int]] = field(default_factory=list)
    reversed: int = 0
    waived: int = 0


@dataclass(eq=False)
class Receipt:
    number: str
    lines: list[tuple[int, int]]  # (amount, quantity)
    points_used: int
    earn: Entry | None
    spend: Entry | None
    returned: list[int] = field(default_factory=list)
    restored: int = 0

    @property
    def total(self) -> int:
        return sum(amount for amount, _ in self.lines)


class Book:
    """What the member should have, by the rules of SPEC §4, kept as plainly as possible."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.lots: list[Lot] = []
        self.debt = 0
        self.now = T0

    def expiry_of(self, kind: str, at: datetime) -> tuple[str, datetime]:
        if kind == "limited":
            return "fixed", at + timedelta(days=LIMITED_DAYS)
        if self.variant == "month_end":
            local = at.astimezone(TOKYO)
            year, month = (
                (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
            )
            return "month_end", datetime(year, month, 1, tzinfo=TOKYO).astimezone(UTC)
        return self.variant, at + timedelta(days=TERM_DAYS)

    def new_lot(
        self,
        kind: str,
        rule: str,
        points: int,
        expires: datetime,
        source: int,
        partner: int | None,
        available: datetime | None = None,
    ) -> None:
        self.lots.append(
            Lot(
                len(self.lots),
                kind,
                rule,
                points,
                self.now,
                available or self.now,
                expires,
                source,
                partner,
            )
        )

    def roll(self) -> None:
        if self.variant != "rolling":
            return
        moved = self.now + timedelta(days=TERM_DAYS)
        for lot in self.lots:
            if lot.rule == "rolling" and lot.remaining > 0 and self.now < lot.expires_at < moved:
                lot.expires_at = moved

    def usable(self, exclude: int | None = None) -> list[Lot]:
        return sorted(
            (lot for lot in self.lots if lot.usable(self.now) and lot.source != exclude),
            key=Lot.order,
        )

    def take(self, lots: list[Lot], points: int) -> tuple[list[tuple[Lot, int]], int]:
        takes = []
        for lot in lots:
            taken = min(lot.remaining, points)
            if taken:
                lot.remaining -= taken
                takes.append((lot, taken))
                points -= taken
        return takes, points

    def earn(
        self,
        entry_id: int,
        points: int,
        partner: int | None,
        kind: str = "standard",
        pending_days: int = 0,
        *,
        is_earn: bool = True,
    ) -> Entry:
        if is_earn:
            self.roll()
        repaid = min(points, self.debt) if is_earn else 0
        self.debt -= repaid
        if points > repaid:
            rule, expires = self.expiry_of(kind, self.now)
            available = self.now + timedelta(days=pending_days)
            self.new_lot(kind, rule, points - repaid, expires, entry_id, partner, available)
        return Entry(entry_id, True, points)

    def can_spend(self, points: int) -> bool:
        return sum(lot.remaining for lot in self.usable()) >= points

    def spend(self, entry_id: int, points: int, *, rolls: bool) -> Entry:
        takes, short = self.take(self.usable(), points)
        assert short == 0
        if rolls:
            self.roll()
        return Entry(entry_id, False, points, takes)

    def reverse(self, entry: Entry, points: int) -> None:
        if entry.earns:
            self.take_back(entry, points)
        else:
            self.restore(entry, points)
        entry.reversed += points

    def restore(self, entry: Entry, points: int) -> None:
        skip = entry.reversed
        fresh: dict[tuple[str, int | None], int] = {}
        for lot, taken in entry.takes:
            skipped = min(skip, taken)
            skip -= skipped
            give = min(taken - skipped, points)
            points -= give
            if give and lot.expired(self.now):
                fresh[(lot.kind, lot.partner)] = fresh.get((lot.kind, lot.partner), 0) + give
            else:
                lot.remaining += give
        # Lots that had expired get one new lot per kind and funding partner, in the
        # service's (textual) order of that pair.
        for (kind, partner), amount in sorted(fresh.items(), key=lambda item: str(item[0])):
            grace = self.now + timedelta(days=GRACE_DAYS)
            self.new_lot(kind, "fixed", amount, grace, -1, partner)

    def take_back(self, entry: Entry, points: int) -> None:
        own = [lot for lot in self.lots if lot.source == entry.entry_id]
        live = sorted((lot for lot in own if not lot.expired(self.now)), key=Lot.order)
        _, points = self.take(live, points)
        expired = sum(
            lot.written_off + (lot.remaining if lot.expired(self.now) else 0) for lot in own
        )
        waived = min(points, max(expired - entry.waived, 0))
        entry.waived += waived
        _, missing = self.take(self.usable(exclude=entry.entry_id), points - waived)
        self.debt += missing

    def forfeit(self) -> bool:
        held = [lot for lot in self.lots if not lot.expired(self.now) and lot.remaining]
        if not held and not self.debt:
            return False
        for lot in held:
            lot.remaining = 0
        self.debt = 0
        return True

    def expire(self) -> None:
        for lot in self.lots:
            if lot.remaining and lot.expired(self.now):
                lot.written_off += lot.remaining
                lot.remaining = 0

    def confirm(self, entry: Entry) -> int:
        waiting = [
            lot
            for lot in self.lots
            if lot.source == entry.entry_id and lot.available_at > self.now and lot.remaining
        ]
        for lot in waiting:
            lot.available_at = self.now
        return sum(lot.remaining for lot in waiting)

    def balance(self) -> tuple[int, int, int]:
        live = [lot for lot in self.lots if not lot.expired(self.now)]
        available = sum(lot.remaining for lot in live if lot.available_at <= self.now)
        pending = sum(lot.remaining for lot in live if lot.available_at > self.now)
        return available, pending, self.debt


def returned_yen(lines: list[tuple[int, int]], returned: list[int]) -> int:
    return sum(
        amount * q // quantity for (amount, quantity), q in zip(lines, returned, strict=True)
    )


# --- the machine ------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    session = None  # set by the test

    @initialize(variant=st.sampled_from(sorted(VARIANTS)))
    def open_account(self, variant):
        self.book = Book(variant)
        self.shop = s.shop(
            self.session,
            s.policy(VARIANTS[variant], grace_days=GRACE_DAYS, approval_threshold=THRESHOLD),
        )
        self.member = s.member(self.session, self.shop)
        self.entries: list[Entry] = []
        self.requests: list[tuple[int, int]] = []
        self.receipts: list[Receipt] = []

    # Every step runs in a savepoint: a refused request must leave nothing behind.
    def attempt(self, work):
        try:
            with self.session.begin_nested():
                return work(), None
        except KizunaError as refused:
            return None, refused.code

    @property
    def now(self) -> datetime:
        return self.book.now

    @property
    def policy(self):
        return self.shop.policy

    def context(self) -> ledger.Context:
        return ledger.Context(partner_id=self.shop.partner_id, store_id=self.shop.store_id)

    @rule(
        points=st.integers(1, 300),
        limited=st.booleans(),
        pending_days=st.sampled_from([0, 0, 0, 3]),
    )
    def earn(self, points, limited, pending_days):
        kind = "limited" if limited else "standard"
        posted, error = self.attempt(
            lambda: ledger.earn(
                self.session,
                member_id=self.member,
                rows=[BreakdownRow("base", "base", points, kind=kind)],
                policy=self.policy,
                occurred_at=self.now,
                as_of=self.now,
                available_at=self.now + timedelta(days=pending_days),
                context=self.context(),
            )
        )
        assert error is None
        partner = self.shop.partner_id
        self.entries.append(self.book.earn(posted.entry_id, points, partner, kind, pending_days))

    @rule(points=st.integers(1, 400))
    def redeem(self, points):
        posted, error = self.attempt(
            lambda: s.redeem(self.session, self.shop, self.member, points, self.now)
        )
        if not self.book.can_spend(points):
            assert error == "insufficient_points"
            return
        assert error is None
        self.entries.append(self.book.spend(posted.entry_id, points, rolls=True))

    @precondition(lambda self: self.entries)
    @rule(pick=st.integers(0, 10**6), percent=st.none() | st.integers(1, 120))
    def reverse(self, pick, percent):
        """Reverse all that is left of an entry, or a share of it (beyond 100%: refused)."""
        entry = self.entries[pick % len(self.entries)]
        part = None if percent is None else max(entry.points * percent // 100, 1)
        _posted, error = self.attempt(
            lambda: reversal.reverse(
                self.session,
                entry_id=entry.entry_id,
                policy=self.policy,
                as_of=self.now,
                points=part,
                context=self.context(),
            )
        )
        left = entry.points - entry.reversed
        if left == 0 or (part is not None and part > left):
            assert error == "already_reversed"
            return
        assert error is None
        self.book.reverse(entry, part or left)

    @rule(
        points=st.integers(-90, 90).filter(bool), code=st.sampled_from(["goodwill", "correction"])
    )
    def adjust(self, points, code):
        outcome, error = self.attempt(
            lambda: adjustments.request_adjustment(
                self.session,
                member_id=self.member,
                points=points,
                reason_code=code,
                requested_by="staff",
                policy=self.policy,
                as_of=self.now,
            )
        )
        if abs(points) > THRESHOLD:
            assert error is None
            self.requests.append((outcome.request_id, points))
            return
        self.post_adjustment(outcome.posted if outcome else None, error, points)

    def post_adjustment(self, posted, error, points) -> bool:
        if points < 0 and not self.book.can_spend(-points):
            assert error == "insufficient_points"
            return False
        assert error is None
        if points > 0:
            # Adjustments fund their lots from no partner.
            self.entries.append(self.book.earn(posted.entry_id, points, None, is_earn=False))
        else:
            self.entries.append(self.book.spend(posted.entry_id, -points, rolls=False))
        return True

    @precondition(lambda self: self.requests)
    @rule(pick=st.integers(0, 10**6), approve=st.booleans())
    def decide(self, pick, approve):
        request_id, points = self.requests[pick % len(self.requests)]
        if approve:
            posted, error = self.attempt(
                lambda: adjustments.approve_adjustment(
                    self.session,
                    request_id=request_id,
                    approver="manager",
                    policy=self.policy,
                    as_of=self.now,
                )
            )
            if not self.post_adjustment(posted, error, points):
                return  # still pending
        else:
            _, error = self.attempt(
                lambda: adjustments.reject_adjustment(
                    self.session, request_id=request_id, decided_by="manager", as_of=self.now
                )
            )
            assert error is None
        self.requests.remove((request_id, points))

    @rule()
    def forfeit(self):
        posted, error = self.attempt(
            lambda: ledger.forfeit(self.session, member_id=self.member, as_of=self.now)
        )
        assert error is None
        assert (posted is not None) == self.book.forfeit()

    @rule(hours=st.integers(1, 24 * 40))
    def time_passes(self, hours):
        self.book.now += timedelta(hours=hours)

    @rule()
    def expiry_job_runs(self):
        _, error = self.attempt(
            lambda: expiry.expire_due(self.session, as_of=self.now, batch_size=50)
        )
        assert error is None
        self.book.expire()

    @rule(
        lines=st.lists(
            st.tuples(st.integers(1, 30).map(lambda n: n * 100 + 50), st.integers(1, 3)),
            min_size=1,
            max_size=3,
        ),
        share=st.sampled_from([0, 0, 10, 50, 100]),
        pending_days=st.sampled_from([0, 0, 7]),
    )
    def purchase(self, lines, share, pending_days):
        total = sum(amount for amount, _ in lines)
        redeem = min(total, sum(lot.remaining for lot in self.book.usable())) * share // 100
        number = f"R{next(_receipts)}"
        request = PurchaseRequest(
            member_id=self.member,
            store_id=self.shop.store_id,
            receipt_no=number,
            occurred_at=self.now,
            lines=[
                PurchaseLine(sku=f"sku{n}", amount=amount, quantity=quantity)
                for n, (amount, quantity) in enumerate(lines)
            ],
            redeem_points=redeem,
            pending_until=self.now + timedelta(days=pending_days) if pending_days else None,
        )
        result, error = self.attempt(
            lambda: purchases.commit_purchase(self.session, request=request, as_of=self.now)
        )
        assert error is None
        spend = self.book.spend(result.redeem_entry_id, redeem, rolls=True) if redeem else None
        earned = (total - redeem) // 100
        assert result.earned == earned
        earn = None
        if earned:
            partner = self.shop.partner_id
            earn = self.book.earn(result.earn_entry_id, earned, partner, pending_days=pending_days)
        self.receipts.append(Receipt(number, lines, redeem, earn, spend, [0] * len(lines)))

    @precondition(lambda self: self.receipts)
    @rule(
        pick=st.integers(0, 10**6),
        line=st.integers(0, 2),
        quantity=st.integers(1, 3),
        everything=st.booleans(),
    )
    def purchase_returned(self, pick, line, quantity, everything):
        receipt = self.receipts[pick % len(self.receipts)]
        line %= len(receipt.lines)
        result, error = self.attempt(
            lambda: returns.return_purchase(
                self.session,
                store_id=self.shop.store_id,
                receipt_no=receipt.number,
                lines=None if everything else [ReturnLine(line, quantity)],
                as_of=self.now,
            )
        )
        after = list(receipt.returned)
        if everything:
            after = [q for _, q in receipt.lines]
        else:
            after[line] += quantity
        bought = [q for _, q in receipt.lines]
        if after == receipt.returned or any(a > b for a, b in zip(after, bought, strict=True)):
            assert error == "return_exceeds_purchase"
            return
        assert error is None
        full = after == bought
        refunded = returned_yen(receipt.lines, after)
        if full:
            restore = receipt.points_used - receipt.restored
        else:
            due = receipt.points_used * refunded // receipt.total
            restore = max(due - receipt.restored, 0)
        if restore:
            self.book.reverse(receipt.spend, restore)
        receipt.restored += restore
        if receipt.earn is not None:
            kept = receipt.total - refunded
            target = 0 if full else max(kept - (receipt.points_used - receipt.restored), 0) // 100
            give_back = max(receipt.earn.points - receipt.earn.reversed - target, 0)
            if give_back:
                self.book.reverse(receipt.earn, give_back)
        receipt.returned = after
        assert (result.points_restored, result.status) == (
            restore,
            "returned" if full else "partially_returned",
        )

    @precondition(lambda self: any(r.earn for r in self.receipts))
    @rule(pick=st.integers(0, 10**6))
    def purchase_shipped(self, pick):
        receipt = [r for r in self.receipts if r.earn][
            pick % len([r for r in self.receipts if r.earn])
        ]
        confirmed, error = self.attempt(
            lambda: returns.confirm_purchase(
                self.session, store_id=self.shop.store_id, receipt_no=receipt.number, as_of=self.now
            )
        )
        expected = self.book.confirm(receipt.earn)
        if expected == 0:
            assert error == "not_pending"
        else:
            assert (confirmed, error) == (expected, None)

    @invariant()
    def balance_agrees_with_the_model(self):
        view = ledger.balance(
            self.session, member_id=self.member, policy=self.policy, as_of=self.now
        )
        assert (view.available, view.pending, view.debt) == self.book.balance()

    @invariant()
    def every_lot_agrees_with_the_model(self):
        actual = [
            (
                lot.kind,
                lot.amount,
                lot.remaining,
                lot.expired_points,
                lot.available_at,
                lot.expires_at,
                lot.funding_partner_id,
            )
            for lot in s.lots_of(self.session, self.member)
        ]
        expected = [
            (
                lot.kind,
                lot.amount,
                lot.remaining,
                lot.written_off,
                lot.available_at,
                lot.expires_at,
                lot.partner,
            )
            for lot in self.book.lots
        ]
        assert actual == expected

    @invariant()
    def books_reconcile(self):
        assert reconcile.check(self.session, [self.member]) == []


def test_the_ledger_agrees_with_a_reference_model(session):
    machine = type("Machine", (LedgerMachine,), {"session": session})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

"""The ledger service on a real database: expiry, restores, debt, forfeit, pending points,
adjustments and reconciliation (each test rolled back, on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.core.settings import Settings
from kizuna.jobs.catalog import expire_points
from kizuna.jobs.registry import JobContext
from kizuna.ledger import adjustments, expiry, reconcile, reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType, ExpiryPolicy, ExpiryRule
from kizuna.ledger.models import AdjustmentRequest, Allocation, JournalEntry, Lot, PointAccount
from kizuna.ledger.reconcile import Invariant
from kizuna.outbox.models import OutboxEvent
from kizuna.rules.domain import BreakdownRow
from tests.factories import T0
from tests.integration import ledger_support as s

DAY = timedelta(days=1)


def expiries(session, member_id):
    return [lot.expires_at for lot in s.lots_of(session, member_id)]


def assert_books_balance(session, *member_ids):
    assert reconcile.check(session, member_ids) == []


# --- rolling expiry ---------------------------------------------------------------------------


def test_rolling_expiry_moves_on_earn_and_redeem_but_not_on_cancel_or_adjustment(session):
    shop = s.shop(session, s.policy(ExpiryPolicy(ExpiryRule.ROLLING, days=30)))
    member = s.member(session, shop)
    first = s.earn(session, shop, member, 100, T0)
    assert expiries(session, member) == [T0 + 30 * DAY]

    s.earn(session, shop, member, 10, T0 + 10 * DAY)
    assert expiries(session, member) == [T0 + 40 * DAY, T0 + 40 * DAY]

    spent = s.redeem(session, shop, member, 5, T0 + 20 * DAY)
    assert expiries(session, member) == [T0 + 50 * DAY, T0 + 50 * DAY]

    reversal.reverse(session, entry_id=spent.entry_id, policy=shop.policy, as_of=T0 + 25 * DAY)
    reversal.reverse(
        session, entry_id=first.entry_id, policy=shop.policy, as_of=T0 + 26 * DAY, points=10
    )
    adjustments.request_adjustment(
        session,
        member_id=member,
        points=5,
        reason_code="goodwill",
        requested_by="staff-1",
        policy=shop.policy,
        as_of=T0 + 27 * DAY,
    )
    assert expiries(session, member)[:2] == [T0 + 50 * DAY, T0 + 50 * DAY]
    assert_books_balance(session, member)


def test_rolling_expiry_does_not_revive_a_lot_that_has_already_expired(session):
    shop = s.shop(session, s.policy(ExpiryPolicy(ExpiryRule.ROLLING, days=30)))
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    s.earn(session, shop, member, 10, T0 + 31 * DAY)
    assert expiries(session, member) == [T0 + 30 * DAY, T0 + 61 * DAY]
    assert s.available(session, shop, member, T0 + 31 * DAY) == 10


# --- the expiry job ---------------------------------------------------------------------------


def test_an_expired_lot_is_never_spent_even_before_the_expiry_job_has_run(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    due = T0 + 30 * DAY
    assert s.available(session, shop, member, due - timedelta(seconds=1)) == 100
    assert s.available(session, shop, member, due) == 0
    with pytest.raises(KizunaError) as refused:
        s.redeem(session, shop, member, 1, due)
    assert refused.value.code == "insufficient_points"
    assert s.lots_of(session, member)[0].remaining == 100  # nothing written yet
    assert_books_balance(session, member)


def test_expiry_job_writes_one_entry_per_member_and_marks_each_lot_with_its_write_off(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    s.earn(session, shop, member, 20, T0, limited_until=T0 + 5 * DAY)
    s.earn(session, shop, member, 40, T0 + 2 * DAY)
    s.earn(session, shop, member, 7, T0 + 20 * DAY)  # due only at T0 + 50 days
    s.redeem(session, shop, member, 30, T0 + DAY)  # the limited 20 first, then 10 of the 100
    run_at = T0 + 40 * DAY

    expiry.expire_due(session, as_of=run_at)

    [entry] = s.entries_of(session, member, "expire")
    lots = s.lots_of(session, member)
    # Dated at the latest expiry among its lots: only from then on were all 130 points gone.
    assert (entry.amount, entry.occurred_at, entry.recorded_at) == (-130, T0 + 32 * DAY, run_at)
    assert (entry.partner_id, entry.debt_change) == (shop.partner_id, 0)
    assert [(lot.remaining, lot.expired_points, lot.expire_entry_id) for lot in lots] == [
        (0, 90, entry.id),
        (0, 0, None),  # used up before it expired: nothing to write off
        (0, 40, entry.id),
        (7, 0, None),
    ]
    assert session.scalars(select(Allocation).where(Allocation.entry_id == entry.id)).all() == []
    assert s.available(session, shop, member, run_at) == 7
    assert_books_balance(session, member)


def test_an_expire_entry_names_a_partner_only_when_all_its_lots_share_one(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    ledger.earn(  # an adjustment's lot is funded by no partner
        session,
        member_id=member,
        rows=[BreakdownRow("adjust", "goodwill", 5)],
        policy=shop.policy,
        occurred_at=T0,
        as_of=T0,
        entry_type=EntryType.ADJUST,
    )

    expiry.expire_due(session, as_of=T0 + 31 * DAY)

    [entry] = s.entries_of(session, member, "expire")
    assert (entry.amount, entry.partner_id) == (-105, None)
    lots = s.lots_of(session, member)
    assert [(lot.funding_partner_id, lot.expired_points) for lot in lots] == [
        (shop.partner_id, 100),
        (None, 5),
    ]
    assert_books_balance(session, member)


def test_expiry_job_run_twice_expires_nothing_more(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 50, T0)
    expiry.expire_due(session, as_of=T0 + 31 * DAY)
    expiry.expire_due(session, as_of=T0 + 32 * DAY)
    assert len(s.entries_of(session, member, "expire")) == 1


def test_expiry_job_publishes_one_event_per_member_and_batch(session):
    shop = s.shop(session)
    alice, bob = s.member(session, shop), s.member(session, shop)
    for day in range(3):
        s.earn(session, shop, alice, 10 + day, T0 + day * DAY)
    s.earn(session, shop, bob, 5, T0)

    expiry.expire_due(session, as_of=T0 + 40 * DAY)

    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.event_type == "points.expired", OutboxEvent.member_id.in_([alice, bob]))
        .order_by(OutboxEvent.member_id)
    ).all()
    assert [(e.member_id, e.payload["points"], e.payload["lots"]) for e in events] == [
        (alice, 33, 3),
        (bob, 5, 1),
    ]


def test_expiry_job_works_through_small_batches_until_nothing_is_due(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    for day in range(5):
        s.earn(session, shop, member, 10, T0 + day * DAY)
    run_at = T0 + 40 * DAY
    expiry.expire_due(session, as_of=run_at, batch_size=2)
    assert all(lot.remaining == 0 for lot in s.lots_of(session, member))
    # One entry per member and batch: lots 2 + 2 + 1.
    assert [e.amount for e in s.entries_of(session, member, "expire")] == [-20, -20, -10]
    assert_books_balance(session, member)


# --- restores, debt, forfeit, pending ---------------------------------------------------------


def test_restoring_points_to_an_expired_lot_makes_a_new_lot_with_the_grace_period(session):
    shop = s.shop(session, s.policy(grace_days=14))
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    spent = s.redeem(session, shop, member, 60, T0 + DAY)
    returned_at = T0 + 40 * DAY

    restored = reversal.reverse(
        session, entry_id=spent.entry_id, policy=shop.policy, as_of=returned_at
    )

    assert restored is not None
    assert restored.amount == 60
    lots = s.lots_of(session, member)
    assert [(lot.remaining, lot.expires_at) for lot in lots] == [
        (40, T0 + 30 * DAY),
        (60, returned_at + 14 * DAY),
    ]
    assert lots[1].source_entry_id == restored.entry_id
    assert s.available(session, shop, member, returned_at) == 60
    assert_books_balance(session, member)


def test_restoring_points_to_a_live_lot_gives_them_back_to_that_lot(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 100, T0)
    spent = s.redeem(session, shop, member, 60, T0 + DAY)
    reversal.reverse(
        session, entry_id=spent.entry_id, policy=shop.policy, as_of=T0 + 2 * DAY, points=25
    )
    assert [lot.remaining for lot in s.lots_of(session, member)] == [65]
    with pytest.raises(KizunaError) as refused:
        reversal.reverse(
            session, entry_id=spent.entry_id, policy=shop.policy, as_of=T0 + 2 * DAY, points=36
        )
    assert refused.value.code == "already_reversed"
    assert_books_balance(session, member)


def test_reversing_spent_points_makes_debt_that_the_next_earns_repay(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 100, T0)
    s.redeem(session, shop, member, 100, T0)

    cancel = reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0 + DAY)

    assert cancel is not None
    assert (cancel.amount, cancel.debt_change) == (-100, 100)
    view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0 + DAY)
    assert (view.available, view.debt, view.total) == (0, 100, -100)

    repaying = s.earn(session, shop, member, 30, T0 + 2 * DAY)
    assert (repaying.amount, repaying.debt_change, repaying.lot_ids) == (30, -30, [])
    s.earn(session, shop, member, 100, T0 + 3 * DAY)
    view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0 + 3 * DAY)
    assert (view.available, view.debt) == (30, 0)
    assert_books_balance(session, member)


def test_reversing_an_earn_whose_points_expired_costs_nothing_for_the_expired_part(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 100, T0)
    s.redeem(session, shop, member, 30, T0 + DAY)
    s.earn(session, shop, member, 50, T0 + 20 * DAY)
    expiry.expire_due(session, as_of=T0 + 31 * DAY)

    cancel = reversal.reverse(
        session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0 + 32 * DAY
    )

    # 70 expired (waived); the 30 spent come from the other lot.
    assert cancel is not None
    assert (cancel.amount, cancel.debt_change) == (-30, 0)
    assert s.available(session, shop, member, T0 + 32 * DAY) == 20
    assert_books_balance(session, member)


def test_reversing_an_expired_earn_in_parts_waives_the_expired_part_only_once(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 100, T0)
    s.redeem(session, shop, member, 40, T0 + DAY)  # 60 left, which expire
    s.earn(session, shop, member, 100, T0 + 20 * DAY)
    later = T0 + 31 * DAY

    first = reversal.reverse(
        session, entry_id=earned.entry_id, policy=shop.policy, as_of=later, points=50
    )
    expiry.expire_due(session, as_of=later)
    second = reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=later)

    assert first is not None
    assert second is not None
    assert (first.amount, second.amount) == (0, -40)  # 60 waived in all, the 40 spent taken
    assert s.available(session, shop, member, later) == 60
    assert_books_balance(session, member)


def test_forfeit_takes_every_point_pending_too_and_writes_off_the_debt(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 40, T0)
    s.earn(session, shop, member, 25, T0, available_at=T0 + 10 * DAY)

    posted = ledger.forfeit(session, member_id=member, as_of=T0 + DAY)

    assert posted is not None
    assert (posted.amount, posted.debt_change) == (-65, 0)
    view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0 + DAY)
    assert (view.available, view.pending, view.debt) == (0, 0, 0)
    assert ledger.forfeit(session, member_id=member, as_of=T0 + 2 * DAY) is None
    assert_books_balance(session, member)


def test_forfeit_of_a_member_in_debt_clears_it(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 50, T0)
    s.redeem(session, shop, member, 50, T0)
    reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0 + DAY)
    posted = ledger.forfeit(session, member_id=member, as_of=T0 + 2 * DAY)
    assert posted is not None
    assert (posted.amount, posted.debt_change) == (50, -50)
    assert ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0).debt == 0
    assert_books_balance(session, member)


def test_pending_points_cannot_be_spent_until_they_become_available(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 80, T0, available_at=T0 + 7 * DAY)
    view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0)
    assert (view.available, view.pending) == (0, 80)
    with pytest.raises(KizunaError) as refused:
        s.redeem(session, shop, member, 1, T0 + 6 * DAY)
    assert refused.value.code == "insufficient_points"
    s.redeem(session, shop, member, 80, T0 + 7 * DAY)
    assert_books_balance(session, member)


def test_a_failed_redeem_changes_nothing(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 10, T0)
    with pytest.raises(KizunaError):
        s.redeem(session, shop, member, 11, T0)
    assert len(s.entries_of(session, member)) == 1
    assert s.lots_of(session, member)[0].remaining == 10


def test_reverse_refuses_entries_that_cannot_be_reversed_and_negative_points(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 10, T0)
    cancel = reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0)
    assert cancel is not None
    with pytest.raises(KizunaError) as not_reversible:
        reversal.reverse(session, entry_id=cancel.entry_id, policy=shop.policy, as_of=T0)
    assert not_reversible.value.code == "not_reversible"
    with pytest.raises(KizunaError) as negative:
        reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0, points=-1)
    assert negative.value.code == "invalid_points"
    with pytest.raises(KizunaError) as missing:
        reversal.reverse(session, entry_id=10**12, policy=shop.policy, as_of=T0)
    assert missing.value.code == "entry_not_found"


# --- adjustments ------------------------------------------------------------------------------


def adjust(session, shop, member, points, *, by="staff-1", code="goodwill", reason=None):
    return adjustments.request_adjustment(
        session,
        member_id=member,
        points=points,
        reason_code=code,
        reason=reason,
        requested_by=by,
        policy=shop.policy,
        as_of=T0,
    )


def test_a_small_adjustment_posts_at_once_with_its_reason(session):
    shop = s.shop(session, s.policy(approval_threshold=100))
    member = s.member(session, shop)
    outcome = adjust(session, shop, member, 100, code="compensation")
    assert outcome.status == "posted"
    assert outcome.posted is not None
    entry = session.get(JournalEntry, outcome.posted.entry_id)
    assert entry is not None
    assert (entry.entry_type, entry.amount, entry.reason_code, entry.actor) == (
        "adjust",
        100,
        "compensation",
        "staff-1",
    )
    assert s.available(session, shop, member, T0) == 100


def test_a_large_adjustment_waits_for_a_second_person(session):
    shop = s.shop(session, s.policy(approval_threshold=100))
    member = s.member(session, shop)
    outcome = adjust(session, shop, member, 500, code="correction")
    assert outcome.status == "pending"
    assert outcome.posted is None
    assert s.available(session, shop, member, T0) == 0

    with pytest.raises(KizunaError) as refused:
        adjustments.approve_adjustment(
            session, request_id=outcome.request_id, approver="staff-1", policy=shop.policy, as_of=T0
        )
    assert (refused.value.code, refused.value.status) == ("self_approval", 403)

    posted = adjustments.approve_adjustment(
        session, request_id=outcome.request_id, approver="manager", policy=shop.policy, as_of=T0
    )
    request = session.get(AdjustmentRequest, outcome.request_id)
    assert request is not None
    assert (request.status, request.decided_by, request.entry_id) == (
        "approved",
        "manager",
        posted.entry_id,
    )
    assert s.available(session, shop, member, T0) == 500
    with pytest.raises(KizunaError) as twice:
        adjustments.approve_adjustment(
            session, request_id=outcome.request_id, approver="boss", policy=shop.policy, as_of=T0
        )
    assert twice.value.code == "adjustment_already_decided"
    assert_books_balance(session, member)


def test_a_rejected_adjustment_never_posts(session):
    shop = s.shop(session, s.policy(approval_threshold=10))
    member = s.member(session, shop)
    outcome = adjust(session, shop, member, -50)
    adjustments.reject_adjustment(
        session, request_id=outcome.request_id, decided_by="manager", as_of=T0
    )
    with pytest.raises(KizunaError) as refused:
        adjustments.approve_adjustment(
            session, request_id=outcome.request_id, approver="boss", policy=shop.policy, as_of=T0
        )
    assert refused.value.code == "adjustment_already_decided"
    assert s.entries_of(session, member, "adjust") == []


def test_a_negative_adjustment_takes_points_in_redemption_order_and_never_makes_debt(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 50, T0)
    s.earn(session, shop, member, 20, T0, limited_until=T0 + 5 * DAY)
    adjust(session, shop, member, -30, code="correction")
    assert [lot.remaining for lot in s.lots_of(session, member)] == [40, 0]
    with pytest.raises(KizunaError) as refused:
        adjust(session, shop, member, -41, code="correction")
    assert refused.value.code == "insufficient_points"
    assert ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0).debt == 0
    assert_books_balance(session, member)


def test_a_positive_adjustment_does_not_repay_debt(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 40, T0)
    s.redeem(session, shop, member, 40, T0)
    reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0)
    adjust(session, shop, member, 25)
    view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0)
    assert (view.available, view.debt) == (25, 40)
    assert_books_balance(session, member)


@pytest.mark.parametrize(
    ("points", "code", "reason", "error"),
    [
        (10, "other", None, "reason_required"),
        (10, "other", "   ", "reason_required"),
        (10, "because", "x", "invalid_reason_code"),
        (0, "goodwill", None, "invalid_points"),
    ],
)
def test_adjustments_need_a_known_reason_and_some_points(session, points, code, reason, error):
    shop = s.shop(session)
    member = s.member(session, shop)
    with pytest.raises(KizunaError) as refused:
        adjust(session, shop, member, points, code=code, reason=reason)
    assert refused.value.code == error


def test_an_adjustment_with_reason_other_and_a_text_posts(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    outcome = adjust(session, shop, member, 5, code="other", reason="店頭での手書き伝票の反映")
    assert outcome.posted is not None
    entry = session.get(JournalEntry, outcome.posted.entry_id)
    assert entry is not None
    assert entry.reason == "店頭での手書き伝票の反映"


# --- reconciliation ---------------------------------------------------------------------------


def busy_member(session):
    """A member whose history has every kind of entry."""
    shop = s.shop(session)
    member = s.member(session, shop)
    earned = s.earn(session, shop, member, 100, T0)
    s.earn(session, shop, member, 30, T0, limited_until=T0 + 5 * DAY)
    spent = s.redeem(session, shop, member, 60, T0 + DAY)
    reversal.reverse(
        session, entry_id=spent.entry_id, policy=shop.policy, as_of=T0 + 2 * DAY, points=20
    )
    s.redeem(session, shop, member, 80, T0 + 3 * DAY)
    # The earn's own lot holds 10 of its 100 points: the other 90 become debt ...
    reversal.reverse(session, entry_id=earned.entry_id, policy=shop.policy, as_of=T0 + 4 * DAY)
    # ... repaid by the next earn, whose remaining 60 points then expire.
    s.earn(session, shop, member, 150, T0 + 5 * DAY)
    expiry.expire_due(session, as_of=T0 + 60 * DAY)
    adjust(session, shop, member, 15)
    return shop, member


def test_reconcile_is_clean_for_a_member_with_every_kind_of_entry(session):
    _, member = busy_member(session)
    kinds = {entry.entry_type for entry in s.entries_of(session, member)}
    assert kinds == {"earn", "redeem", "cancel", "expire", "adjust"}
    assert reconcile.check(session, [member]) == []


def corrupt_lot(session, member):
    spent = s.lots_of(session, member)[0]
    session.execute(update(Lot).where(Lot.id == spent.id).values(remaining=spent.remaining + 1))


def corrupt_entry(session, member):
    entry = s.entries_of(session, member, "redeem")[0]
    session.execute(
        update(JournalEntry).where(JournalEntry.id == entry.id).values(amount=entry.amount - 1)
    )


def corrupt_debt(session, member):
    session.execute(update(PointAccount).where(PointAccount.member_id == member).values(debt=7))


def corrupt_write_off(session, member):
    written_off = next(lot for lot in s.lots_of(session, member) if lot.expired_points)
    session.execute(
        update(Lot).where(Lot.id == written_off.id).values(expired_points=Lot.expired_points - 1)
    )


def corrupt_allocation(session, member):
    entry = s.entries_of(session, member, "redeem")[0]
    allocation = session.scalars(select(Allocation).where(Allocation.entry_id == entry.id)).first()
    session.execute(update(Allocation).where(Allocation.id == allocation.id).values(points=-3))


def corrupt_cancel(session, member):
    cancel = s.entries_of(session, member, "cancel")[0]
    session.execute(
        update(JournalEntry).where(JournalEntry.id == cancel.id).values(reversed_points=1000)
    )


def corrupt_cancel_target(session, member):
    shop = s.shop(session)
    stranger = s.member(session, shop)
    theirs = s.earn(session, shop, stranger, 500, T0)
    cancel = s.entries_of(session, member, "cancel")[0]
    session.execute(
        update(JournalEntry)
        .where(JournalEntry.id == cancel.id)
        .values(reverses_entry_id=theirs.entry_id)
    )


@pytest.mark.parametrize(
    ("corrupt", "broken"),
    [
        (corrupt_lot, {Invariant.BALANCE, Invariant.LOT_ALLOCATIONS}),
        (
            corrupt_entry,
            {Invariant.BALANCE, Invariant.ENTRY_BALANCED, Invariant.REDEEM_ALLOCATIONS},
        ),
        (corrupt_debt, {Invariant.BALANCE, Invariant.DEBT}),
        (
            corrupt_write_off,
            {Invariant.LOT_ALLOCATIONS, Invariant.ENTRY_BALANCED, Invariant.EXPIRE_LOTS},
        ),
        (
            corrupt_allocation,
            {Invariant.LOT_ALLOCATIONS, Invariant.ENTRY_BALANCED, Invariant.REDEEM_ALLOCATIONS},
        ),
        (corrupt_cancel, {Invariant.CANCEL_WITHIN}),
        (corrupt_cancel_target, {Invariant.CANCEL_TARGET}),
    ],
)
def test_reconcile_names_the_member_and_the_invariant_a_corrupted_row_breaks(
    session, corrupt, broken
):
    _, member = busy_member(session)
    _, bystander = busy_member(session)
    corrupt(session, member)
    found = reconcile.check(session, [member, bystander])
    assert {v.member_id for v in found} == {member}
    assert {v.invariant for v in found} == broken


# --- `kizuna reconcile` -----------------------------------------------------------------------


@pytest.fixture
def cli_on(fresh_database, monkeypatch):
    """Run `kizuna …` against the module's committed database."""
    from typer.testing import CliRunner

    from kizuna.cli.main import app
    from kizuna.core.settings import get_settings

    monkeypatch.setenv("KIZUNA_DATABASE_URL", fresh_database.url)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


def test_kizuna_reconcile_exits_0_on_clean_books_and_1_naming_the_broken_member(
    fresh_database, cli_on
):
    with fresh_database.write() as session:
        _, member = busy_member(session)
        _, bystander = busy_member(session)

    clean = cli_on("reconcile")
    assert clean.exit_code == 0, clean.output
    assert "違反はありません" in clean.output

    with fresh_database.write() as session:
        corrupt_lot(session, member)
    try:
        broken = cli_on("reconcile", "--lang", "en")
        assert broken.exit_code == 1, broken.output
        assert f"member: {member}" in broken.output
        assert "lot_remaining_matches_allocations" in broken.output
        assert "balance_matches_journal" in broken.output
        only_bystander = cli_on("reconcile", "--member", str(bystander))
        assert only_bystander.exit_code == 0, only_bystander.output
    finally:
        with fresh_database.write() as session:  # put the books right again
            spent = s.lots_of(session, member)[0]
            session.execute(update(Lot).where(Lot.id == spent.id).values(remaining=0))


# --- the worker's expiry job ------------------------------------------------------------------


def test_worker_expiry_job_commits_what_was_due_a_margin_before_now(fresh_database):
    now = utcnow()
    with fresh_database.write() as session:
        shop = s.shop(session)
        member = s.member(session, shop)
        term = 30 * DAY  # the shop's fixed term
        s.earn(session, shop, member, 10, now - term - expiry.JOB_LAG - timedelta(seconds=1))
        s.earn(session, shop, member, 20, now - term - expiry.JOB_LAG + timedelta(seconds=30))

    done = expire_points(JobContext(database=fresh_database, settings=Settings(), as_of=now))

    assert done >= 1
    with fresh_database.read() as session:
        lots = s.lots_of(session, member)
        assert [(lot.remaining, lot.expired_points) for lot in lots] == [(0, 10), (20, 0)]
        assert s.available(session, shop, member, now) == 0  # expired either way
        assert_books_balance(session, member)

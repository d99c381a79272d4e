"""The ledger's pure rules: allocation order, expiry dates, rounding, restores and reversals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kizuna.core.errors import KizunaError
from kizuna.ledger.domain import (
    DueLot,
    ExpiryPolicy,
    ExpiryRule,
    LedgerPolicy,
    LotKind,
    LotState,
    WriteOff,
    allocate_redemption,
    balance_of,
    expired_points_of,
    month_end_after,
    plan_earn_reversal,
    restore_plan,
    restored_after_return,
    split_debt_repayment,
    write_offs,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def lot(
    lot_id: int,
    remaining: int,
    *,
    kind: LotKind = LotKind.STANDARD,
    earned: datetime = T0,
    expires: datetime | None = T0 + 365 * DAY,
    available: datetime | None = None,
    amount: int | None = None,
    expired_points: int = 0,
) -> LotState:
    return LotState(
        id=lot_id,
        kind=kind,
        amount=amount if amount is not None else remaining,
        remaining=remaining,
        earned_at=earned,
        available_at=available or earned,
        expires_at=expires,
        expired_points=expired_points,
    )


# --- allocation order -------------------------------------------------------------------------


def test_redeem_takes_limited_points_before_standard_ones():
    standard = lot(1, 100, expires=T0 + 10 * DAY)
    limited = lot(2, 100, kind=LotKind.LIMITED, expires=T0 + 90 * DAY)
    assert allocate_redemption([standard, limited], 150, T0) == [(2, 100), (1, 50)]


def test_redeem_takes_soonest_expiring_lots_first():
    later = lot(1, 50, expires=T0 + 300 * DAY)
    sooner = lot(2, 50, expires=T0 + 30 * DAY)
    never = lot(3, 50, expires=None)
    assert allocate_redemption([never, later, sooner], 120, T0) == [(2, 50), (1, 50), (3, 20)]


def test_redeem_breaks_expiry_ties_by_earning_time_then_lot_id():
    expires = T0 + 100 * DAY
    newer = lot(1, 10, earned=T0, expires=expires)
    older = lot(2, 10, earned=T0 - DAY, expires=expires)
    twin = lot(3, 10, earned=T0 - DAY, expires=expires)
    assert allocate_redemption([twin, newer, older], 25, T0) == [(2, 10), (3, 10), (1, 5)]


def test_redeem_never_touches_pending_or_expired_lots():
    pending = lot(1, 100, available=T0 + DAY)
    expired = lot(2, 100, earned=T0 - 30 * DAY, expires=T0)
    usable = lot(3, 40)
    assert allocate_redemption([pending, expired, usable], 40, T0) == [(3, 40)]
    with pytest.raises(KizunaError) as refused:
        allocate_redemption([pending, expired, usable], 41, T0)
    assert refused.value.code == "insufficient_points"
    assert refused.value.details == {"requested": 41, "available": 40}


@pytest.mark.parametrize("points", [0, -5])
def test_redeem_of_no_or_negative_points_is_invalid(points):
    with pytest.raises(KizunaError) as refused:
        allocate_redemption([lot(1, 10)], points, T0)
    assert refused.value.code == "invalid_points"


def test_a_lot_is_expired_from_the_instant_of_its_expiry_on():
    expiring = lot(1, 10, expires=T0 + DAY)
    assert expiring.is_available(T0 + DAY - timedelta(microseconds=1))
    assert expiring.is_expired(T0 + DAY)
    assert not expiring.is_available(T0 + DAY)


def test_an_expired_lot_is_never_pending():
    never_available = lot(1, 10, available=T0 + 10 * DAY, expires=T0 + 5 * DAY)
    assert never_available.is_pending(T0 + 4 * DAY)
    assert not never_available.is_pending(T0 + 5 * DAY)


# --- expiry dates -----------------------------------------------------------------------------


def test_fixed_term_counts_exactly_n_days_from_earning():
    policy = ExpiryPolicy(ExpiryRule.FIXED, days=365)
    assert policy.expires_at(T0, TOKYO) == T0 + 365 * DAY


def test_rolling_term_starts_as_n_days_from_earning():
    assert ExpiryPolicy(ExpiryRule.ROLLING, days=30).expires_at(T0, TOKYO) == T0 + 30 * DAY


def test_never_expiring_points_have_no_expiry():
    assert ExpiryPolicy(ExpiryRule.NEVER).expires_at(T0, TOKYO) is None


def test_month_end_is_midnight_tokyo_on_the_first_of_the_following_month():
    # Earned 2026-01-15 12:00 JST; end of the month 0 months later = 2026-02-01 00:00 JST.
    earned = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    assert month_end_after(earned, 0, TOKYO) == datetime(2026, 1, 31, 15, 0, tzinfo=UTC)


def test_month_end_uses_the_tokyo_date_not_the_utc_date():
    # 2026-01-31 15:30 UTC is already 1 February 00:30 in Tokyo: a February earn.
    earned = datetime(2026, 1, 31, 15, 30, tzinfo=UTC)
    expires = ExpiryPolicy(ExpiryRule.MONTH_END, months=0).expires_at(earned, TOKYO)
    assert expires == datetime(2026, 2, 28, 15, 0, tzinfo=UTC)  # 2026-03-01 00:00 JST


def test_month_end_n_months_later_crosses_the_year_and_leap_february():
    december = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
    assert month_end_after(december, 12, TOKYO) == datetime(2027, 12, 31, 15, 0, tzinfo=UTC)
    january = datetime(2028, 1, 10, 3, 0, tzinfo=UTC)
    assert month_end_after(january, 1, TOKYO) == datetime(2028, 2, 29, 15, 0, tzinfo=UTC)


def test_month_end_in_a_zone_with_daylight_saving_is_local_midnight():
    # New York switches to EDT on 2026-03-08: April 1st 00:00 is 04:00 UTC, not 05:00.
    earned = datetime(2026, 3, 5, 17, 0, tzinfo=UTC)
    assert month_end_after(earned, 0, NEW_YORK) == datetime(2026, 4, 1, 4, 0, tzinfo=UTC)


def test_fixed_terms_are_exact_days_whatever_the_zone_does():
    # Across the DST change a fixed term is still 2 × 24 hours.
    earned = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert ExpiryPolicy(ExpiryRule.FIXED, days=2).expires_at(earned, NEW_YORK) == earned + 2 * DAY


def test_ledger_policy_survives_a_round_trip_through_its_stored_form():
    policy = LedgerPolicy(
        expiry={
            LotKind.STANDARD: ExpiryPolicy(ExpiryRule.ROLLING, days=365),
            LotKind.LIMITED: ExpiryPolicy(ExpiryRule.MONTH_END, months=1),
        },
        restore_grace_days=14,
        approval_threshold=500,
    )
    assert LedgerPolicy.from_dict(policy.to_dict()) == policy


# --- balance view -----------------------------------------------------------------------------


def test_balance_shows_available_pending_by_kind_debt_and_next_expiry_days():
    lots = [
        lot(1, 100, expires=datetime(2026, 1, 31, 15, 0, tzinfo=UTC)),  # 2/1 00:00 JST
        lot(2, 30, kind=LotKind.LIMITED, expires=datetime(2026, 1, 31, 15, 0, tzinfo=UTC)),
        lot(3, 50, available=T0 + DAY),
        lot(4, 70, earned=T0 - 40 * DAY, expires=T0),
        lot(5, 0),
    ]
    view = balance_of(lots, 20, T0, TOKYO)
    assert (view.available, view.pending, view.debt, view.total) == (130, 50, 20, 160)
    assert view.by_kind == {"standard": 100, "limited": 30}
    # Points expiring at 00:00 on 1 February can be used until 31 January.
    assert [(e.day, e.points) for e in view.next_expiring] == [(date(2026, 1, 31), 130)]


# --- restores and returns ---------------------------------------------------------------------


def test_restore_plan_gives_points_back_to_the_lots_they_came_from_in_order():
    allocations = [(7, 30), (8, 50), (9, 20)]
    assert restore_plan(allocations, 0, 40) == [(7, 30), (8, 10)]


def test_restore_plan_skips_what_earlier_restores_gave_back():
    allocations = [(7, 30), (8, 50), (9, 20)]
    assert restore_plan(allocations, 40, 50) == [(8, 40), (9, 10)]


def test_restore_plan_refuses_to_restore_more_than_was_redeemed():
    with pytest.raises(KizunaError) as refused:
        restore_plan([(7, 30)], 20, 11)
    assert refused.value.code == "already_reversed"


def test_partial_returns_restore_redeemed_points_in_proportion_rounded_down():
    # 100 points paid on a 300 yen purchase; returns of 100 yen at a time.
    assert restored_after_return(100, 100, 300) == 33
    assert restored_after_return(100, 200, 300) == 66
    assert restored_after_return(100, 300, 300) == 100


def test_refunds_beyond_the_purchase_restore_no_more_than_was_redeemed():
    assert restored_after_return(100, 400, 300) == 100
    assert restored_after_return(50, 0, 0) == 50


@given(
    redeemed=st.integers(0, 10_000),
    parts=st.lists(st.integers(1, 5_000), min_size=1, max_size=6),
)
def test_returns_that_add_up_to_the_whole_purchase_restore_every_point(redeemed, parts):
    total = sum(parts)
    restored = [
        restored_after_return(redeemed, sum(parts[: i + 1]), total) for i in range(len(parts))
    ]
    assert restored == sorted(restored)
    assert all(0 <= r <= redeemed for r in restored)
    assert restored[-1] == redeemed


def test_an_earn_repays_debt_before_anything_becomes_a_lot():
    assert split_debt_repayment(100, 30) == (30, 70)
    assert split_debt_repayment(20, 30) == (20, 0)
    assert split_debt_repayment(20, 0) == (0, 20)


# --- reversing an earn ------------------------------------------------------------------------


def test_earn_reversal_takes_its_own_unspent_lots_first_pending_too():
    own = [lot(1, 40, available=T0 + DAY), lot(2, 30)]
    others = [lot(3, 100)]
    plan = plan_earn_reversal(
        own_lots=own, expired_points=0, other_lots=others, points=60, as_of=T0
    )
    assert plan.from_own_lots == [(1, 40), (2, 20)]
    assert (plan.waived, plan.from_other_lots, plan.debt, plan.amount) == (0, [], 0, -60)


def test_earn_reversal_waives_the_expired_part_then_takes_other_lots_then_makes_debt():
    # The earn was 100: 20 left unspent, 30 expired, 50 spent.
    own = [lot(1, 20), lot(2, 30, amount=80, earned=T0 - 40 * DAY, expires=T0)]
    others = [lot(3, 25, expires=T0 + 50 * DAY), lot(4, 10, kind=LotKind.LIMITED)]
    plan = plan_earn_reversal(
        own_lots=own,
        expired_points=expired_points_of(own, T0),
        other_lots=others,
        points=100,
        as_of=T0,
    )
    assert plan.from_own_lots == [(1, 20)]
    assert plan.waived == 30
    assert plan.from_other_lots == [(4, 10), (3, 25)]
    assert plan.debt == 15
    assert plan.amount == -70  # 20 + 35 taken + 15 debt; the expired 30 cost nothing


def test_earn_reversal_does_not_take_other_pending_points():
    others = [lot(3, 100, available=T0 + DAY)]
    plan = plan_earn_reversal(own_lots=[], expired_points=0, other_lots=others, points=40, as_of=T0)
    assert (plan.from_other_lots, plan.debt) == ([], 40)


def test_expired_points_of_an_earn_count_both_written_off_and_overdue_lots():
    written_off = lot(3, 0, amount=9, earned=T0 - 50 * DAY, expires=T0 - DAY, expired_points=7)
    own = [lot(1, 10, earned=T0 - 40 * DAY, expires=T0), lot(2, 5), written_off]
    assert expired_points_of(own, T0) == 17


# --- expiry write-offs ------------------------------------------------------------------------


def test_write_offs_make_one_entry_per_member_dated_at_its_latest_expiry():
    due = [
        DueLot(1, member_id=20, remaining=30, expires_at=T0 - 2 * DAY, funding_partner_id=5),
        DueLot(2, member_id=10, remaining=7, expires_at=T0, funding_partner_id=5),
        DueLot(3, member_id=20, remaining=12, expires_at=T0 - DAY, funding_partner_id=5),
    ]
    assert write_offs(due) == [
        WriteOff(member_id=10, points=7, occurred_at=T0, partner_id=5, lot_ids=[2]),
        WriteOff(member_id=20, points=42, occurred_at=T0 - DAY, partner_id=5, lot_ids=[1, 3]),
    ]


def test_a_write_off_names_a_partner_only_when_all_its_lots_share_one():
    mixed = [DueLot(1, 10, 5, T0, funding_partner_id=5), DueLot(2, 10, 5, T0, None)]
    two = [DueLot(1, 10, 5, T0, funding_partner_id=5), DueLot(2, 10, 5, T0, 6)]
    assert write_offs(mixed)[0].partner_id is None
    assert write_offs(two)[0].partner_id is None

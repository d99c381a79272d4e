"""Business stories of receipts: earn, pay with points, return part or all, EC pending points."""

from datetime import timedelta

import pytest

from kizuna.core.errors import KizunaError
from kizuna.ledger import service as ledger
from kizuna.ledger.reconcile import check
from kizuna.partners.service import policies
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.rules.domain import EarnPolicy, PurchaseLine
from tests import factories as f

T0 = f.T0


@pytest.fixture
def shop(session):
    program = f.program(session)
    partner = f.partner(session, program)
    store = f.store(session, partner)
    member = f.member(session, program)
    return program, store, member


def buy(
    session, store, member, receipt, lines, *, redeem=0, at=T0, pending_until=None, offline=False
):
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=receipt,
        occurred_at=at,
        lines=[PurchaseLine(sku=s, amount=a, quantity=q, category=c) for s, a, q, c in lines],
        redeem_points=redeem,
        pending_until=pending_until,
        offline=offline,
    )
    return purchases.commit_purchase(session, request=request, as_of=at, actor="test")


def available(session, program, member, at):
    return ledger.balance(
        session, member_id=member.id, policy=policies(session, program.id).ledger, as_of=at
    )


def test_purchase_earns_one_point_per_100_yen_rounded_down_per_receipt(session, shop):
    _, store, member = shop
    result = buy(session, store, member, "R1", [("A", 1050, 1, None), ("B", 1049, 1, None)])
    assert result.earned == 20  # 2099 yen → 20 points, rounded once per receipt
    assert [row.rule for row in result.breakdown] == ["base"]
    assert result.balance.available == 20


def test_excluded_category_and_points_paid_amount_earn_nothing(session):
    program = f.program(session, earn=EarnPolicy(excluded_categories=frozenset({"tobacco"})))
    store = f.store(session, f.partner(session, program))
    member = f.member(session, program)
    buy(session, store, member, "R1", [("A", 5000, 1, None)])
    result = buy(
        session,
        store,
        member,
        "R2",
        [("A", 1000, 1, None), ("T", 600, 1, "tobacco")],
        redeem=50,
        at=T0 + timedelta(hours=1),
    )
    assert result.earned == 9  # (1000 − 50 paid with points) / 100; tobacco earns nothing
    assert result.balance.available == 50 - 50 + 9


def test_duplicate_receipt_at_the_same_store_is_refused_and_changes_nothing(session, shop):
    program, store, member = shop
    buy(session, store, member, "R1", [("A", 1000, 1, None)])
    with pytest.raises(KizunaError) as refused:
        buy(session, store, member, "R1", [("A", 9000, 1, None)])
    assert refused.value.code == "duplicate_receipt"
    assert available(session, program, member, T0).available == 10


def test_partial_returns_restore_redeemed_points_cumulatively_and_full_cancel_finishes(
    session, shop
):
    program, store, member = shop
    buy(session, store, member, "R0", [("A", 10000, 1, None)])  # 100 points
    result = buy(
        session, store, member, "R1", [("A", 3000, 3, None)], redeem=100, at=T0 + timedelta(hours=1)
    )
    assert result.earned == 29  # (3000 − 100) / 100
    later = T0 + timedelta(days=1)
    first = returns.return_purchase(
        session, store_id=store.id, receipt_no="R1", lines=[ReturnLine(0, 1)], as_of=later
    )
    assert first.points_restored == 33  # floor(100 × 1000 / 3000)
    # kept: 2000 yen, 67 points still used → floor(1933 / 100) = 19 → reverse 10
    assert first.points_reversed == 10
    second = returns.return_purchase(
        session, store_id=store.id, receipt_no="R1", lines=[ReturnLine(0, 1)], as_of=later
    )
    assert second.points_restored == 66 - 33  # floor(100 × 2000 / 3000) − 33
    final = returns.return_purchase(
        session, store_id=store.id, receipt_no="R1", lines=None, as_of=later
    )
    assert final.status == "returned"
    assert 33 + 33 + final.points_restored == 100
    assert available(session, program, member, later).available == 100
    with pytest.raises(KizunaError) as again:
        returns.return_purchase(
            session, store_id=store.id, receipt_no="R1", lines=None, as_of=later
        )
    assert again.value.code == "return_exceeds_purchase"
    assert check(session) == []


def test_reversal_of_spent_points_becomes_debt_repaid_by_the_next_earn(session, shop):
    program, store, member = shop
    buy(session, store, member, "R1", [("A", 10000, 1, None)])  # 100 points
    buy(session, store, member, "R2", [("A", 8000, 1, None)], redeem=80, at=T0 + timedelta(hours=1))
    later = T0 + timedelta(days=2)
    result = returns.return_purchase(
        session, store_id=store.id, receipt_no="R1", lines=None, as_of=later
    )
    # R1's lot had 100; R2 spent 80 of it and earned 79 → 20 own + 79 other + 1 debt
    assert result.points_reversed == 100
    assert result.debt_added == 1
    view = available(session, program, member, later)
    assert (view.available, view.debt) == (0, 1)
    buy(session, store, member, "R3", [("A", 500, 1, None)], at=later)
    view = available(session, program, member, later)
    assert (view.available, view.debt) == (4, 0)
    assert check(session) == []


def test_ec_points_stay_pending_until_confirmed_and_vanish_if_cancelled_first(session, shop):
    program, store, member = shop
    window = T0 + timedelta(days=14)
    buy(session, store, member, "EC1", [("A", 3000, 1, None)], pending_until=window)
    buy(session, store, member, "EC2", [("A", 2000, 1, None)], pending_until=window)
    view = available(session, program, member, T0)
    assert (view.available, view.pending) == (0, 50)
    assert returns.confirm_purchase(session, store_id=store.id, receipt_no="EC1", as_of=T0) == 30
    returns.return_purchase(session, store_id=store.id, receipt_no="EC2", lines=None, as_of=T0)
    view = available(session, program, member, T0)
    assert (view.available, view.pending) == (30, 0)


def test_offline_redemption_is_refused_and_late_earn_expires_from_occurred_at(session, shop):
    program, store, member = shop
    with pytest.raises(KizunaError) as refused:
        buy(session, store, member, "OFF1", [("A", 1000, 1, None)], redeem=1, offline=True)
    assert refused.value.code == "offline_redemption_refused"
    occurred = T0 - timedelta(days=364)
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no="OFF2",
        occurred_at=occurred,
        lines=[PurchaseLine("A", 1000)],
        offline=True,
    )
    purchases.commit_purchase(session, request=request, as_of=T0)
    assert available(session, program, member, T0).available == 10
    assert available(session, program, member, occurred + timedelta(days=365)).available == 0

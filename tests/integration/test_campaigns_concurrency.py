"""Budgets and caps hold under 32 purchases committed at once, each in its own transaction."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage
from tests import factories as f

pytestmark = pytest.mark.postgres_only
BUYERS = 32


def _commit_all(database, requests):
    """Commit every request from its own thread and transaction, all released at once."""
    start = threading.Barrier(len(requests))

    def commit(request):
        start.wait()
        with database.write() as session:
            result = purchases.commit_purchase(session, request=request, as_of=request.occurred_at)
        return [row.points for row in result.breakdown if row.rule.startswith("campaign:")]

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return [sum(points) for points in pool.map(commit, requests)]


def _request(member_id, store_id, n):
    return PurchaseRequest(
        member_id=member_id,
        store_id=store_id,
        receipt_no=f"C{member_id}-{n}",
        occurred_at=f.T0,
        lines=[PurchaseLine(sku="A", amount=1000)],
    )


def test_32_concurrent_purchases_never_overspend_the_budget(fresh_database):
    # given a campaign of 10 points per purchase with a budget of 155 points, and 32 members
    with fresh_database.write() as session:
        program = f.program(session)
        store = f.store(session, f.partner(session, program))
        view = f.campaign(session, program, action={"type": "fixed", "points": 10}, budget=155)
        members = [f.member(session, program).id for _ in range(BUYERS)]
        campaign_id, store_id = view.campaign.id, store.id
    # when they all buy at the same moment
    earned = _commit_all(fresh_database, [_request(m, store_id, 0) for m in members])
    # then exactly the budget was granted, and the counter agrees with the grants
    assert sum(earned) == 155
    assert sorted(earned, reverse=True)[:17] == [10] * 15 + [5, 0]
    with fresh_database.read() as session:
        assert session.get(Campaign, campaign_id).budget_used == 155
        granted = select(func.sum(CampaignGrant.points)).where(
            CampaignGrant.campaign_id == campaign_id
        )
        assert session.scalar(granted) == 155


def test_32_concurrent_purchases_of_one_member_never_pass_the_cap(fresh_database):
    # given a campaign of 10 points per purchase capped at 45 points per member
    with fresh_database.write() as session:
        program = f.program(session)
        store = f.store(session, f.partner(session, program))
        view = f.campaign(
            session, program, action={"type": "fixed", "points": 10}, per_member_cap=45
        )
        member_id = f.member(session, program).id
        campaign_id, store_id = view.campaign.id, store.id
    # when one member's 32 receipts arrive at once from 32 tills
    earned = _commit_all(fresh_database, [_request(member_id, store_id, n) for n in range(BUYERS)])
    # then the member got exactly the cap
    assert sum(earned) == 45
    with fresh_database.read() as session:
        assert session.get(CampaignMemberUsage, (campaign_id, member_id)).points == 45


def test_one_members_returns_and_purchases_at_once_take_locks_in_one_order(fresh_database):
    # given a budgeted campaign and a member with 16 receipts that earned from it
    with fresh_database.write() as session:
        program = f.program(session)
        store = f.store(session, f.partner(session, program))
        view = f.campaign(session, program, action={"type": "fixed", "points": 10}, budget=10**6)
        member_id = f.member(session, program).id
        campaign_id, store_id = view.campaign.id, store.id
    _commit_all(fresh_database, [_request(member_id, store_id, n) for n in range(16)])
    # when those receipts are returned while 16 new ones of the same member are committed
    start = threading.Barrier(2 * 16)

    def give_back(n):
        start.wait()
        with fresh_database.write() as session:
            returns.return_purchase(
                session, store_id=store_id, receipt_no=f"C{member_id}-{n}", lines=None, as_of=f.T0
            )

    def buy(n):
        start.wait()
        with fresh_database.write() as session:
            purchases.commit_purchase(
                session, request=_request(member_id, store_id, 100 + n), as_of=f.T0
            )

    with ThreadPoolExecutor(max_workers=2 * 16) as pool:
        work = [pool.submit(give_back, n) for n in range(16)]
        work += [pool.submit(buy, n) for n in range(16)]
        failures = [job.exception() for job in work if job.exception() is not None]
    # then none deadlocked (each takes the member's lock before the campaign's counters), and the
    # budget used is the 16 receipts kept
    assert failures == []
    with fresh_database.read() as session:
        assert session.get(Campaign, campaign_id).budget_used == 160

"""Campaigns in the earn: rows per campaign, windows in Tokyo time, limits, versions, returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from kizuna.ledger.models import Lot
from kizuna.partners.service import policies
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.rules import manage
from kizuna.rules import service as rules
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage
from tests import factories as f

T0 = f.T0
_receipts = iter(range(1, 10**6))


@pytest.fixture
def shop(session):
    program = f.program(session)
    store = f.store(session, f.partner(session, program))
    member = f.member(session, program)
    return program, store, member


def buy(session, store, member, lines, *, at=T0, channel="pos", redeem=0):
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=f"R{next(_receipts)}",
        occurred_at=at,
        lines=[PurchaseLine(sku=s, amount=a, quantity=q, category=c) for s, a, q, c in lines],
        channel=channel,
        redeem_points=redeem,
    )
    return purchases.commit_purchase(session, request=request, as_of=at, actor="test")


def rows_of(result):
    return {
        row.rule.split(":")[0] if row.rule.startswith("campaign") else row.rule: row.points
        for row in result.breakdown
    }


def test_double_points_adds_the_base_once_more_as_its_own_row(session, shop):
    program, store, member = shop
    double = f.campaign(session, program, name="ポイント2倍")
    result = buy(session, store, member, [("A", 3000, 1, None)])
    assert [(row.rule, row.label, row.points) for row in result.breakdown] == [
        ("base", "通常ポイント", 30),
        (f"campaign:{double.campaign.code}", "ポイント2倍", 30),
    ]
    assert result.balance.available == 60


def test_fixed_per_item_and_category_multiplier_bonuses(session, shop):
    program, store, member = shop
    f.campaign(session, program, action={"type": "fixed", "points": 50})
    f.campaign(session, program, action={"type": "per_item", "points": 10, "skus": ["TEA"]})
    f.campaign(
        session, program, action={"type": "multiply", "times": "1.5", "categories": ["food"]}
    )
    result = buy(session, store, member, [("TEA", 300, 3, "drink"), ("BREAD", 1000, 1, "food")])
    points = [row.points for row in result.breakdown]
    # base 13; fixed 50; 3 × TEA × 10; (1.5 − 1) × 10 points of the food line
    assert points == [13, 50, 30, 5]


def test_limited_points_get_a_lot_of_their_own_with_their_own_expiry(session, shop):
    program, store, member = shop
    until = datetime(2026, 2, 1, 15, 0, tzinfo=UTC)
    f.campaign(session, program, points_kind="limited", limited_until=until.isoformat())
    result = buy(session, store, member, [("A", 2000, 1, None)])
    lots = session.execute(
        select(Lot.kind, Lot.amount, Lot.expires_at).where(Lot.member_id == member.id)
    ).all()
    assert sorted(lots, key=lambda lot: lot.kind) == [
        ("limited", 20, until),
        ("standard", 20, T0 + timedelta(days=365)),
    ]
    assert result.breakdown[1].kind == "limited"


def test_exclusive_campaign_of_highest_priority_applies_alone(session, shop):
    program, store, member = shop
    f.campaign(session, program, action={"type": "fixed", "points": 10}, priority=1)
    alone = f.campaign(
        session, program, action={"type": "fixed", "points": 99}, priority=5, stackable=False
    )
    result = buy(session, store, member, [("A", 1000, 1, None)])
    assert [row.rule for row in result.breakdown] == ["base", f"campaign:{alone.campaign.code}"]


def test_lower_priority_exclusive_campaign_yields_to_stackable_ones(session, shop):
    program, store, member = shop
    stacked = f.campaign(session, program, action={"type": "fixed", "points": 10}, priority=9)
    f.campaign(session, program, action={"type": "fixed", "points": 99}, stackable=False)
    result = buy(session, store, member, [("A", 1000, 1, None)])
    assert [row.rule for row in result.breakdown] == ["base", f"campaign:{stacked.campaign.code}"]


def test_channels_stores_and_condition_scope_a_campaign(session, shop):
    program, store, member = shop
    other_store = f.store(session, f.partner(session, program))
    f.campaign(
        session,
        program,
        channels=["ec"],
        stores=[store.id],
        condition={"field": "event.amount", "op": "gte", "value": 2000},
    )
    assert len(buy(session, store, member, [("A", 3000, 1, None)], channel="pos").breakdown) == 1
    assert (
        len(buy(session, other_store, member, [("A", 3000, 1, None)], channel="ec").breakdown) == 1
    )
    assert len(buy(session, store, member, [("A", 1000, 1, None)], channel="ec").breakdown) == 1
    assert len(buy(session, store, member, [("A", 3000, 1, None)], channel="ec").breakdown) == 2


def test_purchase_at_235959_jst_on_the_last_day_earns_and_at_midnight_does_not(session, shop):
    # given a campaign running to the end of 31 January in Tokyo (ends_at 1 Feb 00:00 JST)
    program, store, member = shop
    f.campaign(session, program, ends_at="2026-02-01T00:00:00+09:00")
    last_second = datetime(2026, 1, 31, 14, 59, 59, tzinfo=UTC)  # 23:59:59 JST
    # when a purchase comes at 23:59:59 and another at 00:00:00
    late = buy(session, store, member, [("A", 1000, 1, None)], at=last_second)
    after = buy(
        session, store, member, [("A", 1000, 1, None)], at=last_second + timedelta(seconds=1)
    )
    # then only the first earns the campaign
    assert [row.points for row in late.breakdown] == [10, 10]
    assert [row.points for row in after.breakdown] == [10]


def test_per_member_cap_truncates_and_counts_across_purchases(session, shop):
    program, store, member = shop
    capped = f.campaign(session, program, per_member_cap=25)
    first = buy(session, store, member, [("A", 2000, 1, None)])
    second = buy(session, store, member, [("A", 2000, 1, None)])
    third = buy(session, store, member, [("A", 2000, 1, None)])
    assert [row.points for row in first.breakdown] == [20, 20]
    assert [row.points for row in second.breakdown] == [20, 5]
    assert [row.points for row in third.breakdown] == [20]
    usage = session.get(CampaignMemberUsage, (capped.campaign.id, member.id))
    assert usage.points == 25


def test_budget_runs_out_across_members_and_is_never_exceeded(session, shop):
    program, store, member = shop
    budgeted = f.campaign(session, program, action={"type": "fixed", "points": 40}, budget=100)
    others = [f.member(session, program) for _ in range(3)]
    earned = [
        buy(session, store, someone, [("A", 100, 1, None)]).breakdown[-1].points
        for someone in [member, *others]
    ]
    assert earned == [40, 40, 20, 1]  # the last row is the base point: the budget is spent
    assert session.get(Campaign, budgeted.campaign.id).budget_used == 100


def test_quote_shows_the_campaign_and_reserves_nothing(session, shop):
    program, store, member = shop
    f.campaign(session, program, budget=1000, per_member_cap=500)
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no="Q1",
        occurred_at=T0,
        lines=[PurchaseLine(sku="A", amount=5000)],
    )
    quote = purchases.quote_purchase(session, request=request, as_of=T0)
    assert quote.earned == 100
    assert session.scalar(select(func.count()).select_from(CampaignGrant)) == 0
    assert session.scalar(select(func.sum(Campaign.budget_used))) == 0


def test_editing_an_active_campaign_opens_a_version_and_old_purchases_keep_theirs(session, shop):
    program, store, member = shop
    view = f.campaign(session, program)
    before = buy(session, store, member, [("A", 1000, 1, None)])
    edited_at = T0 + timedelta(hours=1)
    triple = {**view.current.definition, "action": {"type": "multiply", "times": 3}}
    edited = manage.update_campaign(
        session, campaign_id=view.campaign.id, definition=triple, as_of=edited_at
    )
    assert [v.version for v in edited.versions] == [1, 2]
    assert edited.versions[0].effective_to == edited_at
    after = buy(session, store, member, [("A", 1000, 1, None)], at=edited_at)
    # an offline receipt from before the edit, uploaded now, still gets version 1
    late = buy(session, store, member, [("A", 1000, 1, None)], at=T0 + timedelta(minutes=30))
    assert [r.points for r in before.breakdown] == [10, 10]
    assert [r.points for r in after.breakdown] == [10, 20]
    assert [r.points for r in late.breakdown] == [10, 10]


def test_return_after_the_campaign_ended_reverses_what_the_campaign_gave(session, shop):
    # given a 3倍 campaign that ends, and a purchase made while it ran
    program, store, member = shop
    view = f.campaign(session, program, action={"type": "multiply", "times": 3})
    bought = buy(session, store, member, [("A", 2000, 1, None), ("B", 1000, 1, None)])
    assert bought.earned == 30 + 60
    manage.end_campaign(session, campaign_id=view.campaign.id, as_of=T0 + timedelta(days=1))
    # when half of it comes back a month later, after the campaign has ended
    returned = returns.return_purchase(
        session,
        store_id=store.id,
        receipt_no=f"R{next(_receipts) - 1}",
        lines=[ReturnLine(line_no=0, quantity=1)],
        as_of=T0 + timedelta(days=30),
    )
    # then the reversal is the base and the campaign of the returned line, no more, no less
    assert returned.points_reversed == 20 + 40
    assert returned.balance.available == 10 + 20


def test_a_return_gives_back_what_the_purchase_took_from_cap_and_budget(session, shop):
    program, store, member = shop
    view = f.campaign(session, program, per_member_cap=100, budget=1000)
    buy(session, store, member, [("A", 2000, 1, None), ("B", 3000, 1, None)])
    receipt = f"R{next(_receipts) - 1}"
    campaign_id = view.campaign.id
    assert session.get(Campaign, campaign_id).budget_used == 50
    returns.return_purchase(
        session,
        store_id=store.id,
        receipt_no=receipt,
        lines=[ReturnLine(line_no=1, quantity=1)],
        as_of=T0 + timedelta(days=1),
    )
    session.expire_all()
    assert session.get(Campaign, campaign_id).budget_used == 20
    assert session.get(CampaignMemberUsage, (campaign_id, member.id)).points == 20
    returns.return_purchase(
        session, store_id=store.id, receipt_no=receipt, lines=None, as_of=T0 + timedelta(days=2)
    )
    session.expire_all()
    assert session.get(Campaign, campaign_id).budget_used == 0
    assert session.get(CampaignMemberUsage, (campaign_id, member.id)).points == 0


def test_a_draft_campaign_earns_nothing_until_activated(session, shop):
    program, store, member = shop
    draft = f.campaign(session, program, activate_at=None)
    assert [row.rule for row in buy(session, store, member, [("A", 1000, 1, None)]).breakdown] == [
        "base"
    ]
    manage.activate_campaign(session, campaign_id=draft.campaign.id, as_of=T0)
    later = buy(session, store, member, [("A", 1000, 1, None)], at=T0 + timedelta(seconds=1))
    assert len(later.breakdown) == 2


def test_a_condition_on_the_members_history_reads_past_purchases(session, shop):
    program, store, member = shop
    f.campaign(
        session,
        program,
        action={"type": "fixed", "points": 500},
        condition={"field": "member.purchase_count", "op": "eq", "value": 0},
    )
    first = buy(session, store, member, [("A", 1000, 1, None)])
    second = buy(session, store, member, [("A", 1000, 1, None)], at=T0 + timedelta(minutes=1))
    assert [r.points for r in first.breakdown] == [10, 500]  # 初回購入ボーナス
    assert [r.points for r in second.breakdown] == [10]


def test_events_earn_once_per_period(session, shop):
    program, store, member = shop
    other_store = f.store(session, f.partner(session, program))
    f.campaign(session, program, event_types=["visit"], action={"type": "fixed", "points": 5})
    f.campaign(session, program, event_types=["login"], action={"type": "fixed", "points": 1})
    f.campaign(session, program, event_types=["signup"], action={"type": "fixed", "points": 300})
    policy = policies(session, program.id)

    def event(kind, at, where=store):
        rows = rules.earn_for_event(
            session,
            policies=policy,
            member_id=member.id,
            event_type=kind,
            occurred_at=at,
            store_id=where.id,
            channel="app",
            attributes={},
        )
        return sum(row.points for row in rows)

    morning, evening = T0, T0 + timedelta(hours=8)  # 12:00 and 20:00 in Tokyo
    next_day = T0 + timedelta(hours=13)  # 01:00 the next day in Tokyo
    assert [
        event("visit", morning),
        event("visit", evening),
        event("visit", evening, other_store),
    ] == [5, 0, 5]
    assert event("visit", next_day) == 5
    assert [event("login", morning), event("login", evening), event("login", next_day)] == [1, 0, 1]
    assert [event("signup", morning), event("signup", next_day)] == [300, 0]


def test_custom_event_with_an_attribute_condition(session, shop):
    program, _, member = shop
    f.campaign(
        session,
        program,
        event_types=["survey"],
        action={"type": "fixed", "points": 20},
        condition={"field": "event.attributes.completed", "op": "eq", "value": True},
    )
    policy = policies(session, program.id)

    def survey(done):
        return rules.earn_for_event(
            session,
            policies=policy,
            member_id=member.id,
            event_type="survey",
            occurred_at=T0,
            store_id=None,
            channel="app",
            attributes={"completed": done},
            reserve=False,
        )

    assert [row.points for row in survey(True)] == [20]
    assert survey(False) == []

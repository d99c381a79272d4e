"""Member ranks: upgrade at once, downgrade only at evaluation, windows in Tokyo time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from kizuna.members import service as members
from kizuna.outbox.models import OutboxEvent
from kizuna.partners.service import policies
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.rules import birthdays
from kizuna.rules import service as rules
from kizuna.rules.domain import PurchaseLine
from kizuna.tiers import evaluation
from kizuna.tiers import service as tiers
from tests import factories as f

_receipts = iter(range(1, 10**6))


def jst(*args: int) -> datetime:
    """A Tokyo wall-clock time as a UTC instant."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=9)


@pytest.fixture
def shop(session):
    program = f.program(session)
    f.ranks(session, program)
    store = f.store(session, f.partner(session, program))
    return program, store


def buy(session, store, member, amount, at):
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=f"K{next(_receipts)}",
        occurred_at=at,
        lines=[PurchaseLine(sku="A", amount=amount)],
    )
    return purchases.commit_purchase(session, request=request, as_of=at, actor="test")


def rank(session, member):
    return tiers.current_rank(session, member_id=member.id).code


def test_the_receipt_that_crosses_a_threshold_earns_at_the_old_rank_and_upgrades_at_once(
    session, shop
):
    # given a bronze member at 8,000 yen this year (silver from 10,000 yen, ×1.5)
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 8000, jst(2026, 3, 1, 10))
    # when a 5,000 yen receipt crosses the threshold
    crossing = buy(session, store, member, 5000, jst(2026, 3, 2, 10))
    # then it earns at bronze, the member is silver at once, and the next receipt earns ×1.5
    assert [row.rule for row in crossing.breakdown] == ["base"]
    assert rank(session, member) == "silver"
    following = buy(session, store, member, 2000, jst(2026, 3, 2, 11))
    assert [(row.rule, row.points) for row in following.breakdown] == [("base", 20), ("rank", 10)]
    history = tiers.history(session, member_id=member.id)
    assert [(h.reason, h.metric_value) for h in history] == [("upgrade", 13000)]


def test_returning_the_crossing_receipt_reverses_at_the_rank_it_earned_with(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 9000, jst(2026, 3, 1, 10))
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no="X1",
        occurred_at=jst(2026, 3, 2, 10),
        lines=[PurchaseLine(sku="A", amount=2000), PurchaseLine(sku="B", amount=1000)],
    )
    purchases.commit_purchase(session, request=request, as_of=request.occurred_at)
    assert rank(session, member) == "silver"
    returned = returns.return_purchase(
        session,
        store_id=store.id,
        receipt_no="X1",
        lines=[ReturnLine(line_no=1, quantity=1)],
        as_of=jst(2026, 3, 5, 10),
    )
    assert returned.points_reversed == 10  # bronze base only: no rank bonus was earned
    assert rank(session, member) == "silver"  # a return never downgrades before evaluation


def test_evaluation_across_the_year_boundary_counts_each_purchase_in_its_tokyo_year(session, shop):
    # given three members: one spends 10,000 at 23:59:59 on New Year's Eve in Tokyo, one at
    # 00:00:00 on New Year's Day, and a gold member who spent little in the year
    program, store = shop
    eve, new_year = f.member(session, program), f.member(session, program)
    gold = f.member(session, program)
    buy(session, store, gold, 60000, jst(2025, 6, 1, 12))
    assert rank(session, gold) == "gold"
    buy(session, store, gold, 3000, jst(2026, 5, 1, 12))
    buy(session, store, eve, 6000, jst(2026, 12, 20, 12))
    buy(session, store, new_year, 6000, jst(2026, 12, 20, 12))
    buy(session, store, eve, 4000, jst(2026, 12, 31, 23, 59, 59))
    buy(session, store, new_year, 4000, jst(2027, 1, 1, 0, 0, 0))
    # (the receipt on New Year's Eve upgraded `eve` at once; `new_year` starts 2027 at 4,000)
    assert (rank(session, eve), rank(session, new_year)) == ("silver", "bronze")
    # when the evaluation runs on New Year's Day
    changed = evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2027, 1, 1, 3))
    # then 2026's spend decides: eve keeps silver, new_year stays bronze, gold goes down to bronze
    assert (rank(session, eve), rank(session, new_year), rank(session, gold)) == (
        "silver",
        "bronze",
        "bronze",
    )
    assert changed == 1
    change = tiers.history(session, member_id=gold.id)[-1]
    assert (change.reason, change.metric_value) == ("evaluation", 3000)


def test_a_rank_is_kept_through_its_year_and_lost_only_at_the_evaluation(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 55000, jst(2026, 2, 1, 12))
    evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2027, 1, 1, 0))
    assert rank(session, member) == "gold"  # 2026's spend keeps gold for 2027
    later = buy(session, store, member, 1000, jst(2027, 12, 31, 12))
    assert [row.rule for row in later.breakdown] == ["base", "rank"]  # still gold, no spend in 2027
    evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2028, 1, 1, 0))
    assert rank(session, member) == "bronze"


def test_evaluation_never_undoes_an_upgrade_earned_in_the_new_window(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 12000, jst(2027, 1, 3, 12))
    assert rank(session, member) == "silver"
    # the job runs late, after the upgrade of 3 January
    evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2027, 1, 5, 0))
    assert rank(session, member) == "silver"


def test_evaluation_is_due_once_per_window(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 20000, jst(2026, 2, 1, 12))
    session.execute(OutboxEvent.__table__.delete().where(OutboxEvent.event_type == "rank.changed"))
    # the first evaluation of a programme runs at once; the next falls due on 1 January
    evaluation.evaluate_due(session, as_of=jst(2026, 6, 1, 0))
    assert evaluation.evaluate_due(session, as_of=jst(2026, 12, 31, 23)) == 0
    assert evaluation.evaluate_due(session, as_of=jst(2027, 1, 1, 0, 5)) == 0  # silver either way
    assert evaluation.evaluate_due(session, as_of=jst(2028, 1, 1, 0, 5)) == 1
    assert rank(session, member) == "bronze"
    events = session.scalars(
        select(OutboxEvent.payload).where(OutboxEvent.event_type == "rank.changed")
    ).all()
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        ("silver", "bronze", "evaluation")
    ]


def test_fiscal_year_window_starts_in_april_in_tokyo(session):
    program = f.program(session)
    f.ranks(session, program, window="fiscal_year")
    store = f.store(session, f.partner(session, program))
    member = f.member(session, program)
    buy(session, store, member, 6000, jst(2026, 3, 31, 23, 59))
    buy(session, store, member, 6000, jst(2026, 4, 1, 0, 1))
    assert rank(session, member) == "bronze"  # 6,000 in each fiscal year
    buy(session, store, member, 4000, jst(2027, 3, 31, 12))
    assert rank(session, member) == "silver"


def test_rolling_twelve_months_and_visits_metric(session):
    program = f.program(session)
    f.ranks(
        session,
        program,
        metric="visits",
        window="rolling_12m",
        tiers=(("regular", 0, 100), ("fan", 3, 120)),
    )
    store = f.store(session, f.partner(session, program))
    member = f.member(session, program)
    buy(session, store, member, 100, jst(2026, 1, 10, 12))
    buy(session, store, member, 100, jst(2026, 9, 10, 12))
    buy(session, store, member, 100, jst(2027, 1, 11, 12))  # the first visit is 12 months old
    assert rank(session, member) == "regular"
    buy(session, store, member, 100, jst(2027, 1, 12, 12))
    assert rank(session, member) == "fan"
    # evaluated a year later, with one visit in the last 12 months
    evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2027, 12, 1, 0))
    assert rank(session, member) == "regular"


def test_progress_shows_what_the_next_rank_needs(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 12500, jst(2026, 3, 1, 12))
    shown = tiers.progress(session, member_id=member.id, as_of=jst(2026, 3, 2, 0))
    assert (shown.tier.code, shown.value, shown.next_tier.code, shown.remaining) == (
        "silver",
        12500,
        "gold",
        37500,
    )
    assert shown.period_start == jst(2026, 1, 1, 0)
    assert shown.period_end == jst(2027, 1, 1, 0)


def test_birthday_event_adds_the_ranks_birthday_bonus(session, shop):
    program, store = shop
    member = f.member(session, program)
    buy(session, store, member, 15000, jst(2026, 3, 1, 12))
    rows = rules.earn_for_event(
        session,
        policies=policies(session, program.id),
        member_id=member.id,
        event_type="birthday",
        occurred_at=jst(2026, 4, 1, 9),
        store_id=None,
        channel=None,
    )
    assert [(row.rule, row.points) for row in rows] == [("rank_birthday", 150)]


def test_birthday_job_finds_todays_birthdays_in_tokyo_and_posts_once_a_year(session, shop):
    program, store = shop
    member, other = f.member(session, program), f.member(session, program)
    for who, born in ((member, date(1990, 4, 1)), (other, date(1990, 4, 2))):
        members.update_profile(
            session, member_id=who.id, changes={"birth_date": born}, as_of=jst(2026, 1, 1, 0)
        )
    buy(session, store, member, 15000, jst(2026, 3, 1, 12))  # silver: 150 birthday points
    policy = policies(session, program.id)
    morning = jst(2026, 4, 1, 0, 30)  # still 31 March in UTC
    assert birthdays.birthdays_today(session, policies=policy, as_of=morning) == [member.id]
    posted = [
        birthdays.grant_birthday(session, policies=policy, member_id=member.id, as_of=at)
        for at in (morning, jst(2026, 4, 1, 18))
    ]
    assert posted == [1, 0]
    assert birthdays.is_birthday(date(2000, 2, 29), date(2027, 2, 28))

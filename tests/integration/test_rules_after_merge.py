"""After a merge (名寄せ), purchase-history conditions count everyone merged into the survivor.

A merged member's receipts stay under its own id; campaigns (Python evaluation at the next
purchase) and the SQL compilation of conditions (a segment's audience) must both see the
survivor's history as its own receipts plus those of everyone merged into it, transitively.
Both engines.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from kizuna.members import merge
from kizuna.members.domain import MemberStatus
from kizuna.members.models import Member
from kizuna.purchases import bulk
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.rules.conditions import parse
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.sql import member_filter
from tests import factories as f
from tests.factories import T0

TZ = ZoneInfo("Asia/Tokyo")
_receipts = iter(range(1, 10**6))

# Met only by a combined history: no single member below spends 6,000 yen in three receipts.
REGULAR = {
    "all": [
        {"field": "member.spend", "days": 90, "op": "gte", "value": 6000},
        {"field": "member.purchase_count", "op": "gte", "value": 3},
    ]
}
BONUS = {"type": "fixed", "points": 100}


def buy(session, store, member, amount, at):
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=f"H{next(_receipts)}",
        occurred_at=at,
        lines=[PurchaseLine(sku="A", amount=amount)],
    )
    return purchases.commit_purchase(session, request=request, as_of=at, actor="test")


def merge_into(session, survivor, merged, at):
    merge.merge_members(
        session, survivor_id=survivor.id, merged_id=merged.id, actor="staff:1", as_of=at
    )


def bonus_of(result, code):
    return [row.points for row in result.breakdown if row.rule == f"campaign:{code}"]


def audience(session, program, *, active_only=True):
    """The programme's members the condition selects in SQL at T0 (a segment's audience)."""
    where = [Member.program_id == program.id]
    if active_only:
        where.append(Member.status == MemberStatus.ACTIVE)
    dialect = session.get_bind().dialect.name
    node = parse(REGULAR)
    return set(
        session.scalars(
            select(Member.id).where(*where, member_filter(node, as_of=T0, tz=TZ, dialect=dialect))
        )
    )


@pytest.fixture
def shop(session):
    program = f.program(session)
    return program, f.store(session, f.partner(session, program))


def test_a_campaign_on_purchase_history_counts_the_merged_members_receipts(session, shop):
    # given a regulars' campaign, and two pairs of duplicates with 3,000 yen in one receipt and
    # 2,000 + 1,000 yen in two, within the last 90 days
    program, store = shop
    regulars = f.campaign(session, program, condition=REGULAR, action=BONUS)
    survivor, merged = f.member(session, program), f.member(session, program)
    apart, other = f.member(session, program), f.member(session, program)
    for first, second in ((survivor, merged), (apart, other)):
        buy(session, store, first, 3_000, T0 - timedelta(days=60))
        buy(session, store, second, 2_000, T0 - timedelta(days=40))
        buy(session, store, second, 1_000, T0 - timedelta(days=30))
    # when one pair is merged
    merge_into(session, survivor, merged, T0 - timedelta(days=10))
    # then the survivor's next receipt meets the condition on the combined history
    code = regulars.campaign.code
    assert bonus_of(buy(session, store, survivor, 500, T0), code) == [100]
    # and the pair left apart does not, each on its own
    assert bonus_of(buy(session, store, apart, 500, T0), code) == []
    assert bonus_of(buy(session, store, other, 500, T0), code) == []


def test_a_segment_on_purchase_history_selects_the_survivor_in_sql(session, shop):
    # given two duplicates whose history only together meets the condition
    program, store = shop
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 3_000, T0 - timedelta(days=60))
    buy(session, store, merged, 2_000, T0 - timedelta(days=40))
    buy(session, store, merged, 1_000, T0 - timedelta(days=30))
    assert audience(session, program) == set()
    # when they are merged
    merge_into(session, survivor, merged, T0 - timedelta(days=10))
    # then the segment selects the survivor, and the merged member is no live member
    assert audience(session, program) == {survivor.id}
    # and unfiltered by status, the merged member is judged on its own receipts only
    assert audience(session, program, active_only=False) == {survivor.id}


def test_a_chain_of_merges_counts_every_member_along_it(session, shop):
    # given a regulars' campaign and three duplicates with 2,000 yen each; C merged into B,
    # then B into A
    program, store = shop
    regulars = f.campaign(session, program, condition=REGULAR, action=BONUS)
    a, b, c = (f.member(session, program) for _ in range(3))
    for days, member in ((70, a), (50, b), (30, c)):
        buy(session, store, member, 2_000, T0 - timedelta(days=days))
    merge_into(session, b, c, T0 - timedelta(days=20))
    # B and C together meet the spend but not the count
    assert audience(session, program) == set()
    merge_into(session, a, b, T0 - timedelta(days=10))
    # then in SQL A is selected with everyone along the chain
    assert audience(session, program) == {a.id}
    # and unfiltered by status, B (with C under it) still falls short of three receipts
    assert audience(session, program, active_only=False) == {a.id}
    # and A's next receipt earns the campaign (Python evaluation)
    assert bonus_of(buy(session, store, a, 500, T0), regulars.campaign.code) == [100]


def test_the_last_purchase_of_a_merged_member_is_the_survivors_last_purchase(session, shop):
    # given a survivor who last bought 80 days ago, merged with a member who bought 5 days ago
    program, store = shop
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 1_000, T0 - timedelta(days=80))
    buy(session, store, merged, 1_000, T0 - timedelta(days=5))
    merge_into(session, survivor, merged, T0 - timedelta(days=1))
    # when members who bought within the last week are selected
    recent = parse({"field": "member.days_since_last_purchase", "op": "lte", "value": 7})
    dialect = session.get_bind().dialect.name
    selected = set(
        session.scalars(
            select(Member.id).where(
                Member.program_id == program.id,
                Member.status == MemberStatus.ACTIVE,
                member_filter(recent, as_of=T0, tz=TZ, dialect=dialect),
            )
        )
    )
    # then the survivor is among them
    assert selected == {survivor.id}


def test_a_per_member_cap_counts_what_a_merged_duplicate_already_received(session, shop):
    program, store = shop
    capped = f.campaign(session, program, action={"type": "fixed", "points": 10}, per_member_cap=45)
    code = capped.campaign.code
    survivor, duplicate = f.member(session, program), f.member(session, program)
    got = [bonus_of(buy(session, store, duplicate, 1000, T0), code) for _ in range(3)]
    merge_into(session, survivor, duplicate, T0 + timedelta(minutes=1))

    later = [
        bonus_of(buy(session, store, survivor, 1000, T0 + timedelta(minutes=2 + n)), code)
        for n in range(3)
    ]

    assert got == [[10], [10], [10]]
    assert later == [[10], [5], []]  # 45 in all for one person, not 45 more


def test_a_once_only_campaign_a_merged_duplicate_received_is_not_given_again(session, shop):
    program, store = shop
    welcome = f.campaign(
        session, program, action={"type": "fixed", "points": 300}, frequency="once"
    )
    code = welcome.campaign.code
    survivor, duplicate = f.member(session, program), f.member(session, program)
    first = bonus_of(buy(session, store, duplicate, 1000, T0), code)
    merge_into(session, survivor, duplicate, T0 + timedelta(minutes=1))

    after = bonus_of(buy(session, store, survivor, 1000, T0 + timedelta(minutes=2)), code)

    assert (first, after) == ([300], [])


def test_an_offline_batch_leaves_a_member_with_merged_duplicates_to_the_one_by_one_path(
    session, shop
):
    program, store = shop
    f.campaign(session, program, action={"type": "fixed", "points": 10}, per_member_cap=45)
    survivor, duplicate, plain = (f.member(session, program) for _ in range(3))
    buy(session, store, duplicate, 1000, T0)
    merge_into(session, survivor, duplicate, T0 + timedelta(minutes=1))
    receipts = [
        bulk.OfflineReceipt(
            member_id=member.id,
            store_id=store.id,
            receipt_no=f"OFF-{member.id}",
            occurred_at=T0 + timedelta(minutes=2),
            lines=[PurchaseLine(sku="A", amount=1000)],
        )
        for member in (survivor, plain)
    ]

    locked = bulk.lock_members(session, [survivor.id, plain.id])
    posted = bulk.post_offline(session, receipts, locked=locked, as_of=T0, actor="test")

    assert posted[0] is None  # its cap counts the duplicate's grants: the service posts it
    assert posted[1] is not None

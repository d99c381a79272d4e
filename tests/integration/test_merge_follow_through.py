"""A merge (名寄せ) carries rank progress, and pre-merge receipts stay returnable (both engines).

Returns are checked against a twin: the same story played by one member who did everything
(`single`) and by separate members merged along the way (`merged`). After every return the
survivor's result, balance and lots must be what the twin's are, the merged members must hold
nothing, and the books must reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kizuna.ledger import reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.expiry import expire_due
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.ledger.reconcile import check as reconcile
from kizuna.members import merge
from kizuna.outbox.models import OutboxEvent
from kizuna.partners.service import policies
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.purchases.models import Purchase
from kizuna.rules.domain import PurchaseLine
from kizuna.tiers import evaluation
from kizuna.tiers import service as tiers
from kizuna.tiers.models import MemberRank, RankChange
from tests import factories as f
from tests.integration import ledger_support as support

_receipts = iter(range(1, 10**6))


def jst(*args: int) -> datetime:
    """A Tokyo wall-clock time as a UTC instant."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=9)


def buy(session, store, member, amount, at, *, redeem=0):
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=f"M{next(_receipts)}",
        occurred_at=at,
        lines=[PurchaseLine(sku="A", amount=amount)],
        redeem_points=redeem,
    )
    return purchases.commit_purchase(session, request=request, as_of=at, actor="test")


def merge_into(session, survivor, merged, at):
    return merge.merge_members(
        session, survivor_id=survivor.id, merged_id=merged.id, actor="staff:1", as_of=at
    )


def rank(session, member):
    return tiers.current_rank(session, member_id=member.id).code


# --- rank progress ---------------------------------------------------------------------------


@pytest.fixture
def ranked(session):
    """Ranks on yearly spend: bronze, silver from 10,000 yen (×1.5), gold from 50,000 (×2)."""
    program = f.program(session)
    f.ranks(session, program)
    return program, f.store(session, f.partner(session, program))


def test_survivor_progress_counts_the_merged_members_receipts_and_the_next_one_upgrades(
    session, ranked
):
    # given two silver duplicates at 30,000 and 15,000 yen this year
    program, store = ranked
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 30_000, jst(2026, 3, 1, 12))
    buy(session, store, merged, 15_000, jst(2026, 3, 2, 12))
    # when they are merged
    merge_into(session, survivor, merged, jst(2026, 4, 1, 12))
    # then the survivor's progress counts both: 45,000 of gold's 50,000
    shown = tiers.progress(session, member_id=survivor.id, as_of=jst(2026, 4, 2, 0))
    assert (shown.tier.code, shown.value, shown.next_tier.code, shown.remaining) == (
        "silver",
        45_000,
        "gold",
        5_000,
    )
    # and 6,000 more (36,000 alone) makes the survivor gold at once
    buy(session, store, survivor, 6_000, jst(2026, 4, 3, 12))
    assert rank(session, survivor) == "gold"
    assert [(c.reason, c.metric_value) for c in tiers.history(session, member_id=survivor.id)] == [
        ("upgrade", 30_000),
        ("upgrade", 51_000),
    ]
    # the merged member holds no rank any more
    assert session.get(MemberRank, merged.id) is None


def test_the_survivor_keeps_the_higher_rank_of_the_two_at_merge_time(session, ranked):
    # given a gold duplicate (60,000 yen last year) and a bronze survivor
    program, store = ranked
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, merged, 60_000, jst(2025, 6, 1, 12))
    buy(session, store, survivor, 1_000, jst(2026, 2, 1, 12))
    assert (rank(session, survivor), rank(session, merged)) == ("bronze", "gold")
    # when they are merged
    merge_into(session, survivor, merged, jst(2026, 3, 1, 12))
    # then the survivor is gold at once, by a change of reason "merge" and its event
    assert rank(session, survivor) == "gold"
    change = tiers.history(session, member_id=survivor.id)[-1]
    assert (change.reason, change.metric_value) == ("merge", 1_000)
    events = session.scalars(
        select(OutboxEvent.payload).where(
            OutboxEvent.event_type == "rank.changed", OutboxEvent.member_id == survivor.id
        )
    ).all()
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [("bronze", "gold", "merge")]
    # and the survivor's next receipt earns at gold
    later = buy(session, store, survivor, 1_000, jst(2026, 3, 2, 12))
    assert [(row.rule, row.points) for row in later.breakdown] == [("base", 10), ("rank", 10)]


def test_a_merge_whose_combined_spend_crosses_a_threshold_upgrades_the_survivor(session, ranked):
    program, store = ranked
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 6_000, jst(2026, 2, 1, 12))
    buy(session, store, merged, 6_000, jst(2026, 2, 2, 12))
    merge_into(session, survivor, merged, jst(2026, 3, 1, 12))
    assert rank(session, survivor) == "silver"
    change = tiers.history(session, member_id=survivor.id)[-1]
    assert (change.reason, change.metric_value) == ("merge", 12_000)


def test_a_merge_never_lowers_the_survivors_rank(session, ranked):
    program, store = ranked
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 55_000, jst(2026, 2, 1, 12))
    buy(session, store, merged, 12_000, jst(2026, 2, 2, 12))
    merge_into(session, survivor, merged, jst(2026, 3, 1, 12))
    assert rank(session, survivor) == "gold"
    assert [c.reason for c in tiers.history(session, member_id=survivor.id)] == ["upgrade"]


def test_evaluation_credits_merged_receipts_to_the_survivor_and_never_ranks_the_merged(
    session, ranked
):
    # given a survivor gold from 2025, spending 30,000 in 2026 (silver alone), and a duplicate
    # that reached silver with 25,000 in 2026, merged in June
    program, store = ranked
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 60_000, jst(2025, 5, 1, 12))
    buy(session, store, survivor, 30_000, jst(2026, 2, 1, 12))
    buy(session, store, merged, 25_000, jst(2026, 3, 1, 12))
    merge_into(session, survivor, merged, jst(2026, 6, 1, 12))
    evaluated_at = jst(2027, 1, 1, 3)
    # when the year's evaluation runs
    changed = evaluation.evaluate_ranks(session, program_id=program.id, as_of=evaluated_at)
    # then the survivor keeps gold on 55,000 and the merged member is not evaluated
    assert changed == 0
    assert rank(session, survivor) == "gold"
    assert session.get(MemberRank, merged.id) is None
    after_merge = session.scalars(
        select(RankChange).where(
            RankChange.member_id == merged.id, RankChange.changed_at >= jst(2026, 6, 1, 12)
        )
    ).all()
    assert after_merge == []
    # a year without spend takes the survivor down to bronze, reported for the survivor only
    assert evaluation.evaluate_ranks(session, program_id=program.id, as_of=jst(2028, 1, 1, 3)) == 1
    assert rank(session, survivor) == "bronze"


def test_points_metric_counts_earns_of_merged_members_net_of_reversals(session):
    program = f.program(session)
    f.ranks(session, program, metric="points", tiers=(("bronze", 0, 100), ("silver", 150, 100)))
    store = f.store(session, f.partner(session, program))
    survivor, merged = f.member(session, program), f.member(session, program)
    buy(session, store, survivor, 10_000, jst(2026, 2, 1, 12))
    buy(session, store, merged, 4_000, jst(2026, 2, 2, 12))
    kept = buy(session, store, merged, 3_000, jst(2026, 2, 3, 12))
    merge_into(session, survivor, merged, jst(2026, 3, 1, 12))
    assert rank(session, survivor) == "silver"  # 100 + 40 + 30 points
    returns.return_purchase(
        session,
        store_id=store.id,
        receipt_no=_receipt_no(session, kept.purchase_id),
        lines=None,
        as_of=jst(2026, 3, 2, 12),
    )
    shown = tiers.progress(session, member_id=survivor.id, as_of=jst(2026, 3, 3, 0))
    assert shown.value == 140


def _receipt_no(session, purchase_id):
    return session.get(Purchase, purchase_id).receipt_no


# --- returns after a merge: the twin stories -------------------------------------------------

T = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)  # noon in Tokyo


def day(n: float) -> datetime:
    return T + timedelta(days=n)


@dataclass(frozen=True)
class Buy:
    who: str
    receipt: str
    amounts: Sequence[int]
    at: float
    redeem: int = 0
    pending_days: float | None = None


@dataclass(frozen=True)
class Merge:
    merged: str
    survivor: str
    at: float


@dataclass(frozen=True)
class Return:
    receipt: str
    at: float
    lines: Sequence[tuple[int, int]] | None = None  # (line number, quantity); None: the rest


@dataclass(frozen=True)
class Expire:
    at: float


@dataclass(frozen=True)
class Outcome:
    """What a return did, as the holder of the points sees it."""

    refunded_amount: int
    points_restored: int
    points_reversed: int
    debt_added: int
    status: str
    balance: ledger.Balance
    lots: dict[tuple[str, datetime, datetime, datetime | None], int]


def _open_lots(session, member_id):
    """Points left per (kind, earned, available, expires): the copies a merge makes and the lots
    they copy count the same."""
    held: dict[tuple[str, datetime, datetime, datetime | None], int] = defaultdict(int)
    rows = session.execute(
        select(Lot.kind, Lot.earned_at, Lot.available_at, Lot.expires_at, Lot.remaining).where(
            Lot.member_id == member_id, Lot.remaining > 0
        )
    )
    for kind, earned, available, expires, remaining in rows:
        held[(kind, earned, available, expires)] += remaining
    return dict(held)


def _play(session, where, story, *, single: bool) -> tuple[list[Outcome], dict[str, int]]:
    """Play `story`: each role its own member, or (`single`) one member for every role."""
    world = "S" if single else "M"
    roles = sorted({step.who for step in story if isinstance(step, Buy)})
    one = support.member(session, where)
    members = {role: one if single else support.member(session, where) for role in roles}
    live = dict(members)  # role → the member who now stands for it
    bought_by: dict[str, str] = {}
    outcomes: list[Outcome] = []
    for step in story:
        if isinstance(step, Buy):
            request = PurchaseRequest(
                member_id=members[step.who],
                store_id=where.store_id,
                receipt_no=f"{world}-{step.receipt}",
                occurred_at=day(step.at),
                lines=[PurchaseLine(sku=f"L{n}", amount=a) for n, a in enumerate(step.amounts)],
                redeem_points=step.redeem,
                pending_until=day(step.at + step.pending_days)
                if step.pending_days is not None
                else None,
            )
            purchases.commit_purchase(session, request=request, as_of=day(step.at))
            bought_by[step.receipt] = step.who
        elif isinstance(step, Merge):
            if not single:
                merge.merge_members(
                    session,
                    survivor_id=members[step.survivor],
                    merged_id=members[step.merged],
                    actor="staff:1",
                    as_of=day(step.at),
                )
                for role, member_id in live.items():
                    if member_id == members[step.merged]:
                        live[role] = members[step.survivor]
        elif isinstance(step, Expire):
            expire_due(session, as_of=day(step.at))
        else:
            result = returns.return_purchase(
                session,
                store_id=where.store_id,
                receipt_no=f"{world}-{step.receipt}",
                lines=[ReturnLine(n, q) for n, q in step.lines] if step.lines else None,
                as_of=day(step.at),
            )
            holder = result.member_id
            assert holder == live[bought_by[step.receipt]]
            outcomes.append(
                Outcome(
                    refunded_amount=result.refunded_amount,
                    points_restored=result.points_restored,
                    points_reversed=result.points_reversed,
                    debt_added=result.debt_added,
                    status=result.status,
                    balance=result.balance,
                    lots=_open_lots(session, holder),
                )
            )
            assert result.balance == ledger.balance(
                session, member_id=holder, policy=where.policy, as_of=day(step.at)
            )
            for member_id in set(members.values()) - set(live.values()):
                emptied = ledger.balance(
                    session, member_id=member_id, policy=where.policy, as_of=day(step.at)
                )
                assert (emptied.available, emptied.pending, emptied.debt) == (0, 0, 0)
            assert reconcile(session, set(members.values())) == []
    return outcomes, members


# Every story: the receipt "P" is bought by "a", paid partly with points earned before, and its
# points partly spent before the merge; "s" (the survivor) earns after a's spending, so that
# redemptions before the merge take the same lots in both worlds.
PARTLY_SPENT = [
    Buy("a", "E", [30_000], 0),
    Buy("a", "P", [6_000, 4_000], 1, redeem=250),  # earns 97
    Buy("a", "X", [1_000], 2, redeem=140),  # 50 of E's points, then 90 of P's
]
STORIES = {
    "full return, its points partly spent": [
        *PARTLY_SPENT,
        Buy("s", "F", [20_000], 3),
        Merge("a", "s", 4),
        Return("P", 5),
    ],
    "partial returns, then the rest": [
        *PARTLY_SPENT,
        Buy("s", "F", [20_000], 3),
        Merge("a", "s", 4),
        Return("P", 5, lines=[(0, 1)]),
        Return("P", 6, lines=[(1, 1)]),
    ],
    "points all spent, nothing to carry: the survivor goes into debt": [
        Buy("a", "E", [30_000], 0),
        Buy("a", "P", [10_000], 1),
        Buy("a", "X", [400], 2, redeem=400),  # a holds nothing: the merge moves no points
        Buy("s", "F", [2_000], 3),
        Merge("a", "s", 4),
        Return("P", 5),
        Buy("s", "G", [5_000], 6),  # repays the debt first
        Return("G", 7),
    ],
    "earned points expired before the return cost nothing": [
        Buy("a", "E", [30_000], 0),
        Buy("a", "P", [6_000, 4_000], 1, redeem=100),
        Buy("a", "X", [1_000], 2, redeem=50),
        Buy("s", "F", [20_000], 3),
        Merge("a", "s", 4),
        Return("P", 10, lines=[(1, 1)]),
        Expire(31.5),
        Return("P", 32),
    ],
    "pending points of an EC order": [
        Buy("a", "E", [30_000], 0),
        Buy("a", "P", [6_000, 4_000], 1, redeem=100, pending_days=14),
        Buy("s", "F", [20_000], 3),
        Merge("a", "s", 4),
        Return("P", 5, lines=[(0, 1)]),
        Return("P", 6),
    ],
    "a chain: a into b, b into s": [
        *PARTLY_SPENT,
        Buy("b", "B", [8_000], 2.5),
        Buy("s", "F", [20_000], 3),
        Merge("a", "b", 4),
        Merge("b", "s", 4.5),
        Return("P", 5, lines=[(0, 1)]),
        Return("P", 6),
    ],
}


@pytest.mark.parametrize("story", list(STORIES.values()), ids=list(STORIES))
def test_a_receipt_returned_after_a_merge_acts_on_the_survivor_as_on_one_member(session, story):
    where = support.shop(session)  # points expire 30 days after earning: stories can let them lapse
    merged_world, _ = _play(session, where, story, single=False)
    single_world, _ = _play(session, where, story, single=True)
    assert merged_world == single_world


def test_a_return_after_a_merge_books_the_cancel_on_the_buyer_and_the_effect_on_the_survivor(
    session,
):
    where = support.shop(session)
    story = STORIES["full return, its points partly spent"]
    _, members = _play(session, where, story, single=False)
    buyer, survivor = members["a"], members["s"]
    types = [
        (e.member_id, e.entry_type, e.amount, e.debt_change)
        for e in session.scalars(
            select(JournalEntry)
            .where(JournalEntry.occurred_at == day(5))
            .where(JournalEntry.member_id.in_([buyer, survivor]))
            .order_by(JournalEntry.id)
        )
    ]
    # the redemption restored on the buyer and carried on; the earn's cancel on the buyer, its
    # effect (97 points: 7 of its own lot, 90 of others) handed over and taken on the survivor
    assert types == [
        (buyer, "cancel", 250, 0),
        (buyer, "merge_out", -250, 0),
        (survivor, "merge_in", 250, 0),
        (buyer, "cancel", -97, 97),
        (buyer, "merge_out", 97, -97),
        (survivor, "merge_in", -97, 0),
    ]
    earn = session.scalars(
        select(JournalEntry)
        .where(JournalEntry.member_id == buyer, JournalEntry.entry_type == "earn")
        .order_by(JournalEntry.id)
    ).all()[1]
    assert reversal.reversed_so_far(session, earn.id) == (97, -97)


def test_a_chain_of_merges_counts_every_receipt_and_a_return_acts_on_the_last_survivor(
    session, ranked
):
    # given a merged into b, b into c, each with spend this year
    program, store = ranked
    a, b, c = (f.member(session, program) for _ in range(3))
    buy(session, store, a, 20_000, jst(2026, 2, 1, 12))  # earns 200 (silver from here on)
    returned = buy(session, store, a, 5_000, jst(2026, 2, 2, 12), redeem=100)
    buy(session, store, b, 12_000, jst(2026, 2, 3, 12))
    buy(session, store, c, 9_000, jst(2026, 2, 4, 12))
    merge_into(session, b, a, jst(2026, 3, 1, 12))
    merge_into(session, c, b, jst(2026, 3, 2, 12))
    # then c's progress counts all three receipts and its rank the best of them
    shown = tiers.progress(session, member_id=c.id, as_of=jst(2026, 3, 3, 0))
    assert (shown.tier.code, shown.value) == ("silver", 46_000)
    program_policy = policies(session, program.id).ledger
    before = ledger.balance(session, member_id=c.id, policy=program_policy, as_of=jst(2026, 3, 3))
    # when a's receipt is returned
    result = returns.return_purchase(
        session,
        store_id=store.id,
        receipt_no=_receipt_no(session, returned.purchase_id),
        lines=None,
        as_of=jst(2026, 3, 3, 12),
    )
    # then c gets the 100 points back and loses what the receipt earned (49 base + 24 silver)
    assert result.member_id == c.id
    assert (result.points_restored, result.points_reversed) == (100, 73)
    after = ledger.balance(session, member_id=c.id, policy=program_policy, as_of=jst(2026, 3, 3))
    assert after.available == before.available + 100 - 73
    for merged in (a, b):
        emptied = ledger.balance(
            session, member_id=merged.id, policy=program_policy, as_of=jst(2026, 3, 3)
        )
        assert (emptied.available, emptied.pending, emptied.debt) == (0, 0, 0)
    assert reconcile(session, [a.id, b.id, c.id]) == []
    # and the spend returned no longer counts towards c's rank
    shown = tiers.progress(session, member_id=c.id, as_of=jst(2026, 3, 4, 0))
    assert shown.value == 41_000


def test_an_ec_order_confirmed_after_a_merge_makes_the_survivors_copy_available(session):
    where = support.shop(session)
    buyer, survivor = support.member(session, where), support.member(session, where)
    request = PurchaseRequest(
        member_id=buyer,
        store_id=where.store_id,
        receipt_no="EC-1",
        occurred_at=day(0),
        lines=[PurchaseLine(sku="L0", amount=10_000)],
        pending_until=day(14),
    )
    earned = purchases.commit_purchase(session, request=request, as_of=day(0)).earned
    merge.merge_members(
        session, survivor_id=survivor, merged_id=buyer, actor="staff:1", as_of=day(1)
    )
    before = ledger.balance(session, member_id=survivor, policy=where.policy, as_of=day(2))

    confirmed = returns.confirm_purchase(
        session, store_id=where.store_id, receipt_no="EC-1", as_of=day(2)
    )

    after = ledger.balance(session, member_id=survivor, policy=where.policy, as_of=day(2))
    assert confirmed == earned > 0
    assert (before.pending, after.pending) == (earned, 0)
    assert after.available == before.available + earned
    assert reconcile(session, {buyer, survivor}) == []

"""One condition, two back ends: Python evaluation and the SQL compilation select the same members.

Hypothesis draws members (join dates near local midnight, ranks), their purchases (some partly or
wholly returned, some after `as_of`), their lots (pending, expiring, expired) and a random condition
tree over every field SQL can select; the members whose Python facts satisfy the tree must be
exactly the members the compiled SQL returns, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.members.models import Member
from kizuna.purchases.models import Purchase
from kizuna.rules.conditions import evaluate, parse
from kizuna.rules.domain import BreakdownRow
from kizuna.rules.facts import Facts, HeldLot, MemberFacts, PastPurchase
from kizuna.rules.sql import local_midnight, member_filter
from kizuna.tiers.models import MemberRank, Tier
from tests import factories as f

TZ = ZoneInfo("Asia/Tokyo")
AS_OF = datetime(2026, 3, 15, 1, 30, tzinfo=UTC)  # 10:30 in Tokyo
TODAY = AS_OF.astimezone(TZ).date()
CHANNELS = ["pos", "ec", "app"]
CATEGORIES = ["food", "drink", "tobacco"]
RANKS = ["bronze", "silver", "gold"]
DAYS = [1, 7, 30, 90]
STORES = 2  # stores are created per example; conditions name them by position


@st.composite
def instants(draw: st.DrawFn, *, before_days: int = 120, after_days: int = 2) -> datetime:
    """Instants clustered around local midnights, where day counts change."""
    # Mostly the last few days, so that day-count conditions meet their boundaries often.
    back = draw(st.one_of(st.integers(-after_days, 8), st.integers(-after_days, before_days)))
    day = TODAY - timedelta(days=back)
    offset = draw(
        st.sampled_from(
            [timedelta(0), timedelta(seconds=-1), timedelta(seconds=1), timedelta(hours=13)]
        )
    )
    return local_midnight(day, TZ) + offset


lines = st.lists(
    st.fixed_dictionaries(
        {"category": st.sampled_from([*CATEGORIES, None, ""]), "amount": st.integers(0, 5000)}
    ),
    max_size=3,
)


@st.composite
def purchase_data(draw: st.DrawFn) -> dict:
    total = draw(st.integers(0, 20000))
    refunded = draw(st.sampled_from([0, 0, total // 2, total]))
    return {
        "occurred_at": draw(instants()),
        "total": total,
        "refunded": refunded,
        "channel": draw(st.sampled_from(CHANNELS)),
        "store": draw(st.integers(0, STORES - 1)),
        "lines": draw(lines),
    }


@st.composite
def lot_data(draw: st.DrawFn) -> dict:
    available = AS_OF + timedelta(days=draw(st.sampled_from([-30, -1, 0, 1])))
    expires = draw(st.sampled_from([None, 1, 5, 29, 31, -1, 0]))
    return {
        "points": draw(st.integers(1, 500)),
        "available_at": available,
        "expires_at": None if expires is None else AS_OF + timedelta(days=expires),
    }


member_data = st.fixed_dictionaries(
    {
        "joined_at": instants(before_days=60, after_days=0),
        "join_channel": st.sampled_from([*CHANNELS, None]),
        "join_store": st.sampled_from([0, 1, None]),
        "rank": st.sampled_from([None, *RANKS]),
        "purchases": st.lists(purchase_data(), max_size=4),
        "lots": st.lists(lot_data(), max_size=3),
    }
)


def _int_compare(name: str, values: st.SearchStrategy[int], *, days: bool | str = False):
    @st.composite
    def build(draw: st.DrawFn) -> dict:
        op = draw(
            st.sampled_from(
                ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists"]
            )
        )
        node: dict = {"field": name, "op": op}
        if op in ("in", "not_in"):
            node["value"] = draw(st.lists(values, min_size=1, max_size=3))
        elif op == "between":
            low, high = sorted([draw(values), draw(values)])
            node["value"] = [low, high]
        elif op == "exists":
            node["value"] = draw(st.booleans())
        else:
            node["value"] = draw(values)
        if days == "required" or (days and draw(st.booleans())):
            node["days"] = draw(st.sampled_from(DAYS))
        return node

    return build()


def _str_compare(name: str, values: list):
    @st.composite
    def build(draw: st.DrawFn) -> dict:
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "exists"]))
        node: dict = {"field": name, "op": op}
        if op in ("in", "not_in"):
            node["value"] = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2))
        elif op == "exists":
            node["value"] = draw(st.booleans())
        else:
            node["value"] = draw(st.sampled_from(values))
        return node

    return build()


def _set_compare(name: str, values: list):
    @st.composite
    def build(draw: st.DrawFn) -> dict:
        op = draw(st.sampled_from(["contains", "in", "not_in", "exists"]))
        node: dict = {"field": name, "op": op}
        if op in ("in", "not_in"):
            node["value"] = draw(st.lists(st.sampled_from(values), min_size=1, max_size=2))
        elif op == "exists":
            node["value"] = draw(st.booleans())
        else:
            node["value"] = draw(st.sampled_from(values))
        if draw(st.booleans()):
            node["days"] = draw(st.sampled_from(DAYS))
        return node

    return build()


leaves = st.one_of(
    _int_compare("member.purchase_count", st.integers(0, 4), days=True),
    _int_compare("member.spend", st.integers(0, 30000), days=True),
    _int_compare("member.days_since_last_purchase", st.integers(0, 10)),
    _int_compare("member.days_since_joining", st.integers(0, 10)),
    _int_compare("member.balance", st.integers(0, 1000)),
    _int_compare("member.points_expiring", st.integers(0, 600), days="required"),
    _int_compare("member.join_store", st.integers(0, STORES - 1)),
    _str_compare("member.join_channel", CHANNELS),
    _str_compare("member.rank", RANKS),
    _set_compare("member.channels_used", CHANNELS),
    _set_compare("member.categories_bought", [*CATEGORIES, "toys"]),
    _set_compare("member.stores_visited", list(range(STORES))),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


def _store_ids(tree, stores: list[int]):
    """Conditions name stores by position; swap in the ids of this example's stores."""
    if isinstance(tree, list):
        return [_store_ids(item, stores) for item in tree]
    if not isinstance(tree, dict):
        return tree
    tree = {key: _store_ids(value, stores) for key, value in tree.items()}
    if (
        tree.get("field") in ("member.join_store", "member.stores_visited")
        and tree["op"] != "exists"
    ):
        value = tree["value"]
        tree["value"] = [stores[v] for v in value] if isinstance(value, list) else stores[value]
    return tree


def _build(session, members: list[dict]) -> tuple[list[int], list[Facts], list[int]]:
    program = f.program(session)
    partner = f.partner(session, program)
    stores = [f.store(session, partner).id for _ in range(STORES)]
    tiers = {}
    for level, code in enumerate(RANKS):
        tier = Tier(
            program_id=program.id, code=code, name=code, level=level, threshold=level * 1000
        )
        session.add(tier)
        session.flush()
        tiers[code] = tier.id
    ids, facts = [], []
    for data in members:
        member = f.member(session, program, joined_at=data["joined_at"])
        join_store = None if data["join_store"] is None else stores[data["join_store"]]
        member.join_channel, member.join_store_id = data["join_channel"], join_store
        if data["rank"]:
            session.add(
                MemberRank(
                    member_id=member.id,
                    program_id=program.id,
                    tier_id=tiers[data["rank"]],
                    since=AS_OF,
                )
            )
        past = []
        for n, p in enumerate(data["purchases"]):
            session.execute(
                insert(Purchase).values(
                    member_id=member.id,
                    partner_id=partner.id,
                    store_id=stores[p["store"]],
                    receipt_no=f"R{member.id}-{n}",
                    channel=p["channel"],
                    occurred_at=p["occurred_at"],
                    recorded_at=p["occurred_at"],
                    total_amount=p["total"],
                    lines=[
                        {"sku": "x", "amount": li["amount"], "category": li["category"]}
                        for li in p["lines"]
                    ],
                    returned_quantities=[0] * len(p["lines"]),
                    refunded_amount=p["refunded"],
                )
            )
            past.append(
                PastPurchase(
                    occurred_at=p["occurred_at"],
                    amount=p["total"],
                    refunded=p["refunded"],
                    channel=p["channel"],
                    store=stores[p["store"]],
                    categories=frozenset(li["category"] for li in p["lines"] if li["category"]),
                )
            )
        for lot in data["lots"]:
            ledger.earn(
                session,
                member_id=member.id,
                rows=[BreakdownRow("base", "base", lot["points"], expires_at=lot["expires_at"])],
                policy=LedgerPolicy(),
                occurred_at=AS_OF - timedelta(days=40),
                as_of=AS_OF - timedelta(days=40),
                available_at=lot["available_at"],
            )
        session.flush()
        held = [
            HeldLot(
                lot["points"],
                max(lot["available_at"], AS_OF - timedelta(days=40)),
                lot["expires_at"] or (AS_OF - timedelta(days=40) + timedelta(days=365)),
            )
            for lot in data["lots"]
        ]
        ids.append(member.id)
        facts.append(
            Facts(
                as_of=AS_OF,
                tz=TZ,
                member=MemberFacts(
                    member_id=member.id,
                    joined_at=data["joined_at"],
                    rank=data["rank"] or RANKS[0],
                    join_channel=data["join_channel"],
                    join_store=join_store,
                    purchases=past,
                    lots=held,
                ),
            )
        )
    return ids, facts, stores


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(members=st.lists(member_data, min_size=1, max_size=5), tree=trees)
def test_python_and_sql_select_the_same_members(session, members, tree):
    # given members with purchases, lots and ranks, and a random condition
    with session.begin_nested() as example:
        ids, facts, stores = _build(session, members)
        node = parse(_store_ids(tree, stores))
        # when both back ends judge them
        in_python = {fact.member.member_id for fact in facts if evaluate(node, fact)}
        dialect = session.get_bind().dialect.name
        in_sql = set(
            session.scalars(
                select(Member.id).where(
                    Member.id.in_(ids), member_filter(node, as_of=AS_OF, tz=TZ, dialect=dialect)
                )
            )
        )
        example.rollback()
    # then they agree
    assert in_python == in_sql, tree


def test_day_counts_agree_at_every_local_midnight(session):
    # given members who joined, and last bought, a second before, at, and a second after each of
    # the last five local midnights
    program = f.program(session)
    partner = f.partner(session, program)
    store = f.store(session, partner)
    facts = []
    for back in range(5):
        for offset in (timedelta(seconds=-1), timedelta(0), timedelta(seconds=1)):
            instant = local_midnight(TODAY - timedelta(days=back), TZ) + offset
            member = f.member(session, program, joined_at=instant)
            session.execute(
                insert(Purchase).values(
                    member_id=member.id,
                    partner_id=partner.id,
                    store_id=store.id,
                    receipt_no=f"B{member.id}",
                    channel="pos",
                    occurred_at=instant,
                    recorded_at=instant,
                    total_amount=100,
                    lines=[],
                    returned_quantities=[],
                )
            )
            past = [PastPurchase(occurred_at=instant, amount=100)]
            facts.append(
                Facts(as_of=AS_OF, tz=TZ, member=MemberFacts(member.id, instant, purchases=past))
            )
    ids = [fact.member.member_id for fact in facts]
    dialect = session.get_bind().dialect.name
    for name in ("member.days_since_joining", "member.days_since_last_purchase"):
        for op in ("eq", "ne", "gt", "gte", "lt", "lte", "in", "between"):
            for n in range(6):
                value = [n] if op == "in" else [n, n + 1] if op == "between" else n
                node = parse({"field": name, "op": op, "value": value})
                # when both back ends judge them
                in_python = {fact.member.member_id for fact in facts if evaluate(node, fact)}
                in_sql = set(
                    session.scalars(
                        select(Member.id).where(
                            Member.id.in_(ids),
                            member_filter(node, as_of=AS_OF, tz=TZ, dialect=dialect),
                        )
                    )
                )
                # then they agree on every boundary
                assert in_python == in_sql, (name, op, n)

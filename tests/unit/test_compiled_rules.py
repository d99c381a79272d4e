"""Compiled rules agree with a plain reading of them.

Conditions and campaign books are compiled to Python source for speed. Hypothesis draws random
condition trees over event and member fields (with events and members missing, custom attributes
of mixed types) and random campaign sets (windows, scopes, conditions, every action, priorities)
with random receipts; a deliberately naive reading — walk the tree, check every campaign on its
own, count the points with exact fractions — must find exactly what the compiled code finds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from math import ceil, floor
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna.rules.actions import ActionType
from kizuna.rules.book import CampaignBook
from kizuna.rules.campaigns import CampaignDefinition, CampaignRule
from kizuna.rules.conditions import All, AnyOf, Compare, Node, Not, evaluate, parse
from kizuna.rules.domain import EarnPolicy, PurchaseLine
from kizuna.rules.facts import SET_TYPES, Facts, MemberFacts, ValueType, event_facts, field_spec

TZ = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 5, 1, tzinfo=UTC) - timedelta(hours=9)  # 1 May 00:00 in Tokyo
CHANNELS = ["pos", "ec", "app"]
CATEGORIES = ["food", "drink", "toys", "tobacco"]
SKUS = ["A", "B", "C"]
BRANDS = ["kizuna", "other"]
RANKS = ["bronze", "silver", "gold"]
# Every yen counts (one point per yen), so that a rounding slip of one yen shows in the points.
POLICY = EarnPolicy(points=1, per_yen=1, excluded_categories=frozenset({"tobacco"}))
# Conditions compare with the values the facts take, so that boundaries (=, <, <=) are met often.
AMOUNTS = [0, 500, 1500, 3000]
HOURS = [0, 8, 9, 17, 23]  # local hours of `instants`, and one more
DAYS = [1, 2, 3, 4, 30]
AGES = [15, 16, 35, 36]
BIRTHS = [date(1990, 5, 1), date(1990, 5, 3), date(2010, 4, 30), date(2010, 5, 2)]

# --- the plain reading ---------------------------------------------------------------------------


def _read(node: Compare, facts: Facts):
    spec = field_spec(node.field)
    assert spec is not None
    if spec.attr is None:
        return spec.get(facts, node.days)
    owner = facts.event if spec.scope == "event" else facts.member
    return getattr(owner, spec.attr) if owner is not None else None


def interpret(node: Node, facts: Facts) -> bool:
    """The condition language read node by node, as SPEC §5 states it."""
    if isinstance(node, All):
        return all(interpret(child, facts) for child in node.children)
    if isinstance(node, AnyOf):
        return any(interpret(child, facts) for child in node.children)
    if isinstance(node, Not):
        return not interpret(node.child, facts)
    spec = field_spec(node.field)
    value, op, wanted = _read(node, facts), node.op, node.value
    if op == "exists":
        there = bool(value) if spec.type in SET_TYPES else value is not None
        return there == wanted
    if value is None:
        return False
    if spec.type is ValueType.SCALAR:
        sample = next(iter(wanted)) if isinstance(wanted, frozenset | tuple) else wanted
        if type(value) is not type(sample):
            return False
    if spec.type in SET_TYPES:
        return {
            "contains": lambda: wanted in value,
            "in": lambda: bool(wanted & value),
            "not_in": lambda: not (wanted & value),
        }[op]()
    return {
        "eq": lambda: value == wanted,
        "ne": lambda: value != wanted,
        "in": lambda: value in wanted,
        "not_in": lambda: value not in wanted,
        "gt": lambda: value > wanted,
        "gte": lambda: value >= wanted,
        "lt": lambda: value < wanted,
        "lte": lambda: value <= wanted,
        "between": lambda: wanted[0] <= value <= wanted[1],
    }[op]()


def plain_points(definition: CampaignDefinition, lines, used: int, base: int) -> int:
    """A campaign's points before limits, counted with exact fractions and floored once."""
    action = definition.action
    lines_filter = action.lines

    def matches(line: PurchaseLine) -> bool:
        return lines_filter.empty or (
            line.category in lines_filter.categories
            or line.sku in lines_filter.skus
            or line.brand in lines_filter.brands
        )

    if action.type is ActionType.FIXED:
        return action.points
    if action.type is ActionType.PER_ITEM:
        return action.points * sum(line.quantity for line in lines if matches(line))
    extra = Fraction(action.times) - 1
    if lines_filter.empty:
        return floor(base * extra)
    earning = [line for line in lines if line.category not in POLICY.excluded_categories]
    matched = sum(line.amount for line in earning if matches(line))
    gross = sum(line.amount for line in earning)
    if used and gross:
        matched -= ceil(Fraction(used * matched, gross))
    yen_points = floor(Fraction(max(matched, 0) * POLICY.points, POLICY.per_yen))
    return floor(yen_points * extra)


def plain_candidates(rules, facts: Facts, lines, used: int, base: int):
    """Every campaign checked on its own: window, event type, scope, condition, points."""
    event = facts.event
    found = []
    for rule in sorted(rules, key=lambda r: (-r.definition.priority, r.campaign_id)):
        d = rule.definition
        if not (d.starts_at <= facts.as_of < d.ends_at) or event.type not in d.event_types:
            continue
        if (
            (d.channels and event.channel not in d.channels)
            or (d.stores and event.store not in d.stores)
            or (d.partners and event.partner not in d.partners)
        ):
            continue
        if not interpret(d.condition, facts):
            continue
        points = plain_points(d, lines, used, base)
        if points > 0:
            found.append((rule.campaign_id, points))
    return found


# --- random trees, facts, campaigns and receipts -------------------------------------------------


def _leaf(name: str, ops: list[str], values: st.SearchStrategy) -> st.SearchStrategy[dict]:
    @st.composite
    def build(draw: st.DrawFn) -> dict:
        op = draw(st.sampled_from([*ops, "exists"]))
        node: dict = {"field": name, "op": op}
        if op in ("in", "not_in"):
            node["value"] = draw(st.lists(values, min_size=1, max_size=3, unique=True))
        elif op == "between":
            node["value"] = sorted([draw(values), draw(values)])
        elif op == "exists":
            node["value"] = draw(st.booleans())
        else:
            node["value"] = draw(values)
        return node

    return build()


ORDERED = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between"]
NAMED = ["eq", "ne", "in", "not_in"]
SETS = ["contains", "in", "not_in"]
# (field, its operators, values to compare with)
COMPARISONS = [
    ("event.type", NAMED, st.sampled_from(["purchase", "visit"])),
    ("event.channel", NAMED, st.sampled_from(CHANNELS)),
    ("event.store", ORDERED, st.integers(1, 4)),
    ("event.partner", ORDERED, st.integers(1, 2)),
    ("event.amount", ORDERED, st.sampled_from(AMOUNTS)),
    ("event.categories", SETS, st.sampled_from(CATEGORIES)),
    ("event.skus", SETS, st.sampled_from(SKUS)),
    ("event.brands", SETS, st.sampled_from(BRANDS)),
    ("event.weekday", ORDERED, st.integers(1, 7)),
    ("event.hour", ORDERED, st.sampled_from(HOURS)),
    ("event.day", ORDERED, st.sampled_from(DAYS)),
    ("event.holiday", ["eq", "ne"], st.booleans()),
    ("event.weather", NAMED, st.sampled_from(["sunny", "rain"])),
    ("event.attributes.score", ORDERED, st.integers(0, 3)),
    ("event.attributes.score", ORDERED, st.sampled_from(["a", "b"])),
    ("event.attributes.vip", ["eq", "ne"], st.booleans()),
    ("member.rank", NAMED, st.sampled_from(RANKS)),
    ("member.gender", NAMED, st.sampled_from(["f", "m"])),
    ("member.age", ORDERED, st.sampled_from(AGES)),
    ("member.join_store", ORDERED, st.integers(1, 4)),
]
leaves = st.one_of(*(_leaf(name, ops, values) for name, ops, values in COMPARISONS))
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda c: {"all": c}),
        st.lists(children, max_size=3).map(lambda c: {"any": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=8,
)
instants = st.builds(
    lambda day, hour, second: T0 + timedelta(days=day, hours=hour, seconds=second),
    st.integers(-1, 3),
    st.sampled_from([0, 8, 15, 23]),
    st.sampled_from([-1, 0, 1]),
)
# Campaign windows open and close at a few instants, so that campaigns overlap; receipts fall
# on those instants, a second either side, or anywhere.
BOUNDS = [T0 - timedelta(days=1), T0, T0 + timedelta(days=1, hours=8), T0 + timedelta(days=4)]
around_bounds = st.one_of(
    st.builds(
        lambda at, second: at + timedelta(seconds=second),
        st.sampled_from(BOUNDS),
        st.sampled_from([-1, 0, 1]),
    ),
    instants,
)
receipt_lines = st.lists(
    st.builds(
        PurchaseLine,
        sku=st.sampled_from(SKUS),
        amount=st.integers(0, 3000),
        quantity=st.integers(1, 3),
        category=st.sampled_from([*CATEGORIES, None]),
        brand=st.sampled_from([*BRANDS, None]),
    ),
    max_size=4,
)
members = st.one_of(
    st.none(),
    st.builds(
        lambda rank, gender, birth, store: MemberFacts(
            member_id=1,
            joined_at=T0 - timedelta(days=30),
            rank=rank,
            gender=gender,
            birth_date=birth,
            join_store=store,
        ),
        st.sampled_from([None, *RANKS]),
        st.sampled_from([None, "f", "m"]),
        st.sampled_from([None, *BIRTHS]),
        st.sampled_from([None, 1, 2]),
    ),
)


@st.composite
def events(draw: st.DrawFn, *, at: datetime | None = None, lines=None):
    at = at or draw(instants)
    return event_facts(
        event_type=draw(st.sampled_from(["purchase", "visit"])),
        occurred_at=at,
        tz=TZ,
        channel=draw(st.sampled_from([None, *CHANNELS])),
        store=draw(st.sampled_from([None, 1, 2, 3])),
        partner=draw(st.sampled_from([None, 1, 2])),
        amount=draw(st.sampled_from([None, *AMOUNTS])),
        lines=draw(receipt_lines) if lines is None else lines,
        attributes=draw(
            st.dictionaries(
                st.sampled_from(["score", "vip", "weather"]),
                st.one_of(st.integers(0, 3), st.booleans(), st.sampled_from(["a", "sunny"])),
                max_size=3,
            )
        ),
    )


@st.composite
def facts_of(draw: st.DrawFn) -> Facts:
    at = draw(instants)
    event = draw(st.one_of(st.none(), events(at=at)))
    return Facts(as_of=at, tz=TZ, event=event, member=draw(members))


filters = st.fixed_dictionaries(
    {},
    optional={
        "categories": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2),
        "skus": st.lists(st.sampled_from(SKUS), min_size=1, max_size=2),
        "brands": st.lists(st.sampled_from(BRANDS), min_size=1, max_size=2),
    },
)
action_dicts = st.one_of(
    st.builds(
        lambda times, f: {"type": "multiply", "times": times, **f},
        st.sampled_from(["1.5", "2", "3", "1.05"]),
        filters,
    ),
    st.builds(lambda n: {"type": "fixed", "points": n}, st.integers(1, 50)),
    st.builds(lambda n, f: {"type": "per_item", "points": n, **f}, st.integers(1, 9), filters),
)


@st.composite
def definitions(draw: st.DrawFn, conditions: list[dict], actions: list[dict]) -> dict:
    """A campaign whose condition and action come from small pools, so that campaigns share
    them as real ones do (a condition or an action the book evaluates once per event)."""
    starts, ends = sorted(
        draw(st.lists(st.sampled_from(BOUNDS), min_size=2, max_size=2, unique=True))
    )
    return {
        "name": "c",
        "starts_at": starts.isoformat(),
        "ends_at": ends.isoformat(),
        "event_types": draw(st.sampled_from([["purchase"], ["visit"], ["purchase", "visit"]])),
        "channels": draw(st.lists(st.sampled_from(CHANNELS), max_size=2)),
        "stores": draw(st.lists(st.integers(1, 3), max_size=1)),
        "partners": draw(st.lists(st.integers(1, 2), max_size=1)),
        "condition": draw(st.sampled_from(conditions)),
        "action": draw(st.sampled_from(actions)),
        "priority": draw(st.integers(0, 2)),
        "stackable": draw(st.booleans()),
        "frequency": "any",
    }


# --- the tests -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(comparison=st.sampled_from(COMPARISONS), facts=facts_of(), data=st.data())
def test_every_compiled_operator_agrees_with_reading_it(comparison, facts, data):
    # given a field, two values to compare it with, and facts (event or member possibly missing)
    name, ops, values = comparison
    low, high = sorted([data.draw(values), data.draw(values)])
    for op in [*ops, "exists"]:
        value = {"in": [low, high], "not_in": [low], "between": [low, high]}.get(op, low)
        node = parse({"field": name, "op": op, "value": value if op != "exists" else low != high})
        # when the compiled comparison and the plain reading judge them; then they agree
        assert evaluate(node, facts) == interpret(node, facts), (name, op, value)


@settings(max_examples=200, deadline=None)
@given(tree=trees, facts=facts_of())
def test_compiled_condition_agrees_with_reading_the_tree(tree, facts):
    # given a random condition and facts (the event or the member possibly missing)
    node = parse(tree)
    # when the compiled condition and the plain reading judge them; then they agree
    assert evaluate(node, facts) == interpret(node, facts)


@settings(max_examples=150, deadline=None)
@given(
    drafts=st.tuples(
        st.lists(st.one_of(leaves, trees), min_size=2, max_size=3).map(
            lambda pool: [{"all": []}, *pool]
        ),
        st.lists(action_dicts, min_size=2, max_size=3),
    ).flatmap(lambda pools: st.lists(definitions(*pools), min_size=2, max_size=8)),
    receipts=st.lists(
        st.tuples(around_bounds, receipt_lines, st.integers(0, 500), members),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_compiled_book_finds_what_checking_each_campaign_finds(drafts, receipts, data):
    # given random campaigns in one book, and random receipts around their windows
    rules = [
        CampaignRule(n + 1, n + 1, f"C{n}", CampaignDefinition.from_dict(draft))
        for n, draft in enumerate(drafts)
    ]
    book = CampaignBook(rules)
    for at, lines, used, member in receipts:
        event = data.draw(events(at=at, lines=lines))
        facts = Facts(as_of=at, tz=TZ, event=event, member=member)
        base = sum(line.amount for line in lines) // 100
        # when the book evaluates the receipt
        found = book.candidates(
            facts, lines=lines, points_used_yen=used, policy=POLICY, base_points=base
        )
        # then it finds the campaigns, points and order that checking each one finds
        expected = plain_candidates(rules, facts, lines, used, base)
        assert [(a.rule.campaign_id, a.points) for a in found] == expected

"""The condition language in Python: validation names the bad node, evaluation reads the facts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kizuna.rules.conditions import evaluate, fields_of, parse, to_json
from kizuna.rules.domain import PurchaseLine
from kizuna.rules.errors import ConditionError
from kizuna.rules.facts import Facts, HeldLot, MemberFacts, PastPurchase, event_facts

TZ = ZoneInfo("Asia/Tokyo")


def _facts(occurred_at: datetime, **event) -> Facts:
    lines = event.pop("lines", [])
    return Facts(
        as_of=occurred_at,
        tz=TZ,
        event=event_facts(
            event_type=event.pop("event_type", "purchase"),
            occurred_at=occurred_at,
            tz=TZ,
            lines=lines,
            **event,
        ),
        member=event.pop("member", None),
    )


@pytest.mark.parametrize(
    ("tree", "path", "words"),
    [
        (
            {
                "all": [
                    {"field": "event.amount", "op": "gte", "value": 1},
                    {"field": "event.colour", "op": "eq", "value": "red"},
                ]
            },
            "$.all[1].field",
            "unknown field",
        ),
        (
            {"any": [{"not": {"field": "event.amount", "op": "gte", "value": "1000"}}]},
            "$.any[0].not.value",
            "int",
        ),
        ({"field": "event.channel", "op": "gt", "value": "pos"}, "$.op", "does not take"),
        ({"field": "event.hour", "op": "eq", "value": 24}, "$.value", "between 0 and 23"),
        ({"field": "event.amount", "op": "between", "value": [5, 1]}, "$.value", "low <= high"),
        ({"field": "event.amount", "op": "in", "value": []}, "$.value", "non-empty list"),
        (
            {"field": "member.points_expiring", "op": "gte", "value": 1},
            "$.days",
            "needs a days window",
        ),
        (
            {"field": "event.amount", "op": "gte", "value": 1, "days": 30},
            "$.days",
            "no days window",
        ),
        ({"all": {"field": "event.amount"}}, "$.all", "list"),
        ({"some": []}, "$", "unknown node"),
        ({"field": "event.attributes.score", "op": "in", "value": [1, "a"]}, "$.value", "one type"),
        ("event.amount > 5", "$", "JSON object"),
    ],
)
def test_parse_rejects_a_bad_tree_naming_the_path_of_the_bad_node(tree, path, words):
    # given a malformed condition; when it is parsed; then the error names the node and the fault
    with pytest.raises(ConditionError) as refused:
        parse(tree)
    assert refused.value.path == path
    assert words in refused.value.message
    assert refused.value.code == "invalid_condition"


def test_parse_and_to_json_round_trip():
    tree = {
        "all": [
            {"field": "event.categories", "op": "in", "value": ["drink", "food"]},
            {"not": {"field": "member.spend", "op": "between", "value": [0, 999], "days": 90}},
            {"any": [{"field": "event.holiday", "op": "eq", "value": True}]},
        ]
    }
    node = parse(tree)
    assert to_json(node) == tree
    assert parse(to_json(node)) == node
    assert fields_of(node) == {"event.categories", "member.spend", "event.holiday"}


def test_weekday_hour_and_day_are_taken_in_tokyo_time():
    # given 2026-01-04 15:30 UTC, which is Monday 2026-01-05 00:30 in Tokyo
    facts = _facts(datetime(2026, 1, 4, 15, 30, tzinfo=UTC))
    # then the condition sees Monday, hour 0, the 5th
    assert evaluate(parse({"field": "event.weekday", "op": "eq", "value": 1}), facts)
    assert evaluate(parse({"field": "event.hour", "op": "eq", "value": 0}), facts)
    assert evaluate(parse({"field": "event.day", "op": "in", "value": [5, 15, 25]}), facts)


def test_holiday_comes_from_the_japanese_calendar():
    holiday = parse({"field": "event.holiday", "op": "eq", "value": True})
    # 2026-01-12 is 成人の日 (Coming of Age Day); 2026-01-13 is an ordinary Tuesday
    assert evaluate(holiday, _facts(datetime(2026, 1, 12, 3, 0, tzinfo=UTC)))
    assert not evaluate(holiday, _facts(datetime(2026, 1, 13, 3, 0, tzinfo=UTC)))
    # 23:30 JST on the holiday is still the holiday, though UTC says 14:30 of the same day
    assert evaluate(holiday, _facts(datetime(2026, 1, 12, 14, 30, tzinfo=UTC)))
    # 00:30 JST on the 13th is the 12th in UTC, but no longer the holiday in Tokyo
    assert not evaluate(holiday, _facts(datetime(2026, 1, 12, 15, 30, tzinfo=UTC)))


def test_item_fields_match_any_line_of_the_receipt():
    facts = _facts(
        datetime(2026, 1, 13, 3, 0, tzinfo=UTC),
        lines=[
            PurchaseLine(sku="A1", amount=500, category="drink", brand="kizuna"),
            PurchaseLine(sku="B2", amount=300, category="food"),
        ],
        amount=800,
    )
    assert evaluate(parse({"field": "event.categories", "op": "contains", "value": "food"}), facts)
    assert evaluate(parse({"field": "event.skus", "op": "in", "value": ["Z9", "B2"]}), facts)
    assert not evaluate(
        parse({"field": "event.brands", "op": "not_in", "value": ["kizuna"]}), facts
    )
    assert evaluate(parse({"field": "event.amount", "op": "between", "value": [800, 800]}), facts)


def test_a_comparison_on_a_missing_value_is_false_and_not_makes_it_true():
    # given an event without a channel
    facts = _facts(datetime(2026, 1, 13, 3, 0, tzinfo=UTC))
    ne = parse({"field": "event.channel", "op": "ne", "value": "pos"})
    # then "channel != pos" is false (nothing is known), "not (channel == pos)" is true
    assert not evaluate(ne, facts)
    assert evaluate(parse({"not": {"field": "event.channel", "op": "eq", "value": "pos"}}), facts)
    assert evaluate(parse({"field": "event.channel", "op": "exists", "value": False}), facts)


def test_empty_all_is_true_and_empty_any_is_false():
    facts = _facts(datetime(2026, 1, 13, 3, 0, tzinfo=UTC))
    assert evaluate(parse({"all": []}), facts)
    assert not evaluate(parse({"any": []}), facts)


def test_custom_attributes_compare_only_values_of_the_same_type():
    facts = _facts(
        datetime(2026, 1, 13, 3, 0, tzinfo=UTC),
        event_type="survey",
        attributes={"score": 5, "topic": "store"},
    )
    assert evaluate(parse({"field": "event.attributes.score", "op": "gte", "value": 4}), facts)
    assert not evaluate(parse({"field": "event.attributes.topic", "op": "gte", "value": 4}), facts)
    assert evaluate(parse({"field": "event.type", "op": "eq", "value": "survey"}), facts)


def test_member_profile_and_behaviour_fields():
    as_of = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # 10:00 on 1 March in Tokyo
    member = MemberFacts(
        member_id=1,
        joined_at=datetime(2026, 2, 27, 15, 30, tzinfo=UTC),  # 28 Feb 00:30 in Tokyo
        birth_date=date(2000, 3, 1),
        postal_code="1500001",
        purchases=[
            PastPurchase(as_of - timedelta(days=3), 5000, 0, "pos", 1, frozenset({"food"})),
            PastPurchase(as_of - timedelta(days=40), 8000, 8000, "ec", 2, frozenset({"toys"})),
            PastPurchase(as_of + timedelta(days=1), 9000, 0, "app", 1, frozenset({"drink"})),
        ],
        lots=[
            HeldLot(300, as_of - timedelta(days=10), as_of + timedelta(days=5)),
            HeldLot(200, as_of + timedelta(days=1), None),  # pending: not counted
        ],
    )
    facts = Facts(as_of=as_of, tz=TZ, member=member)

    def holds(tree: dict) -> bool:
        return evaluate(parse(tree), facts)

    assert holds({"field": "member.age", "op": "eq", "value": 26})  # birthday today
    assert holds({"field": "member.birth_month", "op": "eq", "value": 3})
    assert holds({"field": "member.postal_area", "op": "eq", "value": "150"})
    assert holds({"field": "member.days_since_joining", "op": "eq", "value": 1})
    # the fully returned purchase and the one after as_of do not count
    assert holds({"field": "member.purchase_count", "op": "eq", "value": 1})
    assert holds({"field": "member.spend", "op": "eq", "value": 5000, "days": 7})
    assert holds({"field": "member.days_since_last_purchase", "op": "eq", "value": 3})
    assert holds({"field": "member.categories_bought", "op": "not_in", "value": ["toys", "drink"]})
    assert holds({"field": "member.balance", "op": "eq", "value": 300})
    assert holds({"field": "member.points_expiring", "op": "eq", "value": 300, "days": 7})
    assert holds({"field": "member.points_expiring", "op": "eq", "value": 0, "days": 4})

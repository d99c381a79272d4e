"""Campaign rules without a database: definitions, actions, limits, exclusivity."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from kizuna.core.errors import Unprocessable
from kizuna.rules.campaigns import (
    Action,
    ActionType,
    Award,
    Basket,
    CampaignDefinition,
    CampaignRule,
    Frequency,
    LineFilter,
    choose_awards,
)
from kizuna.rules.domain import EarnPolicy, PurchaseLine

WINDOW = {"starts_at": "2026-01-01T00:00:00+09:00", "ends_at": "2026-02-01T00:00:00+09:00"}


def definition(**overrides) -> CampaignDefinition:
    return CampaignDefinition.from_dict(
        {"name": "x", **WINDOW, "action": {"type": "fixed", "points": 10}, **overrides}
    )


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"action": {"type": "multiply", "times": 1}}, "$.action.times"),
        ({"action": {"type": "multiply", "times": "two"}}, "$.action.times"),
        ({"action": {"type": "fixed", "points": -5}}, "$.action.points"),
        ({"action": {"type": "discount"}}, "$.action.type"),
        ({"ends_at": "2025-12-31T00:00:00+09:00"}, "$.ends_at"),
        ({"starts_at": "2026-01-01T00:00:00"}, "$.starts_at"),
        (
            {"condition": {"any": [{"field": "event.nope", "op": "eq", "value": 1}]}},
            "$.condition.any[0].field",
        ),
        ({"limited_days": 30}, "$.points_kind"),
        ({"budget": 0}, "$.budget"),
        ({"frequency": "hourly"}, "$.frequency"),
    ],
)
def test_definition_errors_name_the_bad_field(overrides, path):
    with pytest.raises(Unprocessable) as refused:
        definition(**overrides)
    assert refused.value.details["path"] == path
    assert refused.value.code == "invalid_campaign"


def test_definition_round_trips_through_json():
    parsed = definition(
        action={"type": "multiply", "times": "1.5", "categories": ["food"]},
        channels=["pos"],
        stores=[3],
        points_kind="limited",
        limited_days=30,
        condition={"field": "event.holiday", "op": "eq", "value": True},
        per_member_cap=100,
        budget=10_000,
        stackable=False,
        priority=2,
    )
    assert CampaignDefinition.from_dict(parsed.to_dict()) == parsed


def test_event_campaigns_default_to_their_natural_frequency():
    assert definition(event_types=["visit"]).frequency is Frequency.STORE_DAY
    assert definition(event_types=["login", "app_open"]).frequency is Frequency.DAY
    assert definition(event_types=["signup"]).frequency is Frequency.ONCE
    assert definition().frequency is Frequency.ANY


def test_multiplier_adds_x_minus_one_times_base_rounded_down():
    basket = Basket([PurchaseLine("A", 1999)], 0, EarnPolicy())
    assert Action(ActionType.MULTIPLY, times=Decimal("1.5")).points_for(basket, 19) == 9
    assert Action(ActionType.MULTIPLY, times=Decimal(5)).points_for(basket, 19) == 76


def test_category_multiplier_counts_only_matching_lines_less_points_paid_pro_rata():
    policy = EarnPolicy(excluded_categories=frozenset({"tobacco"}))
    action = Action(
        ActionType.MULTIPLY, times=Decimal(2), lines=LineFilter(categories=frozenset({"food"}))
    )
    lines = [
        PurchaseLine("F", 3000, category="food"),
        PurchaseLine("D", 1000, category="drink"),
        PurchaseLine("T", 5000, category="tobacco"),
    ]
    assert action.points_for(Basket(lines, 0, policy), 0) == 30
    # 400 yen paid with points: 300 of it falls on the food line (3000 of 4000 earning yen)
    assert action.points_for(Basket(lines, 400, policy), 0) == 27
    # a filter on two kinds of thing counts a line that matches both once
    both = Action(
        ActionType.MULTIPLY,
        times=Decimal(2),
        lines=LineFilter(categories=frozenset({"food"}), skus=frozenset({"F", "D"})),
    )
    assert both.points_for(Basket(lines, 0, policy), 0) == 40


def test_per_item_bonus_counts_units():
    action = Action(ActionType.PER_ITEM, points=15, lines=LineFilter(skus=frozenset({"TEA"})))
    lines = [PurchaseLine("TEA", 450, quantity=3), PurchaseLine("CAKE", 500)]
    assert action.points_for(Basket(lines, 0, EarnPolicy()), 9) == 45
    assert action.points_for(None, 0) == 0  # an event has no lines to count


def _award(campaign_id: int, points: int, *, priority: int = 0, stackable: bool = True) -> Award:
    rule = CampaignRule(
        campaign_id,
        campaign_id,
        f"C{campaign_id}",
        definition(priority=priority, stackable=stackable),
    )
    return Award(rule, points)


def test_limits_truncate_and_an_exhausted_campaign_drops_out_before_exclusivity():
    awards = [_award(1, 50, priority=9, stackable=False), _award(2, 30), _award(3, 20)]
    # campaign 1's budget is spent, campaign 2 has 10 left, campaign 3 is unlimited
    chosen = choose_awards(awards, {1: 0, 2: 10})
    assert [(a.rule.campaign_id, a.points) for a in chosen] == [(2, 10), (3, 20)]
    assert [a.rule.campaign_id for a in choose_awards(awards, {})] == [1]


def test_period_keys_follow_the_local_date_and_store():
    day = date(2026, 1, 5)
    assert (
        CampaignRule(1, 1, "V", definition(event_types=["visit"])).period_key(day, 7)
        == "sd:7:2026-01-05"
    )
    assert (
        CampaignRule(1, 1, "B", definition(event_types=["birthday"])).period_key(day, None)
        == "y:2026"
    )
    assert CampaignRule(1, 1, "P", definition()).period_key(day, 7) is None


def test_limited_points_expire_on_their_own_terms():
    rule = CampaignRule(1, 1, "L", definition(points_kind="limited", limited_days=30))
    at = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    row = rule.row(40, at)
    assert (row.kind, row.expires_at, row.rule) == (
        "limited",
        datetime(2026, 2, 4, 3, 0, tzinfo=UTC),
        "campaign:L",
    )

"""The survivor's rank after a merge (名寄せ), without a database."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from kizuna.tiers.domain import Metric, RankRules, TierSpec, Window, rank_after_merge

BRONZE = TierSpec(1, "bronze", "Bronze", 0, 0)
SILVER = TierSpec(2, "silver", "Silver", 1, 10_000, 150)
GOLD = TierSpec(3, "gold", "Gold", 2, 50_000, 200)
RULES = RankRules(
    metric=Metric.SPEND,
    window=Window.CALENDAR_YEAR,
    fiscal_year_start_month=4,
    tiers=[BRONZE, SILVER, GOLD],
    tz=ZoneInfo("Asia/Tokyo"),
)


@pytest.mark.parametrize(
    ("survivor", "merged", "combined", "expected"),
    [
        (BRONZE, GOLD, 1_000, GOLD),  # the merged member's higher rank carries over
        (GOLD, SILVER, 12_000, GOLD),  # a merge never lowers the survivor's rank
        (BRONZE, BRONZE, 12_000, SILVER),  # the combined metric crosses a threshold
        (SILVER, SILVER, 60_000, GOLD),
        (SILVER, BRONZE, 0, SILVER),
    ],
)
def test_the_survivor_holds_the_highest_of_both_ranks_and_the_combined_metrics_tier(
    survivor, merged, combined, expected
):
    assert rank_after_merge(RULES, [survivor, merged], combined) == expected


def test_without_tiers_there_is_no_rank():
    empty = RankRules(Metric.SPEND, Window.CALENDAR_YEAR, 4, [], ZoneInfo("Asia/Tokyo"))
    assert rank_after_merge(empty, [None, None], 5_000) is None

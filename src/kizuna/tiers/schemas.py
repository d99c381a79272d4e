"""Pydantic shapes of ranks in the API: the programme's tiers, a member's rank and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    threshold: Annotated[int, Field(ge=0, le=10**12)]
    earn_multiplier_pct: Annotated[int, Field(ge=100, le=10_000)] = 100
    birthday_points: Annotated[int, Field(ge=0, le=10**8)] = 0


class RanksIn(BaseModel):
    """A programme's ranking: the metric, its window and the tiers (levels follow thresholds)."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["spend", "points", "visits"]
    window: Literal["calendar_year", "fiscal_year", "rolling_12m"]
    fiscal_year_start_month: Annotated[int, Field(ge=1, le=12)] = 4
    tiers: Annotated[list[TierIn], Field(min_length=1, max_length=20)]


class TierRead(BaseModel):
    code: str
    name: str
    level: int
    threshold: int
    earn_multiplier_pct: int
    birthday_points: int


class RanksRead(BaseModel):
    metric: str
    window: str
    fiscal_year_start_month: int
    tiers: list[TierRead]


class RankChangeRead(BaseModel):
    from_tier: str | None
    to_tier: str
    changed_at: datetime
    reason: str
    metric_value: int


class MemberRankRead(BaseModel):
    """A member's rank and what the next one needs (会員ランクと次のランクまで)."""

    member_id: int
    tier: TierRead | None
    metric: str
    value: int
    period_start: datetime
    period_end: datetime
    next_tier: TierRead | None
    remaining: int
    history: list[RankChangeRead]


class EvaluationRead(BaseModel):
    changed: int

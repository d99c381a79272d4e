"""Pydantic shapes of campaigns in the API: the definition as operators write it, and reads.

The shape is checked here at the edge; the meaning (a valid condition tree, a window that is not
empty, limited points with an expiry of their own) by `CampaignDefinition.from_dict`, whose errors
name the path of the bad field.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$")]
Positive = Annotated[int, Field(gt=0, le=1_000_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionIn(_Strict):
    """multiply: adds (times − 1) × base (X倍); fixed: a flat bonus; per_item: per matching unit.
    `categories`, `skus` and `brands` restrict multiply and per_item to matching lines."""

    type: Literal["multiply", "fixed", "per_item"]
    times: Annotated[Decimal, Field(gt=1, le=100)] | None = None
    points: Positive | None = None
    categories: list[str] | None = None
    skus: list[str] | None = None
    brands: list[str] | None = None


class CampaignDefinitionIn(_Strict):
    """One version of a campaign: window [starts_at, ends_at), scope, condition, action, limits."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    action: ActionIn
    event_types: list[str] = Field(default_factory=lambda: ["purchase"], max_length=20)
    channels: list[str] = Field(default_factory=list, max_length=20)
    stores: list[Positive] = Field(default_factory=list, max_length=10_000)
    partners: list[Positive] = Field(default_factory=list, max_length=1_000)
    condition: dict[str, Any] | None = Field(
        default=None,
        description='The condition language: {"all"|"any": [...]}, {"not": {...}} or '
        '{"field": "event.amount", "op": "gte", "value": 3000}.',
    )
    points_kind: Literal["standard", "limited"] = "standard"
    limited_days: Positive | None = None
    limited_until: AwareDatetime | None = None
    stackable: bool = True
    priority: int = Field(default=0, ge=-1000, le=1000)
    per_member_cap: Positive | None = None
    budget: Positive | None = None
    frequency: Literal["any", "day", "store_day", "once", "year"] | None = None

    def plain(self) -> dict[str, Any]:
        """The definition as the domain reads it."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["action"] = self.action.model_dump(mode="json", exclude_none=True)
        return data


class CampaignCreate(_Strict):
    code: Code
    definition: CampaignDefinitionIn


class CampaignUpdate(_Strict):
    definition: CampaignDefinitionIn


class CampaignVersionRead(BaseModel):
    version: int
    effective_from: datetime | None
    effective_to: datetime | None
    created_at: datetime
    created_by: str | None
    definition: dict[str, Any]


class CampaignRead(BaseModel):
    id: int
    code: str
    status: str
    budget_used: int
    version: int
    definition: dict[str, Any]
    versions: list[CampaignVersionRead]


class SimulationIn(_Strict):
    """The period of past purchases to replay; `definition` tries a change before saving it."""

    start: AwareDatetime
    end: AwareDatetime
    definition: CampaignDefinitionIn | None = None


class SimulationRead(BaseModel):
    start: datetime
    end: datetime
    purchases: int
    purchases_awarded: int
    members_reached: int
    points: int
    points_over_limits: int

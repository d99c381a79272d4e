"""Campaigns as rules: their definitions, the versions in force, and which awards stack.

A campaign has a window [starts_at, ends_at), the events, channels, stores and partners it covers,
a condition (the condition language) and an action (`kizuna.rules.actions`). Its points may be
`limited` (期間限定) with their own expiry. Limits — a per-member cap and a total budget —
truncate an award to what is left; exclusivity and priority then choose: when the highest-priority
award is exclusive it applies alone, otherwise every stackable award applies. Events that earn
once per period (a visit per store per day) carry a period key that the grant table keeps unique.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from operator import attrgetter
from typing import Any, NamedTuple

from kizuna.rules.actions import Action, strings
from kizuna.rules.actions import ActionType as ActionType  # the campaigns' public names
from kizuna.rules.actions import Basket as Basket
from kizuna.rules.actions import LineFilter as LineFilter
from kizuna.rules.conditions import TRUE, Node, parse, to_json
from kizuna.rules.domain import BreakdownRow
from kizuna.rules.errors import ConditionError, invalid_campaign


class Frequency(StrEnum):
    """How often one member can earn from one campaign (beyond its cap)."""

    ANY = "any"
    DAY = "day"
    STORE_DAY = "store_day"
    ONCE = "once"
    YEAR = "year"


DEFAULT_FREQUENCY = {
    "visit": Frequency.STORE_DAY,
    "login": Frequency.DAY,
    "app_open": Frequency.DAY,
    "signup": Frequency.ONCE,
    "referral": Frequency.ONCE,
    "birthday": Frequency.YEAR,
}
KINDS = ("standard", "limited")


def _ints(value: Any, path: str) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise invalid_campaign(path, "a list of ids")
    return frozenset(value)


def _optional_positive(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise invalid_campaign(path, "a positive whole number")
    return value


def _instant(value: Any, path: str) -> datetime:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise invalid_campaign(path, "an ISO 8601 instant with its offset") from None
    if moment.tzinfo is None:
        raise invalid_campaign(
            path, "give the offset (e.g. +09:00): a campaign window is an instant"
        )
    return moment


@dataclass(frozen=True)
class CampaignDefinition:
    """The editable rules of one campaign version."""

    name: str
    starts_at: datetime
    ends_at: datetime
    action: Action
    event_types: frozenset[str] = frozenset({"purchase"})
    channels: frozenset[str] = frozenset()
    stores: frozenset[int] = frozenset()
    partners: frozenset[int] = frozenset()
    condition: Node = TRUE
    points_kind: str = "standard"
    limited_days: int | None = None
    limited_until: datetime | None = None
    stackable: bool = True
    priority: int = 0
    per_member_cap: int | None = None
    budget: int | None = None
    frequency: Frequency = Frequency.ANY

    @classmethod
    def from_dict(cls, data: Any) -> CampaignDefinition:
        """A validated definition; errors name the path of the bad field (`$.action.times`)."""
        if not isinstance(data, Mapping):
            raise invalid_campaign("$", "a campaign definition is an object")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid_campaign("$.name", "a campaign needs a name")
        starts_at = _instant(data.get("starts_at"), "$.starts_at")
        ends_at = _instant(data.get("ends_at"), "$.ends_at")
        if ends_at <= starts_at:
            raise invalid_campaign("$.ends_at", "ends_at is after starts_at")
        event_types = strings(data.get("event_types"), "$.event_types") or frozenset({"purchase"})
        try:
            condition = parse(data.get("condition") or {"all": []}, "$.condition")
        except ConditionError as bad:
            raise invalid_campaign(bad.path, bad.message.split(": ", 1)[-1]) from None
        kind = data.get("points_kind", "standard")
        if kind not in KINDS:
            raise invalid_campaign("$.points_kind", "points_kind is standard or limited")
        limited_days = _optional_positive(data.get("limited_days"), "$.limited_days")
        until = data.get("limited_until")
        limited_until = _instant(until, "$.limited_until") if until is not None else None
        if kind == "standard" and (limited_days or limited_until):
            raise invalid_campaign(
                "$.points_kind", "an expiry of its own needs points_kind limited"
            )
        priority = data.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise invalid_campaign("$.priority", "priority is a whole number (higher wins)")
        stackable = data.get("stackable", True)
        if not isinstance(stackable, bool):
            raise invalid_campaign("$.stackable", "stackable is true or false")
        default = _default_frequency(event_types)
        try:
            frequency = Frequency(data.get("frequency") or default)
        except ValueError:
            choices = [str(f) for f in Frequency]
            raise invalid_campaign("$.frequency", f"frequency is one of {choices}") from None
        return cls(
            name=name.strip(),
            starts_at=starts_at,
            ends_at=ends_at,
            action=Action.from_dict(data.get("action")),
            event_types=event_types,
            channels=strings(data.get("channels"), "$.channels"),
            stores=_ints(data.get("stores"), "$.stores"),
            partners=_ints(data.get("partners"), "$.partners"),
            condition=condition,
            points_kind=kind,
            limited_days=limited_days,
            limited_until=limited_until,
            stackable=stackable,
            priority=priority,
            per_member_cap=_optional_positive(data.get("per_member_cap"), "$.per_member_cap"),
            budget=_optional_positive(data.get("budget"), "$.budget"),
            frequency=frequency,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored with the version (the inverse of `from_dict`)."""
        return {
            "name": self.name,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "action": self.action.to_dict(),
            "event_types": sorted(self.event_types),
            "channels": sorted(self.channels),
            "stores": sorted(self.stores),
            "partners": sorted(self.partners),
            "condition": to_json(self.condition),
            "points_kind": self.points_kind,
            "limited_days": self.limited_days,
            "limited_until": self.limited_until.isoformat() if self.limited_until else None,
            "stackable": self.stackable,
            "priority": self.priority,
            "per_member_cap": self.per_member_cap,
            "budget": self.budget,
            "frequency": str(self.frequency),
        }


def _default_frequency(event_types: Iterable[str]) -> Frequency:
    found = {DEFAULT_FREQUENCY.get(kind, Frequency.ANY) for kind in event_types}
    return found.pop() if len(found) == 1 else Frequency.ANY


@dataclass(frozen=True)
class CampaignRule:
    """A campaign version in force: its definition and the ids that record its grants."""

    campaign_id: int
    version_id: int
    code: str
    definition: CampaignDefinition

    @property
    def limited(self) -> bool:
        return self.definition.per_member_cap is not None or self.definition.budget is not None

    @cached_property
    def rule_name(self) -> str:
        return f"campaign:{self.code}"

    @cached_property
    def order(self) -> tuple[int, int]:
        """Sort key: the highest priority first, then the oldest campaign."""
        return (-self.definition.priority, self.campaign_id)

    @cached_property
    def row(self) -> Callable[[int, datetime], BreakdownRow]:
        """The breakdown row of `points` from this campaign for an earn at `occurred_at`: a
        function made once per rule, since it runs for every award."""
        d = self.definition
        name, label, kind, until = self.rule_name, d.name, d.points_kind, d.limited_until
        # tuple.__new__ skips the named tuple's Python-level __new__.
        new = tuple.__new__
        if until is not None or d.limited_days is None:
            return lambda points, _at: new(BreakdownRow, (name, label, points, kind, until))
        lasts = timedelta(days=d.limited_days)
        return lambda points, at: new(BreakdownRow, (name, label, points, kind, at + lasts))

    def period_key(self, local_date: date, store: int | None) -> str | None:
        """The once-per-period key of an earn on `local_date` (None: no such limit)."""
        frequency = self.definition.frequency
        if frequency is Frequency.DAY:
            return f"d:{local_date.isoformat()}"
        if frequency is Frequency.STORE_DAY:
            return f"sd:{store}:{local_date.isoformat()}"
        if frequency is Frequency.ONCE:
            return "once"
        if frequency is Frequency.YEAR:
            return f"y:{local_date.year}"
        return None


class Award(NamedTuple):
    """Points a campaign would add to one earn."""

    rule: CampaignRule
    points: int


_ORDER = attrgetter("rule.order")


def choose_awards(candidates: Iterable[Award], left: Mapping[int, int | None]) -> list[Award]:
    """Limit each award to what its cap and budget leave, then apply exclusivity and priority.

    `left[campaign_id]` is what the campaign may still grant this member (None: no limit).
    """
    if not left:
        limited = list(candidates)
    else:
        limited = []
        for award in candidates:
            room = left.get(award.rule.campaign_id)
            if room is None:
                limited.append(award)
            elif min(award.points, room) > 0:
                limited.append(Award(award.rule, min(award.points, room)))
    if not limited:
        return []
    limited.sort(key=_ORDER)
    if not limited[0].rule.definition.stackable:
        return limited[:1]
    return [award for award in limited if award.rule.definition.stackable]

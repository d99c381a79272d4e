"""Campaigns as rules: when one applies to an event, what it adds, and which ones stack.

A campaign has a window [starts_at, ends_at), the events, channels, stores and partners it covers,
a condition (the condition language) and an action: `multiply` adds (X−1) × the base points of the
matching lines (X倍), `fixed` adds a flat bonus, `per_item` a bonus per matching unit. Its points
may be `limited` (期間限定) with their own expiry. Limits — a per-member cap and a total budget —
truncate an award to what is left; exclusivity and priority then choose: when the highest-priority
award is exclusive it applies alone, otherwise every stackable award applies. Events that earn
once per period (a visit per store per day) carry a period key that the grant table keeps unique.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any, NamedTuple

from kizuna.core.errors import Unprocessable
from kizuna.rules.conditions import TRUE, Node, fields_of, parse, predicate, to_json
from kizuna.rules.domain import BreakdownRow, EarnPolicy, PurchaseLine, points_for_yen
from kizuna.rules.errors import ConditionError, ErrorCode
from kizuna.rules.facts import Facts


class ActionType(StrEnum):
    MULTIPLY = "multiply"  # X倍: adds (X − 1) × base
    FIXED = "fixed"  # a flat bonus per event
    PER_ITEM = "per_item"  # a bonus per matching unit bought


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


def _invalid(path: str, message: str) -> Unprocessable:
    return Unprocessable(ErrorCode.INVALID_CAMPAIGN, f"{path}: {message}", path=path)


@dataclass(frozen=True)
class LineFilter:
    """Which receipt lines an action counts; an empty filter counts every line."""

    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.categories or self.skus or self.brands)

    def matches(self, line: PurchaseLine) -> bool:
        """True when the line is in one of the listed categories, SKUs or brands."""
        return (
            (line.category in self.categories)
            or (line.sku in self.skus)
            or (line.brand in self.brands)
        )

    @cached_property
    def single(self) -> tuple[str, tuple[str, ...]] | None:
        """(line attribute, values) when the filter names one kind of thing; None when it names
        several (a line could match twice, so lines are walked one by one)."""
        kinds = [
            (attr, values)
            for attr, values in (
                ("category", self.categories),
                ("sku", self.skus),
                ("brand", self.brands),
            )
            if values
        ]
        if len(kinds) != 1:
            return None
        attr, values = kinds[0]
        return attr, tuple(sorted(values))

    def yen(self, basket: Basket) -> int:
        """Yen of the matching lines that earn."""
        if self.single is not None:
            attr, values = self.single
            by = basket.totals(attr)[0]
            return sum(by.get(value, 0) for value in values)
        excluded = basket.policy.excluded_categories
        return sum(
            line.amount
            for line in basket.lines
            if line.category not in excluded and self.matches(line)
        )

    def units(self, basket: Basket) -> int:
        """Units of the matching lines (an empty filter: every unit)."""
        if self.empty:
            return sum(line.quantity for line in basket.lines)
        if self.single is not None:
            attr, values = self.single
            by = basket.totals(attr)[1]
            return sum(by.get(value, 0) for value in values)
        return sum(line.quantity for line in basket.lines if self.matches(line))


class Basket:
    """A receipt summed up once for every campaign that looks at its lines: yen (of the lines
    that earn) and units by category, SKU or brand, each computed when first asked for."""

    def __init__(
        self, lines: Sequence[PurchaseLine], points_used_yen: int, policy: EarnPolicy
    ) -> None:
        self.lines = lines
        self.points_used_yen = points_used_yen
        self.policy = policy
        excluded = policy.excluded_categories
        self.gross = sum(line.amount for line in lines if line.category not in excluded)
        self._totals: dict[str, tuple[dict[Any, int], dict[Any, int]]] = {}

    def totals(self, attr: str) -> tuple[dict[Any, int], dict[Any, int]]:
        """(yen that earns, units) per value of the line attribute `attr`."""
        found = self._totals.get(attr)
        if found is None:
            yen: dict[Any, int] = {}
            units: dict[Any, int] = {}
            excluded = self.policy.excluded_categories
            for line in self.lines:
                key = getattr(line, attr)
                units[key] = units.get(key, 0) + line.quantity
                if line.category not in excluded:
                    yen[key] = yen.get(key, 0) + line.amount
            found = self._totals[attr] = (yen, units)
        return found


@dataclass(frozen=True)
class Action:
    """What an applying campaign adds."""

    type: ActionType
    times: Decimal = Decimal(1)
    points: int = 0
    lines: LineFilter = field(default_factory=LineFilter)

    @cached_property
    def reads_lines(self) -> bool:
        """True when the bonus depends on the receipt's lines, not only on its base."""
        return self.type is ActionType.PER_ITEM or (
            self.type is ActionType.MULTIPLY and not self.lines.empty
        )

    @cached_property
    def extra(self) -> tuple[int, int]:
        """(times − 1) as an exact ratio (numerator, denominator): X倍 adds base × n ÷ d."""
        numerator, denominator = (self.times - 1).as_integer_ratio()
        return numerator, denominator

    def points_for(self, basket: Basket | None, base_points: int) -> int:
        """The bonus of this action on a receipt (an event has no basket: nothing to count).

        Rounded down once per campaign and receipt, as the base is."""
        kind = self.type
        if kind is ActionType.FIXED:
            return self.points
        if kind is ActionType.PER_ITEM:
            return self.points * self.lines.units(basket) if basket else 0
        numerator, denominator = self.extra
        if not self.reads_lines:
            return base_points * numerator // denominator
        if basket is None:
            return 0
        matched = self.lines.yen(basket)
        policy = basket.policy
        if not policy.points_paid_earns and basket.gross:
            # What was paid with points earns nothing: take it off pro rata, rounded in favour
            # of the programme.
            matched -= -(-basket.points_used_yen * matched // basket.gross)
        return points_for_yen(max(matched, 0), policy) * numerator // denominator

    @classmethod
    def from_dict(cls, data: Any, path: str = "$.action") -> Action:
        if not isinstance(data, Mapping):
            raise _invalid(path, "an action is an object with a type")
        try:
            kind = ActionType(str(data.get("type")))
        except ValueError:
            raise _invalid(f"{path}.type", "type is multiply, fixed or per_item") from None
        lines = LineFilter(
            categories=_strings(data.get("categories"), f"{path}.categories"),
            skus=_strings(data.get("skus"), f"{path}.skus"),
            brands=_strings(data.get("brands"), f"{path}.brands"),
        )
        if kind is ActionType.MULTIPLY:
            try:
                times = Decimal(str(data.get("times")))
            except InvalidOperation:
                raise _invalid(f"{path}.times", "times is a number such as 2 or 1.5") from None
            if not times.is_finite() or times <= 1 or times > 100:
                raise _invalid(f"{path}.times", "times is more than 1 and at most 100")
            return cls(kind, times=times, lines=lines)
        points = data.get("points")
        if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
            raise _invalid(f"{path}.points", "points is a positive whole number")
        return cls(kind, points=points, lines=lines)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": str(self.type)}
        if self.type is ActionType.MULTIPLY:
            data["times"] = str(self.times)
        else:
            data["points"] = self.points
        for name in ("categories", "skus", "brands"):
            values = getattr(self.lines, name)
            if values:
                data[name] = sorted(values)
        return data


def _strings(value: Any, path: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(path, "a list of strings")
    return frozenset(value)


def _ints(value: Any, path: str) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise _invalid(path, "a list of ids")
    return frozenset(value)


def _optional_positive(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _invalid(path, "a positive whole number")
    return value


def _instant(value: Any, path: str) -> datetime:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise _invalid(path, "an ISO 8601 instant with its offset") from None
    if moment.tzinfo is None:
        raise _invalid(path, "give the offset (e.g. +09:00): a campaign window is an instant")
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
            raise _invalid("$", "a campaign definition is an object")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("$.name", "a campaign needs a name")
        starts_at = _instant(data.get("starts_at"), "$.starts_at")
        ends_at = _instant(data.get("ends_at"), "$.ends_at")
        if ends_at <= starts_at:
            raise _invalid("$.ends_at", "ends_at is after starts_at")
        event_types = _strings(data.get("event_types"), "$.event_types") or frozenset({"purchase"})
        try:
            condition = parse(data.get("condition") or {"all": []}, "$.condition")
        except ConditionError as bad:
            raise _invalid(bad.path, bad.message.split(": ", 1)[-1]) from None
        kind = data.get("points_kind", "standard")
        if kind not in KINDS:
            raise _invalid("$.points_kind", "points_kind is standard or limited")
        limited_days = _optional_positive(data.get("limited_days"), "$.limited_days")
        until = data.get("limited_until")
        limited_until = _instant(until, "$.limited_until") if until is not None else None
        if kind == "standard" and (limited_days or limited_until):
            raise _invalid("$.points_kind", "an expiry of its own needs points_kind limited")
        priority = data.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise _invalid("$.priority", "priority is a whole number (higher wins)")
        stackable = data.get("stackable", True)
        if not isinstance(stackable, bool):
            raise _invalid("$.stackable", "stackable is true or false")
        default = _default_frequency(event_types)
        try:
            frequency = Frequency(data.get("frequency") or default)
        except ValueError:
            choices = [str(f) for f in Frequency]
            raise _invalid("$.frequency", f"frequency is one of {choices}") from None
        return cls(
            name=name.strip(),
            starts_at=starts_at,
            ends_at=ends_at,
            action=Action.from_dict(data.get("action")),
            event_types=event_types,
            channels=_strings(data.get("channels"), "$.channels"),
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

    def row(self, points: int, occurred_at: datetime) -> BreakdownRow:
        """The breakdown row of `points` from this campaign."""
        d = self.definition
        expires_at = d.limited_until
        if expires_at is None and d.limited_days is not None:
            expires_at = occurred_at + timedelta(days=d.limited_days)
        return BreakdownRow(self.rule_name, d.name, points, d.points_kind, expires_at)

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


class CampaignBook:
    """The campaign rules in force, indexed by event type for fast evaluation."""

    def __init__(self, rules: Iterable[CampaignRule]) -> None:
        self.rules = list(rules)
        # Per event type, what the hot loop reads, unpacked once.
        self._by_type: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for rule in self.rules:
            d = rule.definition
            entry = (
                d.starts_at,
                d.ends_at,
                d.channels,
                d.stores,
                d.partners,
                predicate(d.condition),
                d.action,
                rule,
            )
            for kind in d.event_types:
                self._by_type[kind].append(entry)
        self._fields: dict[str, frozenset[str]] = defaultdict(frozenset)
        for rule in self.rules:
            for kind in rule.definition.event_types:
                self._fields[kind] |= fields_of(rule.definition.condition)

    def fields_for(self, event_type: str) -> frozenset[str]:
        """Every field the conditions of this event type's campaigns read."""
        return self._fields.get(event_type, frozenset())

    def candidates(
        self,
        facts: Facts,
        *,
        lines: Sequence[PurchaseLine] = (),
        points_used_yen: int = 0,
        policy: EarnPolicy,
        base_points: int = 0,
    ) -> list[Award]:
        """Every campaign whose window, scope and condition hold, with its points before limits."""
        event = facts.event
        assert event is not None
        at = facts.as_of
        channel, store, partner = event.channel, event.store, event.partner
        basket: Basket | None = None
        found: list[Award] = []
        for starts, ends, channels, stores, partners, check, action, rule in self._by_type.get(
            event.type, ()
        ):
            if not starts <= at < ends:
                continue
            if channels and channel not in channels:
                continue
            if stores and store not in stores:
                continue
            if partners and partner not in partners:
                continue
            if not check(facts):
                continue
            if basket is None and lines and action.reads_lines:
                basket = Basket(lines, points_used_yen, policy)
            points = action.points_for(basket, base_points)
            if points > 0:
                found.append(Award(rule, points))
        return found


def choose_awards(candidates: Iterable[Award], left: Mapping[int, int | None]) -> list[Award]:
    """Limit each award to what its cap and budget leave, then apply exclusivity and priority.

    `left[campaign_id]` is what the campaign may still grant this member (None: no limit).
    """
    limited: list[Award] = []
    for award in candidates:
        room = left.get(award.rule.campaign_id) if left else None
        if room is None:
            limited.append(award)
        elif min(award.points, room) > 0:
            limited.append(Award(award.rule, min(award.points, room)))
    if not limited:
        return []
    limited.sort(key=lambda a: a.rule.order)
    if not limited[0].rule.definition.stackable:
        return limited[:1]
    return [award for award in limited if award.rule.definition.stackable]

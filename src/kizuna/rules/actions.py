"""Campaign actions: what an applying campaign adds, counted on the receipt's lines.

`multiply` adds (X−1) × the base points of the matching lines (X倍), `fixed` a flat bonus,
`per_item` a bonus per matching unit bought. A `LineFilter` names the lines an action counts; a
`Basket` sums a receipt up once, per category, SKU or brand, for every action that looks at its
lines. Each bonus is rounded down once per campaign and receipt, as the base is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any

from kizuna.rules.domain import EarnPolicy, PurchaseLine, points_for_yen
from kizuna.rules.errors import invalid_campaign
from kizuna.rules.facts import derived

Totals = tuple[dict[Any, int], dict[Any, int]]  # (yen that earns, units) per value


class ActionType(StrEnum):
    MULTIPLY = "multiply"  # X倍: adds (X − 1) × base
    FIXED = "fixed"  # a flat bonus per event
    PER_ITEM = "per_item"  # a bonus per matching unit bought


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
        """(the `Basket` totals to read, values) when the filter names one kind of thing; None
        when it names several (a line could match twice, so lines are walked one by one)."""
        kinds = [
            (totals, values)
            for totals, values in (
                ("by_category", self.categories),
                ("by_sku", self.skus),
                ("by_brand", self.brands),
            )
            if values
        ]
        if len(kinds) != 1:
            return None
        totals, values = kinds[0]
        return totals, tuple(sorted(values))

    def yen(self, basket: Basket) -> int:
        """Yen of the matching lines that earn."""
        single = self.single
        if single is not None:
            return _sum_of(getattr(basket, single[0])[0], single[1])
        excluded = basket.policy.excluded_categories
        return sum(
            line.amount
            for line in basket.lines
            if line.category not in excluded and self.matches(line)
        )

    def units(self, basket: Basket) -> int:
        """Units of the matching lines (an empty filter: every unit)."""
        single = self.single
        if single is not None:
            return _sum_of(getattr(basket, single[0])[1], single[1])
        if self.empty:
            return sum(line.quantity for line in basket.lines)
        return sum(line.quantity for line in basket.lines if self.matches(line))


def _sum_of(by: Mapping[Any, int], values: Sequence[Any]) -> int:
    # A plain loop: these are one to a few values, where a generator costs more than the sum.
    total = 0
    for value in values:
        total += by.get(value, 0)
    return total


class Basket:
    """A receipt summed up once for every campaign that looks at its lines: yen (of the lines
    that earn) and units by category, SKU or brand, each computed when first asked for."""

    def __init__(
        self, lines: Sequence[PurchaseLine], points_used_yen: int, policy: EarnPolicy
    ) -> None:
        self.lines = lines
        self.points_used_yen = points_used_yen
        self.policy = policy

    @derived
    def gross(self) -> int:
        """Yen of the lines that earn."""
        excluded = self.policy.excluded_categories
        return sum(line.amount for line in self.lines if line.category not in excluded)

    @derived
    def by_category(self) -> Totals:
        return self._totals("category")

    @derived
    def by_sku(self) -> Totals:
        return self._totals("sku")

    @derived
    def by_brand(self) -> Totals:
        return self._totals("brand")

    def _totals(self, attr: str) -> Totals:
        """(yen that earns, units) per value of the line attribute `attr`."""
        yen: dict[Any, int] = {}
        units: dict[Any, int] = {}
        excluded = self.policy.excluded_categories
        for line in self.lines:
            key = getattr(line, attr)
            units[key] = units.get(key, 0) + line.quantity
            if line.category not in excluded:
                yen[key] = yen.get(key, 0) + line.amount
        return yen, units


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
        if basket.points_used_yen and not policy.points_paid_earns and basket.gross:
            # What was paid with points earns nothing: take it off pro rata, rounded in favour
            # of the programme.
            matched -= -(-basket.points_used_yen * matched // basket.gross)
        return points_for_yen(max(matched, 0), policy) * numerator // denominator

    @classmethod
    def from_dict(cls, data: Any, path: str = "$.action") -> Action:
        if not isinstance(data, Mapping):
            raise invalid_campaign(path, "an action is an object with a type")
        try:
            kind = ActionType(str(data.get("type")))
        except ValueError:
            raise invalid_campaign(f"{path}.type", "type is multiply, fixed or per_item") from None
        lines = LineFilter(
            categories=strings(data.get("categories"), f"{path}.categories"),
            skus=strings(data.get("skus"), f"{path}.skus"),
            brands=strings(data.get("brands"), f"{path}.brands"),
        )
        if kind is ActionType.MULTIPLY:
            try:
                times = Decimal(str(data.get("times")))
            except InvalidOperation:
                raise invalid_campaign(
                    f"{path}.times", "times is a number such as 2 or 1.5"
                ) from None
            if not times.is_finite() or times <= 1 or times > 100:
                raise invalid_campaign(f"{path}.times", "times is more than 1 and at most 100")
            return cls(kind, times=times, lines=lines)
        points = data.get("points")
        if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
            raise invalid_campaign(f"{path}.points", "points is a positive whole number")
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


def strings(value: Any, path: str) -> frozenset[str]:
    """A validated list of strings as a set (absent: empty)."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_campaign(path, "a list of strings")
    return frozenset(value)

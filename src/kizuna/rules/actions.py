"""Campaign actions: what an applying campaign adds, counted on the receipt's lines.

`multiply` adds (X−1) × the base points of the matching lines (X倍), `fixed` a flat bonus,
`per_item` a bonus per matching unit bought. A `LineFilter` names the lines an action counts; a
`Basket` sums a receipt up once, per category, SKU or brand, for every action that looks at its
lines. Each bonus is rounded down once per campaign and receipt, as the base is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from operator import attrgetter
from typing import Any

from kizuna.rules.domain import EarnPolicy, PurchaseLine, points_for_yen
from kizuna.rules.errors import invalid_campaign
from kizuna.rules.facts import derived

Totals = tuple[dict[Any, int], dict[Any, int]]  # (yen that earns, units) per value
Counter = Callable[["Basket | None", int], int]  # (basket, base points) -> bonus points


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

    @cached_property
    def yen(self) -> Callable[[Basket], int]:
        """Yen of the matching lines that earn: a function of the basket, made once per filter
        (it runs per receipt)."""
        if self.single is not None:
            return self._total(0)
        matches = self.matches

        def walk(basket: Basket) -> int:
            excluded = basket.policy.excluded_categories
            return sum(
                line.amount
                for line in basket.lines
                if line.category not in excluded and matches(line)
            )

        return walk

    @cached_property
    def units(self) -> Callable[[Basket], int]:
        """Units of the matching lines (an empty filter: every unit), as `yen` is made."""
        if self.single is not None:
            return self._total(1)
        if self.empty:
            return lambda basket: sum(line.quantity for line in basket.lines)
        matches = self.matches
        return lambda basket: sum(line.quantity for line in basket.lines if matches(line))

    def _total(self, index: int) -> Callable[[Basket], int]:
        """Yen (index 0) or units (1) of the values a single-kind filter names, from the
        basket's totals."""
        assert self.single is not None
        totals, values = attrgetter(self.single[0]), self.single[1]

        def total(basket: Basket) -> int:
            by = totals(basket)[index]
            found = 0
            for value in values:  # one to a few values: a loop costs less than a generator
                found += by.get(value, 0)
            return found

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
        key = attrgetter(attr)
        for line in self.lines:
            value = key(line)
            units[value] = units.get(value, 0) + line.quantity
            if line.category not in excluded:
                yen[value] = yen.get(value, 0) + line.amount
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

    @cached_property
    def points_for(self) -> Counter:
        """The bonus of this action on a receipt: a function of the basket (None for an event,
        which has no lines to count) and the base points, rounded down once per campaign and
        receipt as the base is. Specialised to the action once, since it runs per receipt."""
        points, lines = self.points, self.lines
        if self.type is ActionType.FIXED:
            return lambda _basket, _base: points
        if self.type is ActionType.PER_ITEM:
            units = lines.units
            return lambda basket, _base: points * units(basket) if basket is not None else 0
        numerator, denominator = self.extra
        if not self.reads_lines:
            return lambda _basket, base: base * numerator // denominator
        yen = lines.yen

        def multiply(basket: Basket | None, _base: int) -> int:
            if basket is None:
                return 0
            matched = yen(basket)
            policy = basket.policy
            if basket.points_used_yen and not policy.points_paid_earns and basket.gross:
                # What was paid with points earns nothing: take it off pro rata, rounded in
                # favour of the programme.
                matched -= -(-basket.points_used_yen * matched // basket.gross)
            return points_for_yen(max(matched, 0), policy) * numerator // denominator

        return multiply

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

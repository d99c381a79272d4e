"""Campaign actions: what an applying campaign adds, counted on the receipt's lines.

`multiply` adds (X−1) × the base points of the matching lines (X倍), `fixed` a flat bonus,
`per_item` a bonus per matching unit bought. A `LineFilter` names the lines an action counts (by
category, SKU or brand); a `Basket` is the receipt those actions count. Each bonus is rounded down
once per campaign and receipt, as the base is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any

from kizuna.rules.domain import EarnPolicy, PurchaseLine, points_for_yen
from kizuna.rules.errors import invalid_campaign
from kizuna.rules.facts import derived

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

    def yen(self, basket: Basket) -> int:
        """Yen of the matching lines (in one of the listed categories, SKUs or brands) that
        earn."""
        categories, skus, brands = self.categories, self.skus, self.brands
        excluded = basket.policy.excluded_categories
        return sum(
            [
                line.amount
                for line in basket.lines
                if (line.category in categories or line.sku in skus or line.brand in brands)
                and line.category not in excluded
            ]
        )

    def units(self, basket: Basket) -> int:
        """Units of the matching lines (an empty filter: every unit)."""
        if self.empty:
            return sum([line.quantity for line in basket.lines])
        categories, skus, brands = self.categories, self.skus, self.brands
        return sum(
            [
                line.quantity
                for line in basket.lines
                if line.category in categories or line.sku in skus or line.brand in brands
            ]
        )


class Basket:
    """A receipt as the actions that count its lines see it; `gross`, the yen of the lines that
    earn, is summed when first asked for (only a receipt partly paid with points needs it)."""

    def __init__(
        self, lines: Sequence[PurchaseLine], points_used_yen: int, policy: EarnPolicy
    ) -> None:
        self.lines = lines
        self.points_used_yen = points_used_yen
        self.policy = policy

    @derived
    def gross(self) -> int:
        excluded = self.policy.excluded_categories
        return sum([line.amount for line in self.lines if line.category not in excluded])


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

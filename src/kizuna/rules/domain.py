"""What a purchase earns, as a breakdown of one row per rule.

The base earn is the programme's rate (e.g. 1 point per 100 yen) applied to the eligible amount of
the receipt and rounded down once per receipt. Excluded categories (tobacco, gift cards) earn
nothing; the part paid with points earns nothing unless the programme says so. Campaigns and rank
bonuses add rows to the same breakdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True)
class PurchaseLine:
    """One line of a receipt: `amount` is the line total in yen after discounts."""

    sku: str
    amount: int
    quantity: int = 1
    category: str | None = None
    brand: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PurchaseLine:
        return cls(
            sku=str(data["sku"]),
            amount=int(data["amount"]),
            quantity=int(data.get("quantity", 1)),
            category=data.get("category"),
            brand=data.get("brand"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "amount": self.amount,
            "quantity": self.quantity,
            "category": self.category,
            "brand": self.brand,
        }

    def unit_amount_for(self, quantity: int) -> int:
        """The yen of `quantity` units of this line, pro rata and rounded down."""
        return self.amount * quantity // self.quantity


@dataclass(frozen=True)
class EarnPolicy:
    """The programme's base earn: `points` per `per_yen` yen, rounded down per receipt."""

    points: int = 1
    per_yen: int = 100
    excluded_categories: frozenset[str] = field(default_factory=frozenset)
    points_paid_earns: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EarnPolicy:
        return cls(
            points=int(data.get("points", 1)),
            per_yen=int(data.get("per_yen", 100)),
            excluded_categories=frozenset(data.get("excluded_categories", ())),
            points_paid_earns=bool(data.get("points_paid_earns", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "per_yen": self.per_yen,
            "excluded_categories": sorted(self.excluded_categories),
            "points_paid_earns": self.points_paid_earns,
        }


class BreakdownRow(NamedTuple):
    """Points one rule adds to an earn; `kind` and `expires_at` set for limited points.

    A named tuple rather than a frozen dataclass: a receipt builds one per rule that applies,
    and a tuple is several times cheaper to build."""

    rule: str
    label: str
    points: int
    kind: str = "standard"
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "label": self.label,
            "points": self.points,
            "kind": self.kind,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def eligible_amount(lines: Iterable[PurchaseLine], points_used_yen: int, policy: EarnPolicy) -> int:
    """Yen that earns: non-excluded lines, less what was paid with points unless that earns."""
    excluded = policy.excluded_categories
    total = sum([line.amount for line in lines if line.category not in excluded])
    if not policy.points_paid_earns:
        total -= points_used_yen
    return max(total, 0)


def points_for_yen(yen: int, policy: EarnPolicy) -> int:
    """The base rate applied to `yen`, rounded down: the one rounding rule of the base earn."""
    return yen * policy.points // policy.per_yen


def base_earn(
    lines: Sequence[PurchaseLine], points_used_yen: int, policy: EarnPolicy
) -> BreakdownRow:
    """The base row of a receipt's earn breakdown."""
    points = points_for_yen(eligible_amount(lines, points_used_yen, policy), policy)
    return BreakdownRow(rule="base", label="通常ポイント", points=points)


def breakdown_total(rows: Iterable[BreakdownRow]) -> int:
    """Points of a whole breakdown."""
    return sum(row.points for row in rows)

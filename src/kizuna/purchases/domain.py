"""Receipts and returns, without a database.

A purchase is a receipt of lines. A return names lines and quantities (or everything left); the
refund of a line is pro rata to the quantity and rounded down, computed on the cumulative returned
quantity so that returns adding up to the whole line refund exactly its amount. The points paid
with are restored cumulatively: after each return the purchase has restored
floor(redeemed × refunded so far ÷ purchase amount) unless the caller says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kizuna.core.errors import KizunaError
from kizuna.purchases.errors import ErrorCode
from kizuna.rules.domain import PurchaseLine


@dataclass(frozen=True)
class PurchaseRequest:
    """A purchase as the till sends it; `redeem_points` pays part of it with points."""

    member_id: int
    store_id: int
    receipt_no: str
    occurred_at: datetime
    lines: Sequence[PurchaseLine]
    redeem_points: int = 0
    channel: str = "pos"
    pending_until: datetime | None = None  # EC: points wait for the return window or shipping
    offline: bool = False  # late data from an offline till: no redemption

    @property
    def total_amount(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class ReturnLine:
    """`quantity` units of line `line_no` (0-based, as on the receipt) come back."""

    line_no: int
    quantity: int


def validate_purchase(request: PurchaseRequest, point_value_yen: int) -> None:
    """Refuse a receipt that cannot be right, naming what is wrong."""
    if not request.lines:
        raise KizunaError(ErrorCode.INVALID_PURCHASE, "a purchase needs at least one line")
    for number, line in enumerate(request.lines):
        if line.amount < 0 or line.quantity <= 0:
            raise KizunaError(
                ErrorCode.INVALID_PURCHASE,
                f"line {number}: amount must be ≥ 0 and quantity > 0",
                line_no=number,
            )
    if request.redeem_points < 0:
        raise KizunaError(ErrorCode.INVALID_PURCHASE, "redeem_points cannot be negative")
    if request.redeem_points and request.offline:
        raise KizunaError(
            ErrorCode.OFFLINE_REDEMPTION_REFUSED,
            "points cannot be redeemed in an offline transaction",
            status=409,
        )
    if request.redeem_points * point_value_yen > request.total_amount:
        raise KizunaError(
            ErrorCode.INVALID_PURCHASE, "points redeemed are worth more than the purchase"
        )


def returned_after(
    lines: Sequence[PurchaseLine], returned: Sequence[int], request: Sequence[ReturnLine] | None
) -> list[int]:
    """Cumulative returned quantities per line after `request` (None: everything left)."""
    if request is None:
        left = [line.quantity - done for line, done in zip(lines, returned, strict=True)]
        if not any(left):
            raise KizunaError(
                ErrorCode.RETURN_EXCEEDS_PURCHASE,
                "the purchase has been returned already",
                status=409,
            )
        return [line.quantity for line in lines]
    if not request:
        raise KizunaError(ErrorCode.INVALID_RETURN, "a return needs at least one line")
    after = list(returned)
    for item in request:
        if not 0 <= item.line_no < len(lines) or item.quantity <= 0:
            raise KizunaError(
                ErrorCode.INVALID_RETURN,
                f"line {item.line_no}: no such line or quantity not positive",
                line_no=item.line_no,
            )
        after[item.line_no] += item.quantity
        if after[item.line_no] > lines[item.line_no].quantity:
            raise KizunaError(
                ErrorCode.RETURN_EXCEEDS_PURCHASE,
                f"line {item.line_no}: more returned than was bought",
                status=409,
                line_no=item.line_no,
            )
    return after


def refunded_amount(lines: Sequence[PurchaseLine], returned: Sequence[int]) -> int:
    """Yen refunded in total once `returned` units of each line have come back."""
    return sum(line.unit_amount_for(q) for line, q in zip(lines, returned, strict=True))


def kept_lines(lines: Sequence[PurchaseLine], returned: Sequence[int]) -> list[PurchaseLine]:
    """The lines the customer keeps, with their amounts reduced by what was refunded."""
    kept: list[PurchaseLine] = []
    for line, q in zip(lines, returned, strict=True):
        if q < line.quantity:
            kept.append(
                PurchaseLine(
                    sku=line.sku,
                    amount=line.amount - line.unit_amount_for(q),
                    quantity=line.quantity - q,
                    category=line.category,
                    brand=line.brand,
                )
            )
    return kept

"""Use cases of earning: what a purchase or an event earns, as a breakdown.

`earn_for_purchase` is the one function every path calls — quote, commit, partial return, offline
batch and simulation — so that they all agree. Campaigns and rank bonuses add rows here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from kizuna.partners.service import ProgramPolicies
from kizuna.rules.domain import BreakdownRow, PurchaseLine, base_earn


@dataclass(frozen=True)
class PurchaseFacts:
    """A purchase as the rules see it; `occurred_at` picks the rules in force."""

    member_id: int
    lines: Sequence[PurchaseLine]
    points_used: int
    occurred_at: datetime
    partner_id: int
    store_id: int
    channel: str
    # Set when re-evaluating a committed purchase (a return), so that its own use of caps and
    # budgets is not counted against it.
    purchase_id: int | None = None


def earn_for_purchase(
    session: Session,
    *,
    policies: ProgramPolicies,
    purchase: PurchaseFacts,
    reserve: bool,
) -> list[BreakdownRow]:
    """The breakdown a purchase earns. `reserve` consumes campaign budgets and caps (commit);
    quotes and simulations pass False and write nothing."""
    base = base_earn(purchase.lines, purchase.points_used * policies.point_value_yen, policies.earn)
    return [base] if base.points else []

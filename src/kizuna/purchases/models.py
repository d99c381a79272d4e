"""Tables of purchases (receipts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class Purchase(Base):
    """A receipt: what was bought, what it earned and redeemed, and what has been returned."""

    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    receipt_no: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    total_amount: Mapped[int]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    returned_quantities: Mapped[list[int]] = mapped_column(Json)
    refunded_amount: Mapped[int] = mapped_column(default=0)
    points_used: Mapped[int] = mapped_column(default=0)
    points_restored: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(24), default="completed")

    __table_args__ = (
        UniqueConstraint("store_id", "receipt_no"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= total_amount", name="refund_within_total"
        ),
        Index("ix_purchases_occurred", "occurred_at"),
    )

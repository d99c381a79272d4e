"""Tables of the ledger. The journal is append-only; lots carry the spendable state.

Every member-owned table carries `member_id` so that the ledger can be distributed by member.
The schema repeats the code's guards: remaining within 0..amount, positive lot amounts,
non-negative debt, and a lot's write-off (`expired_points`) only together with its `expire` entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class PointAccount(Base):
    """One row per member: the lock that serialises their writes, and their debt."""

    __tablename__ = "point_accounts"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    debt: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (CheckConstraint("debt >= 0", name="debt_not_negative"),)


class JournalEntry(Base):
    """An immutable change to a member's points.

    `amount` is the signed change of the member's balance; `debt_change` the change of their debt.
    A cancel names the entry it reverses and how many of its points it reverses
    (`reversed_points`), which may exceed the balance effect when part had already expired.
    """

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    entry_type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    debt_change: Mapped[int] = mapped_column(default=0)
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    reversed_points: Mapped[int] = mapped_column(default=0)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    channel: Mapped[str | None] = mapped_column(String(16))
    external_ref: Mapped[str | None] = mapped_column(String(100))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    actor: Mapped[str | None] = mapped_column(String(100))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(500))
    breakdown: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)

    __table_args__ = (
        Index("ix_journal_entries_member_recorded", "member_id", "recorded_at"),
        # Partial: most entries (every expire entry) reverse nothing and belong to no purchase,
        # and the expiry job writes them by the hundred thousand.
        Index(
            "ix_journal_entries_reverses",
            "reverses_entry_id",
            postgresql_where=text("reverses_entry_id IS NOT NULL"),
            sqlite_where=text("reverses_entry_id IS NOT NULL"),
        ),
        Index(
            "ix_journal_entries_purchase",
            "purchase_id",
            postgresql_where=text("purchase_id IS NOT NULL"),
            sqlite_where=text("purchase_id IS NOT NULL"),
        ),
        CheckConstraint("reversed_points >= 0", name="reversed_points_not_negative"),
    )


class Lot(Base):
    """Points earned together: how many are left, when they can be spent, when they expire.

    A lot expires once, so it records its own write-off: `expired_points` (what was left when it
    expired) and `expire_entry_id` (the member's `expire` entry of that expiry run). Expiry
    writes no allocations: remaining == amount − Σ allocations − expired_points.
    """

    __tablename__ = "lots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    expiry_rule: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    remaining: Mapped[int]
    earned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    available_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    funding_partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    source_entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    expired_points: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # No index: reconcile and reversals reach a lot through its member or its source entry, and
    # journal entries are never deleted, so nothing looks lots up by the entry that expired them.
    expire_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        CheckConstraint(
            "expired_points >= 0 AND remaining + expired_points <= amount",
            name="expired_within_amount",
        ),
        CheckConstraint(
            "(expired_points = 0) = (expire_entry_id IS NULL)", name="expired_with_entry"
        ),
        Index("ix_lots_member_open", "member_id", "remaining"),
        Index("ix_lots_source_entry", "source_entry_id"),
        Index(
            "ix_lots_due",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
    )


class Allocation(Base):
    """Points an entry took from a lot (positive) or gave back to it (negative)."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    points: Mapped[int]

    __table_args__ = (CheckConstraint("points <> 0", name="points_not_zero"),)


class AdjustmentRequest(Base):
    """A staff adjustment above the approval threshold, waiting for a second person."""

    __tablename__ = "adjustment_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    points: Mapped[int]
    reason_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))

    __table_args__ = (CheckConstraint("points <> 0", name="points_not_zero"),)

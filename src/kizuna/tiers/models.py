"""Tables of member ranks: the programme's tiers and policy, each member's rank and its history.

A member without a `member_ranks` row holds the programme's lowest tier. `rank_history` is
append-only: the rank in force at an instant is the last change strictly before it, so a receipt
that crosses a threshold earns at the rank it started with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class RankPolicy(Base):
    """How a programme ranks its members: the metric, its window, when it was last evaluated."""

    __tablename__ = "rank_policies"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16))
    window: Mapped[str] = mapped_column(String(16))
    fiscal_year_start_month: Mapped[int] = mapped_column(default=4)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        CheckConstraint(
            "fiscal_year_start_month BETWEEN 1 AND 12", name="fiscal_start_month_valid"
        ),
    )


class Tier(Base):
    """One rank: reached at `threshold` of the metric; `level` orders the tiers (0 = lowest)."""

    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int]
    threshold: Mapped[int]
    earn_multiplier_pct: Mapped[int] = mapped_column(default=100)
    birthday_points: Mapped[int] = mapped_column(default=0)
    benefits: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        UniqueConstraint("program_id", "level"),
        CheckConstraint("threshold >= 0", name="threshold_not_negative"),
        CheckConstraint("earn_multiplier_pct >= 100", name="multiplier_at_least_one"),
        CheckConstraint("birthday_points >= 0", name="birthday_points_not_negative"),
    )


class MemberRank(Base):
    """A member's current rank (absent: the lowest tier)."""

    __tablename__ = "member_ranks"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    # The member fixes the programme; no foreign key here, so that the yearly evaluation of a
    # million members pays one check per row (the tier) and not two.
    program_id: Mapped[int] = mapped_column(BigId, index=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    since: Mapped[datetime] = mapped_column(UtcDateTime)


class RankChange(Base):
    """A change of a member's rank: an upgrade at once, or the periodic evaluation."""

    __tablename__ = "rank_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    # Programme and previous tier are copies for reading (the member and the previous change
    # already fix them): unchecked, so that a bulk evaluation checks two keys per row, not four.
    program_id: Mapped[int] = mapped_column(BigId)
    from_tier_id: Mapped[int | None] = mapped_column(BigId)
    to_tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(16))
    metric_value: Mapped[int]

    __table_args__ = (Index("ix_rank_history_member_changed", "member_id", "changed_at"),)

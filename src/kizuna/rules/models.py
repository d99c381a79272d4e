"""Tables of campaigns: the campaign, its versions, and what its budget and caps have granted.

A campaign's rules live in versions. A draft is edited in place; once active, every edit closes
the version in force and opens a new one, so an earn or a return at `occurred_at` is evaluated with
the version whose [effective_from, effective_to) holds that instant. `budget_used` and
`campaign_member_usage` are the counters a reservation moves under a row lock; `campaign_grants`
records each reservation by purchase (or by event period), so that a return can recompute it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class Campaign(Base):
    """A campaign of a programme and the points it has granted against its total budget."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    budget_used: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        CheckConstraint("budget_used >= 0", name="budget_used_not_negative"),
    )


class CampaignVersion(Base):
    """One version of a campaign's rules; in force over [effective_from, effective_to)."""

    __tablename__ = "campaign_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    version: Mapped[int]
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    effective_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    effective_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        UniqueConstraint("campaign_id", "version"),
        Index("ix_campaign_versions_window", "starts_at", "ends_at"),
        CheckConstraint("starts_at < ends_at", name="window_not_empty"),
    )


class CampaignMemberUsage(Base):
    """Points a member has received from a campaign, against its per-member cap."""

    __tablename__ = "campaign_member_usage"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    points: Mapped[int] = mapped_column(default=0)

    __table_args__ = (CheckConstraint("points >= 0", name="points_not_negative"),)


class CampaignGrant(Base):
    """Points one purchase or event took from a campaign; a return recomputes and updates it."""

    __tablename__ = "campaign_grants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("campaign_versions.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"), index=True)
    # Once-per-period events (a visit per store per day, a login per day): the key of the period.
    period_key: Mapped[str | None] = mapped_column(String(80))
    points: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("campaign_id", "member_id", "period_key"),
        CheckConstraint("points >= 0", name="points_not_negative"),
    )

"""Table of recorded member events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class MemberEvent(Base):
    """Something a member did, where, when, and the earn entry it produced (if any)."""

    __tablename__ = "member_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    event_type: Mapped[str] = mapped_column(String(48))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    channel: Mapped[str | None] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(Json)
    actor: Mapped[str | None] = mapped_column(String(100))
    earn_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))

    __table_args__ = (
        Index("ix_member_events_member_occurred", "member_id", "occurred_at"),
        Index("ix_member_events_type_occurred", "event_type", "occurred_at"),
    )

"""Tables of the programme, its partners and their stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json


class Program(Base):
    """A points programme: its currency, time zone and policies (JSON, read by the domain)."""

    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Tokyo")
    point_value_yen: Mapped[int] = mapped_column(default=1)
    ledger_policy: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    earn_policy: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class Partner(Base):
    """A company in the programme; the operator is a partner too."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    is_operator: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (UniqueConstraint("program_id", "code"),)


class Store(Base):
    """A place of sale of a partner: a shop, the EC site, the app."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    prefecture: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (UniqueConstraint("partner_id", "code"),)

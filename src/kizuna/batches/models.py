"""Tables of offline batches and their rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime


class PurchaseBatch(Base):
    """An uploaded file of receipts: `received`, `processing`, then `completed` with its counts."""

    __tablename__ = "purchase_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    format: Mapped[str] = mapped_column(String(8))
    file_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="received")
    total_rows: Mapped[int]
    ok_rows: Mapped[int] = mapped_column(default=0)
    duplicate_rows: Mapped[int] = mapped_column(default=0)
    error_rows: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_purchase_batches_status", "status"),)


class PurchaseBatchRow(Base):
    """One receipt of a batch: `pending` until processed, then `ok`, `duplicate` or `error`.
    `chunk_no`: the chunk it is processed in (all of one member's rows share a chunk)."""

    __tablename__ = "purchase_batch_rows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("purchase_batches.id"))
    line_no: Mapped[int]
    chunk_no: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    raw: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("batch_id", "line_no"),
        Index("ix_purchase_batch_rows_batch_chunk", "batch_id", "chunk_no"),
        # Room on every page, and no index on `status`: recording results is a heap-only update.
        {"postgresql_with": {"fillfactor": 40}},
    )


class PurchaseBatchChunk(Base):
    """Rows of a batch processed together in one transaction: `pending`, then `done` in the same
    transaction as its rows' postings and results."""

    __tablename__ = "purchase_batch_chunks"

    batch_id: Mapped[int] = mapped_column(ForeignKey("purchase_batches.id"), primary_key=True)
    chunk_no: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    rows: Mapped[int]
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

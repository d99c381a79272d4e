"""Tables of webhook endpoints, their deliveries and the log of every attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kizuna.db.base import Base, BigId, Json, UtcDateTime
from kizuna.webhooks.secret_store import reveal


class WebhookEndpoint(Base):
    """A URL an API client wants events POSTed to; its secret signs them.

    The secret is stored sealed (`secret_enc`, key `key_version`; see `secret_store`); an endpoint
    from before encryption keeps it in clear in `secret_legacy` until `kizuna rotate-keys`.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret_enc: Mapped[str | None] = mapped_column(Text)
    secret_legacy: Mapped[str | None] = mapped_column(String(100))
    key_version: Mapped[int]
    event_types: Mapped[list[str]] = mapped_column(Json)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        CheckConstraint(
            "secret_enc IS NOT NULL OR secret_legacy IS NOT NULL", name="secret_stored"
        ),
    )

    @property
    def secret(self) -> str:
        """The signing secret in clear, decrypted on each access (the API shows it only at
        creation)."""
        return reveal(self.secret_enc, self.secret_legacy)


class WebhookFanout(Base):
    """An outbox event already turned into deliveries (so that it is fanned out once)."""

    __tablename__ = "webhook_fanouts"

    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"), primary_key=True)
    fanned_out_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    """One event for one endpoint: `pending` until delivered, `failed` after the last attempt.

    `next_attempt_at` is also the lease: a worker that claims a delivery pushes it forward, so the
    delivery comes due again only if that worker never reports back.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )


class WebhookAttempt(Base):
    """The log of one POST: when, the HTTP status or the error, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt_no: Mapped[int]
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int]

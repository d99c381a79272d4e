"""offline purchase batches and member events

Revision ID: 0412_batches_events
Revises: 0411_webhooks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kizuna.db.base

revision: str = "0412_batches_events"
down_revision: str | Sequence[str] | None = "0411_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purchase_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "partner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("ok_rows", sa.Integer(), nullable=False),
        sa.Column("duplicate_rows", sa.Integer(), nullable=False),
        sa.Column("error_rows", sa.Integer(), nullable=False),
        sa.Column("created_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_clients.id"],
            name=op.f("fk_purchase_batches_client_id_api_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_purchase_batches_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_batches")),
    )
    with op.batch_alter_table("purchase_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_batches_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index("ix_purchase_batches_status", ["status"], unique=False)

    op.create_table(
        "purchase_batch_rows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("processed_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["purchase_batches.id"],
            name=op.f("fk_purchase_batch_rows_batch_id_purchase_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_batch_rows")),
        sa.UniqueConstraint(
            "batch_id", "line_no", name=op.f("uq_purchase_batch_rows_batch_id_line_no")
        ),
    )
    with op.batch_alter_table("purchase_batch_rows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_batch_rows_batch_status", ["batch_id", "status"], unique=False
        )

    op.create_table(
        "member_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("occurred_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "partner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column(
            "earn_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["earn_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_member_events_earn_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_events_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_member_events_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_member_events_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_events")),
    )
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_member_events_member_occurred", ["member_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_member_events_type_occurred", ["event_type", "occurred_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("member_events", schema=None) as batch_op:
        batch_op.drop_index("ix_member_events_type_occurred")
        batch_op.drop_index("ix_member_events_member_occurred")

    op.drop_table("member_events")
    with op.batch_alter_table("purchase_batch_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_batch_rows_batch_status")

    op.drop_table("purchase_batch_rows")
    with op.batch_alter_table("purchase_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_batches_status")
        batch_op.drop_index(batch_op.f("ix_purchase_batches_client_id"))

    op.drop_table("purchase_batches")

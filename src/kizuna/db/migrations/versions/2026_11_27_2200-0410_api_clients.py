"""api clients and QR tokens

Revision ID: 0410_api_clients
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kizuna.db.base

revision: str = "0410_api_clients"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "partner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("key_prefix", sa.String(length=24), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("key_rotated_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_clients_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_api_clients_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("key_prefix", name=op.f("uq_api_clients_key_prefix")),
    )
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_clients_partner_id"), ["partner_id"], unique=False)

    op.create_table(
        "qr_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "issued_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("issued_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["issued_by"], ["api_clients.id"], name=op.f("fk_qr_tokens_issued_by_api_clients")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_qr_tokens_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_qr_tokens_token_hash")),
    )
    with op.batch_alter_table("qr_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_qr_tokens_member_id"), ["member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("qr_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qr_tokens_member_id"))

    op.drop_table("qr_tokens")

    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_clients_partner_id"))

    op.drop_table("api_clients")

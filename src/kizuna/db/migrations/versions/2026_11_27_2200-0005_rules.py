"""rules and tiers: campaigns with versions, budgets and grants; ranks and their history

Revision ID: 0005_rules
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kizuna.db.base

revision: str = "0005_rules"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("budget_used", sa.Integer(), nullable=False),
        sa.Column("created_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("budget_used >= 0", name=op.f("ck_campaigns_budget_used_not_negative")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_campaigns_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_campaigns_program_id_code")),
    )
    op.create_table(
        "rank_policies",
        sa.Column(
            "program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=16), nullable=False),
        sa.Column("fiscal_year_start_month", sa.Integer(), nullable=False),
        sa.Column("last_evaluated_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "fiscal_year_start_month BETWEEN 1 AND 12",
            name=op.f("ck_rank_policies_fiscal_start_month_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_rank_policies_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_rank_policies")),
    )
    op.create_table(
        "tiers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("earn_multiplier_pct", sa.Integer(), nullable=False),
        sa.Column("birthday_points", sa.Integer(), nullable=False),
        sa.Column(
            "benefits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "birthday_points >= 0", name=op.f("ck_tiers_birthday_points_not_negative")
        ),
        sa.CheckConstraint(
            "earn_multiplier_pct >= 100", name=op.f("ck_tiers_multiplier_at_least_one")
        ),
        sa.CheckConstraint("threshold >= 0", name=op.f("ck_tiers_threshold_not_negative")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_tiers_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_tiers_program_id_code")),
        sa.UniqueConstraint("program_id", "level", name=op.f("uq_tiers_program_id_level")),
    )
    op.create_table(
        "campaign_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("starts_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("effective_from", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("effective_to", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "starts_at < ends_at", name=op.f("ck_campaign_versions_window_not_empty")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_versions_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_versions")),
        sa.UniqueConstraint(
            "campaign_id", "version", name=op.f("uq_campaign_versions_campaign_id_version")
        ),
    )
    with op.batch_alter_table("campaign_versions", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_versions_window", ["starts_at", "ends_at"], unique=False)

    op.create_table(
        "campaign_member_usage",
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "points >= 0", name=op.f("ck_campaign_member_usage_points_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_member_usage_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_campaign_member_usage_member_id_members")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", name=op.f("pk_campaign_member_usage")),
    )
    op.create_table(
        "member_ranks",
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("tier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("since", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_ranks_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["tier_id"], ["tiers.id"], name=op.f("fk_member_ranks_tier_id_tiers")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_ranks")),
    )
    with op.batch_alter_table("member_ranks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_member_ranks_program_id"), ["program_id"], unique=False
        )

    op.create_table(
        "rank_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "from_tier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "to_tier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("changed_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("metric_value", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_rank_history_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["to_tier_id"], ["tiers.id"], name=op.f("fk_rank_history_to_tier_id_tiers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rank_history")),
    )
    with op.batch_alter_table("rank_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rank_history_member_changed", ["member_id", "changed_at"], unique=False
        )

    op.create_table(
        "campaign_grants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "purchase_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("period_key", sa.String(length=80), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("created_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points >= 0", name=op.f("ck_campaign_grants_points_not_negative")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_grants_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_campaign_grants_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_campaign_grants_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["campaign_versions.id"],
            name=op.f("fk_campaign_grants_version_id_campaign_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_grants")),
        sa.UniqueConstraint(
            "campaign_id",
            "member_id",
            "period_key",
            name=op.f("uq_campaign_grants_campaign_id_member_id_period_key"),
        ),
    )
    with op.batch_alter_table("campaign_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_grants_member_id"), ["member_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_campaign_grants_purchase_id"), ["purchase_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_grants_purchase_id"))
        batch_op.drop_index(batch_op.f("ix_campaign_grants_member_id"))

    op.drop_table("campaign_grants")
    with op.batch_alter_table("rank_history", schema=None) as batch_op:
        batch_op.drop_index("ix_rank_history_member_changed")

    op.drop_table("rank_history")
    with op.batch_alter_table("member_ranks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_ranks_program_id"))

    op.drop_table("member_ranks")
    op.drop_table("campaign_member_usage")
    with op.batch_alter_table("campaign_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_versions_window")

    op.drop_table("campaign_versions")
    op.drop_table("tiers")
    op.drop_table("rank_policies")
    op.drop_table("campaigns")

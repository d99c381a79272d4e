"""offline batches: rows grouped into member-disjoint chunks, a chunk processed as one transaction

An upload cuts its rows into chunks so that one member's rows are all in one chunk
(`purchase_batch_rows.chunk_no`); `purchase_batch_chunks` holds one row per chunk, which a worker
claims (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and marks done in the transaction that posts its
rows. Batches still open when this runs are cut by line number, a hundred rows per chunk, as they
were processed before.

Recording a row's result is an update of every row of a batch: without an index on `status` and
with room left on each page (fillfactor 40 on PostgreSQL) it is a heap-only update that touches
no index. Rows by status are read through (batch_id, line_no), in file order anyway.

Revision ID: 0413_batch_chunks
Revises: 0412_batches_events
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kizuna.db.base

revision: str = "0413_batch_chunks"
down_revision: str | Sequence[str] | None = "0412_batches_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "purchase_batch_chunks",
        sa.Column("batch_id", BIG, nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("processed_at", kizuna.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["purchase_batches.id"],
            name=op.f("fk_purchase_batch_chunks_batch_id_purchase_batches"),
        ),
        sa.PrimaryKeyConstraint("batch_id", "chunk_no", name=op.f("pk_purchase_batch_chunks")),
    )
    with op.batch_alter_table("purchase_batch_rows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chunk_no", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index(
            "ix_purchase_batch_rows_batch_chunk", ["batch_id", "chunk_no"], unique=False
        )
        batch_op.drop_index("ix_purchase_batch_rows_batch_status")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE purchase_batch_rows SET (fillfactor = 40)")
    op.execute(
        "UPDATE purchase_batch_rows SET chunk_no = (line_no - 1) / 100"
        " WHERE batch_id IN (SELECT id FROM purchase_batches WHERE status <> 'completed')"
    )
    op.execute(
        "INSERT INTO purchase_batch_chunks (batch_id, chunk_no, status, rows)"
        " SELECT r.batch_id, r.chunk_no,"
        " CASE WHEN count(*) FILTER (WHERE r.status = 'pending') > 0"
        " THEN 'pending' ELSE 'done' END, count(*)"
        " FROM purchase_batch_rows r JOIN purchase_batches b ON b.id = r.batch_id"
        " WHERE b.status <> 'completed' GROUP BY r.batch_id, r.chunk_no"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE purchase_batch_rows RESET (fillfactor)")
    with op.batch_alter_table("purchase_batch_rows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_batch_rows_batch_status", ["batch_id", "status"], unique=False
        )
        batch_op.drop_index("ix_purchase_batch_rows_batch_chunk")
        batch_op.drop_column("chunk_no")
    op.drop_table("purchase_batch_chunks")

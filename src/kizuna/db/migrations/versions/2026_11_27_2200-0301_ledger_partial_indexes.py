"""ledger: partial indexes on journal_entries.reverses_entry_id and purchase_id

Most entries reverse nothing and belong to no purchase (every expire entry), so the indexes only
hold the rows that have a value: the expiry job writes a million entries without touching them.

Revision ID: 0301_ledger_partial_indexes
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0301_ledger_partial_indexes"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_journal_entries_reverses", "reverses_entry_id"),
    ("ix_journal_entries_purchase", "purchase_id"),
)


def upgrade() -> None:
    for name, column in INDEXES:
        op.drop_index(name, table_name="journal_entries")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name,
            "journal_entries",
            [column],
            unique=False,
            postgresql_where=where,
            sqlite_where=where,
        )


def downgrade() -> None:
    for name, column in INDEXES:
        op.drop_index(name, table_name="journal_entries")
        op.create_index(name, "journal_entries", [column], unique=False)

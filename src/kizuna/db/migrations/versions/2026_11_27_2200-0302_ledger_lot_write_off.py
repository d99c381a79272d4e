"""ledger: a lot records its own write-off (expired_points, expire_entry_id)

A lot expires once, so instead of one `expire` entry and one allocation per lot, the expiry job
writes one `expire` entry per member and run and marks each lot: `expired_points` (what was left)
and `expire_entry_id`. Existing expiry allocations move onto their lots and are removed, so the
books read the same; `journal_entries.lot_id` (the one lot of an old expire entry) goes.

SQLite adds the columns with ALTER TABLE (their foreign key and checks written inline): a batch
copy of `lots` would have to drop a table that allocations point at, which fails once there are
rows. Downgrade turns the marks back into allocations.

Revision ID: 0302_ledger_lot_write_off
Revises: 0301_ledger_partial_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0302_ledger_lot_write_off"
down_revision: str | Sequence[str] | None = "0301_ledger_partial_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_lots_expire_entry_id_journal_entries"
CHECKS = {
    "ck_lots_expired_within_amount": "expired_points >= 0 AND remaining + expired_points <= amount",
    "ck_lots_expired_with_entry": "(expired_points = 0) = (expire_entry_id IS NULL)",
}
EXPIRY_ALLOCATIONS = (
    "SELECT a.{column} FROM allocations a JOIN journal_entries e ON e.id = a.entry_id"
    " WHERE a.lot_id = lots.id AND e.entry_type = 'expire'"
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(
            "ALTER TABLE lots ADD COLUMN expired_points INTEGER NOT NULL DEFAULT 0"
            f" CONSTRAINT ck_lots_expired_within_amount CHECK ({CHECKS['ck_lots_expired_within_amount']})"
        )
        op.execute(
            "ALTER TABLE lots ADD COLUMN expire_entry_id INTEGER"
            f" CONSTRAINT {FK} REFERENCES journal_entries (id)"
            f" CONSTRAINT ck_lots_expired_with_entry CHECK ({CHECKS['ck_lots_expired_with_entry']})"
        )
    else:
        op.add_column(
            "lots",
            sa.Column("expired_points", sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
        op.add_column("lots", sa.Column("expire_entry_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE lots SET"
        f" expired_points = ({EXPIRY_ALLOCATIONS.format(column='points')}),"
        f" expire_entry_id = ({EXPIRY_ALLOCATIONS.format(column='entry_id')})"
        f" WHERE EXISTS ({EXPIRY_ALLOCATIONS.format(column='id')})"
    )
    op.execute(
        "DELETE FROM allocations WHERE entry_id IN"
        " (SELECT id FROM journal_entries WHERE entry_type = 'expire')"
    )
    if not sqlite:
        op.create_foreign_key(op.f(FK), "lots", "journal_entries", ["expire_entry_id"], ["id"])
        for name, condition in CHECKS.items():
            op.create_check_constraint(op.f(name), "lots", condition)
    op.drop_column("journal_entries", "lot_id")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column(
        "journal_entries",
        sa.Column("lot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    )
    op.execute(
        "INSERT INTO allocations (entry_id, lot_id, member_id, points)"
        " SELECT expire_entry_id, id, member_id, expired_points FROM lots"
        " WHERE expire_entry_id IS NOT NULL ORDER BY id"
    )
    op.execute(
        "UPDATE journal_entries SET lot_id ="
        " (SELECT min(id) FROM lots WHERE lots.expire_entry_id = journal_entries.id)"
        " WHERE entry_type = 'expire'"
        " AND (SELECT count(*) FROM lots WHERE lots.expire_entry_id = journal_entries.id) = 1"
    )
    if not sqlite:
        for name in CHECKS:
            op.drop_constraint(op.f(name), "lots", type_="check")
        op.drop_constraint(op.f(FK), "lots", type_="foreignkey")
    # On SQLite the inline foreign key and checks go with their columns (entry first: its check
    # names expired_points).
    op.drop_column("lots", "expire_entry_id")
    op.drop_column("lots", "expired_points")

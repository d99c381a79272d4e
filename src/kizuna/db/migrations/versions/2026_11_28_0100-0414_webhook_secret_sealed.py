"""webhook signing secrets encrypted at rest: secret → secret_legacy, secret_enc, key_version

An endpoint's signing secret is stored sealed with the field-encryption keys (`secret_enc`, field
"webhook_secret"), tagged with its key version like member profiles, so `kizuna rotate-keys`
re-encrypts it.

Existing secrets are *not* encrypted here. A migration cannot know it runs with the keyring the
servers use: run from a deploy job without `KIZUNA_KEY_FILE`, the keyring falls back to a key
derived from `secret_key`, and every secret would be sealed with a key no worker holds — lost for
good, silently. So this migration only moves each clear secret to the nullable `secret_legacy`
with `key_version` 0 (older than any key): the sender signs with it as before, and
`kizuna rotate-keys` — which runs with the servers' keys by design — seals it and clears the
column (and counts it as pending until then). Upgrading needs no key and loses nothing; after
`upgrade` + `rotate-keys` no secret is left in clear. (The clear value may linger in free pages
of the SQLite file or in dead PostgreSQL tuples until VACUUM.)

Downgrading decrypts the sealed secrets back into the clear column with the configured keyring;
it stops, changing nothing, if a key is missing.

Revision ID: 0414_webhook_secret_sealed
Revises: 0413_batch_chunks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0414_webhook_secret_sealed"
down_revision: str | Sequence[str] | None = "0413_batch_chunks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELD = "webhook_secret"  # frozen here: the field name sealed values are bound to
CHECK = "ck_webhook_endpoints_secret_stored"


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column(
            "secret",
            new_column_name="secret_legacy",
            existing_type=sa.String(length=100),
            nullable=True,
        )
        batch_op.add_column(sa.Column("secret_enc", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("key_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint(
            op.f(CHECK), "secret_enc IS NOT NULL OR secret_legacy IS NOT NULL"
        )
    # Rows from now on always say their key version; the default only served existing rows.
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("key_version", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    endpoints = sa.table(
        "webhook_endpoints",
        sa.column("id", sa.Integer()),
        sa.column("secret_enc", sa.Text()),
        sa.column("secret_legacy", sa.String()),
    )
    bind = op.get_bind()
    sealed = bind.execute(
        sa.select(endpoints.c.id, endpoints.c.secret_enc).where(endpoints.c.secret_legacy.is_(None))
    ).all()
    if sealed:
        from kizuna.privacy import crypto  # only when there is something to decrypt

        for row in sealed:
            bind.execute(
                sa.update(endpoints)
                .where(endpoints.c.id == row.id)
                .values(secret_legacy=crypto.decrypt(row.secret_enc, field=FIELD))
            )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CHECK), type_="check")
        batch_op.drop_column("key_version")
        batch_op.drop_column("secret_enc")
        batch_op.alter_column(
            "secret_legacy",
            new_column_name="secret",
            existing_type=sa.String(length=100),
            nullable=False,
        )

"""Signing secrets under key rotation: the table `kizuna rotate-keys` re-encrypts, and the pass
that seals the clear secrets endpoints kept from before encryption (migration 0414).

`seal_legacy` runs before the generic re-encryption: it selects by `secret_legacy IS NOT NULL`,
not by key version, so a clear secret is sealed even if something stamped its row current
meanwhile, and the sender signs with the clear value until it is sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlalchemy import Table, func, select, update

from kizuna.db.database import Database
from kizuna.privacy.keys import Keyring
from kizuna.privacy.rotation import EncryptedTable
from kizuna.webhooks.models import WebhookEndpoint
from kizuna.webhooks.secret_store import SECRET_FIELD, seal

_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)  # declarative models map to a Table


def encrypted_tables() -> list[EncryptedTable]:
    """Every table of this area holding ciphertexts, for key rotation."""
    return [EncryptedTable(_ENDPOINTS, "id", "key_version", {"secret_enc": SECRET_FIELD})]


def legacy_count(database: Database) -> int:
    """How many endpoints still keep their secret in clear."""
    with database.read() as session:
        count = session.scalar(
            select(func.count())
            .select_from(_ENDPOINTS)
            .where(_ENDPOINTS.c.secret_legacy.is_not(None))
        )
    return int(count or 0)


def seal_legacy_batch(database: Database, ring: Keyring, batch_size: int) -> int:
    """Seal one batch of clear secrets with `ring.current` and clear them; returns how many."""
    table = _ENDPOINTS
    with database.write() as session:
        rows = session.execute(
            select(table.c.id, table.c.secret_legacy)
            .where(table.c.secret_legacy.is_not(None))
            .order_by(table.c.id)
            .limit(batch_size)
            .with_for_update()
        ).all()
        for row in rows:
            sealed, version = seal(row.secret_legacy, ring)
            session.execute(
                update(table)
                .where(table.c.id == row.id)
                .values(secret_enc=sealed, secret_legacy=None, key_version=version)
            )
    return len(rows)


def seal_legacy(
    database: Database,
    ring: Keyring,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Seal every clear secret left from before encryption; returns endpoints sealed."""
    done = 0
    while count := seal_legacy_batch(database, ring, batch_size):
        done += count
        if progress:
            progress(count)
    return done

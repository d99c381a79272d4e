"""Key rotation: re-encrypt every stored value with the current key, in batches, while serving.

Rotation is: add a key version to the keyring and make it current (every process loads it; new
writes use it at once), then run `kizuna rotate-keys`. Every reader holds all versions, so each
value stays readable before, during and after. Each batch is a short write transaction that
locks its rows (`FOR UPDATE` on PostgreSQL; the writer lock on SQLite), re-encrypts them and
stamps the row's `key_version`: a concurrent update either waits for the batch or has already
written the current version, which the batch then skips. Blind indexes use their own key and are
not touched (rotating that key means re-indexing; see docs/identity.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, Table, func, select, update

from kizuna.db.database import Database
from kizuna.privacy import crypto
from kizuna.privacy.keys import Keyring


@dataclass(frozen=True)
class EncryptedTable:
    """A table with encrypted columns: its key, its key-version column, column → field name."""

    table: Table
    key: str
    version: str
    fields: Mapping[str, str]

    def column(self, name: str) -> Column[object]:
        return self.table.c[name]


def pending(database: Database, tables: Sequence[EncryptedTable], ring: Keyring) -> int:
    """How many rows still hold values of an older key version."""
    total = 0
    with database.read() as session:
        for spec in tables:
            version = spec.column(spec.version)
            total += int(
                session.scalar(
                    select(func.count()).select_from(spec.table).where(version < ring.current)
                )
                or 0
            )
    return total


def rotate_batch(database: Database, spec: EncryptedTable, ring: Keyring, batch_size: int) -> int:
    """Re-encrypt one batch of `spec`'s rows of older versions; returns how many rows."""
    key, version = spec.column(spec.key), spec.column(spec.version)
    columns = [spec.column(name) for name in spec.fields]
    with database.write() as session:
        rows = session.execute(
            select(key, version, *columns)
            .where(version < ring.current)
            .order_by(key)
            .limit(batch_size)
            .with_for_update()
        ).all()
        for row in rows:
            values = {
                name: crypto.reencrypt(getattr(row, name), field=field, ring=ring)
                for name, field in spec.fields.items()
                if getattr(row, name) is not None
            }
            session.execute(
                update(spec.table)
                .where(key == getattr(row, spec.key), version == getattr(row, spec.version))
                .values(**values, **{spec.version: ring.current})
            )
    return len(rows)


def rotate(
    database: Database,
    tables: Sequence[EncryptedTable],
    ring: Keyring,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt every value of every table with `ring.current`; returns rows rewritten."""
    done = 0
    for spec in tables:
        while True:
            count = rotate_batch(database, spec, ring, batch_size)
            if count == 0:
                break
            done += count
            if progress:
                progress(count)
    return done

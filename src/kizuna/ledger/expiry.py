"""The expiry job: write off the points of lots whose time has passed.

A lot is expired from `expires_at` on whether or not this job has run (the balance never counts
it); the job makes the books say so. Each due lot gets one `expire` entry (amount −remaining,
dated at the lot's `expires_at`, naming the lot in `lot_id`) with its allocation, and its remaining
goes to 0. Members hear of it through one `points.expired` outbox event per member and batch.

On PostgreSQL a batch is one statement: a data-modifying CTE that claims due lots with
`FOR UPDATE SKIP LOCKED`, so several workers can run side by side without waiting for or
double-counting each other. SQLite has one writer at a time and takes a portable path.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from kizuna.db.database import Database, is_sqlite
from kizuna.ledger.domain import EntryType
from kizuna.ledger.models import Allocation, JournalEntry, Lot
from kizuna.outbox.service import publish

EVENT = "points.expired"
ACTOR = "system:expiry"
DEFAULT_BATCH = 20_000

# Rows are claimed in `expires_at` order through the partial index ix_lots_due; `floor` skips the
# index entries of lots this transaction already emptied (they stay in the index until vacuum).
_PG_BATCH = text(
    """
WITH due AS MATERIALIZED (
    SELECT ctid AS row_id, id, member_id, remaining, expires_at, funding_partner_id
    FROM lots
    WHERE remaining > 0 AND expires_at <= :as_of AND expires_at >= :floor
    ORDER BY expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
),
emptied AS (
    UPDATE lots SET remaining = 0 WHERE ctid IN (SELECT row_id FROM due)
),
entries AS (
    INSERT INTO journal_entries (
        member_id, entry_type, amount, debt_change, reversed_points,
        occurred_at, recorded_at, partner_id, actor, lot_id
    )
    SELECT member_id, :entry_type, -remaining, 0, 0,
           expires_at, :as_of, funding_partner_id, :actor, id
    FROM due
    RETURNING id, member_id, amount, lot_id
),
allocated AS (
    INSERT INTO allocations (entry_id, lot_id, member_id, points)
    SELECT id, lot_id, member_id, -amount FROM entries
),
events AS (
    INSERT INTO outbox_events (event_type, member_id, payload, created_at)
    SELECT :event, member_id,
           jsonb_build_object(
               'member_id', member_id, 'points', -sum(amount), 'lots', count(*),
               'as_of', CAST(:as_of_text AS text)
           ),
           :as_of
    FROM entries
    GROUP BY member_id
)
SELECT count(*) AS expired, max(expires_at) AS last_due FROM due
"""
)


def expire_due(session: Session, *, as_of: datetime, batch_size: int = DEFAULT_BATCH) -> int:
    """Expire every lot due at `as_of` in the caller's transaction; returns how many lots."""
    total = 0
    floor: datetime | None = None
    while True:
        expired, floor = _expire_batch(session, as_of=as_of, batch_size=batch_size, floor=floor)
        total += expired
        if expired < batch_size:
            return total


def expire_batch(session: Session, *, as_of: datetime, batch_size: int = DEFAULT_BATCH) -> int:
    """Expire at most `batch_size` due lots, soonest due first; returns how many."""
    return _expire_batch(session, as_of=as_of, batch_size=batch_size, floor=None)[0]


def expire_all(
    database: Database, *, as_of: datetime, batch_size: int = DEFAULT_BATCH, workers: int = 1
) -> int:
    """Expire every lot due at `as_of`, committing each batch; returns how many lots.

    On PostgreSQL `workers` threads claim batches side by side (SKIP LOCKED keeps them apart);
    SQLite has a single writer, so it runs one.
    """

    def work() -> int:
        done = 0
        while True:
            with database.write() as session:
                expired = expire_batch(session, as_of=as_of, batch_size=batch_size)
            done += expired
            if expired < batch_size:
                return done

    if workers <= 1 or database.dialect == "sqlite":
        return work()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(lambda _: work(), range(workers)))


def _expire_batch(
    session: Session, *, as_of: datetime, batch_size: int, floor: datetime | None
) -> tuple[int, datetime | None]:
    if is_sqlite(session):
        return _expire_batch_portable(session, as_of=as_of, batch_size=batch_size), None
    # Lots skipped because another transaction held them are not lost: the next run (or the
    # other worker) takes them; `floor` only moves over lots this call has emptied itself.
    row = session.execute(
        _PG_BATCH,
        {
            "as_of": as_of,
            "as_of_text": as_of.isoformat(),
            "floor": floor or datetime.min.replace(tzinfo=as_of.tzinfo),
            "batch": batch_size,
            "entry_type": str(EntryType.EXPIRE),
            "actor": ACTOR,
            "event": EVENT,
        },
    ).one()
    return int(row.expired), row.last_due or floor


def _expire_batch_portable(session: Session, *, as_of: datetime, batch_size: int) -> int:
    due = session.execute(
        select(Lot.id, Lot.member_id, Lot.remaining, Lot.expires_at, Lot.funding_partner_id)
        .where(Lot.remaining > 0, Lot.expires_at <= as_of)
        .order_by(Lot.expires_at, Lot.id)
        .limit(batch_size)
    ).all()
    if not due:
        return 0
    entry_ids = session.scalars(
        insert(JournalEntry).returning(JournalEntry.id, sort_by_parameter_order=True),
        [
            {
                "member_id": lot.member_id,
                "entry_type": str(EntryType.EXPIRE),
                "amount": -lot.remaining,
                "debt_change": 0,
                "reversed_points": 0,
                "occurred_at": lot.expires_at,
                "recorded_at": as_of,
                "partner_id": lot.funding_partner_id,
                "actor": ACTOR,
                "lot_id": lot.id,
            }
            for lot in due
        ],
    ).all()
    session.execute(
        insert(Allocation),
        [
            {
                "entry_id": entry_id,
                "lot_id": lot.id,
                "member_id": lot.member_id,
                "points": lot.remaining,
            }
            for entry_id, lot in zip(entry_ids, due, strict=True)
        ],
    )
    lots = cast(Table, Lot.__table__)
    session.execute(
        update(lots).where(lots.c.id == bindparam("lot")).values(remaining=0),
        [{"lot": lot.id} for lot in due],
    )
    by_member: dict[int, list[int]] = defaultdict(list)
    for lot in due:
        by_member[lot.member_id].append(lot.remaining)
    for member_id, points in by_member.items():
        publish(
            session,
            event_type=EVENT,
            payload={
                "member_id": member_id,
                "points": sum(points),
                "lots": len(points),
                "as_of": as_of.isoformat(),
            },
            as_of=as_of,
            member_id=member_id,
        )
    return len(due)

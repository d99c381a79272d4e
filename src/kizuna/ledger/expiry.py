"""The expiry job: write off the points of lots whose time has passed.

A lot is expired from `expires_at` on whether or not this job has run (the balance never counts
it); the job makes the books say so. A lot expires once, so it records its own write-off: each
due lot gets `expired_points = remaining, remaining = 0` and the id of its member's `expire`
entry. A batch writes one `expire` entry per member (amount −Σ of their lots' points, dated as
`domain.write_offs` explains), no allocations, and one `points.expired` outbox event per member.

On PostgreSQL a batch is one statement: a data-modifying CTE that claims due lots with
`FOR UPDATE SKIP LOCKED`, so several workers can run side by side without waiting for or
double-counting each other. SQLite has one writer at a time and takes a portable path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from kizuna.db.database import Database, is_sqlite
from kizuna.ledger.domain import DueLot, EntryType, write_offs
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.outbox.service import publish

EVENT = "points.expired"
ACTOR = "system:expiry"
DEFAULT_BATCH = 20_000
# The job is CPU-bound in the database server: one worker per core (up to four) shares the due
# lots out with SKIP LOCKED and writes them off in about 1/cores of the time.
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
# The scheduled job writes off lots due a little before now, not up to now. Redemptions do not
# lock lots: a redeem that read a lot as available an instant before its expiry could otherwise
# meet the job's `remaining = 0` and fail the `remaining >= 0` check (a 500) instead of
# succeeding. Trailing the clock costs nothing: reads filter by time, so a lot past
# `expires_at` is never counted or spent, written off or not.
JOB_LAG = timedelta(minutes=2)

# Rows are claimed in `expires_at` order through the partial index ix_lots_due; `floor` skips the
# index entries of lots this transaction already emptied (they stay in the index until vacuum).
# The update finds its rows by `ctid = ANY (array)`, a TID scan: joined to `due` on ctid the
# planner would hash a sequential scan of the whole table for every batch.
# `members` is domain.write_offs in SQL: per member the sum, the latest expiry, the shared partner.
_PG_BATCH = text(
    """
WITH due AS MATERIALIZED (
    SELECT ctid AS row_id, member_id, remaining, expires_at, funding_partner_id
    FROM lots
    WHERE remaining > 0 AND expires_at <= :as_of AND expires_at >= :floor
    ORDER BY expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
),
members AS MATERIALIZED (
    SELECT member_id, sum(remaining) AS points, count(*) AS lots,
           max(expires_at) AS occurred_at,
           CASE WHEN count(funding_partner_id) = count(*)
                 AND min(funding_partner_id) = max(funding_partner_id)
                THEN min(funding_partner_id) END AS partner_id
    FROM due
    GROUP BY member_id
),
entries AS (
    INSERT INTO journal_entries (
        member_id, entry_type, amount, debt_change, reversed_points,
        occurred_at, recorded_at, partner_id, actor
    )
    SELECT member_id, :entry_type, -points, 0, 0, occurred_at, :as_of, partner_id, :actor
    FROM members
    ORDER BY member_id
    RETURNING id, member_id
),
emptied AS (
    UPDATE lots
    SET expired_points = lots.remaining, remaining = 0, expire_entry_id = entries.id
    FROM entries
    WHERE lots.ctid = ANY (ARRAY(SELECT row_id FROM due)) AND entries.member_id = lots.member_id
),
events AS (
    INSERT INTO outbox_events (event_type, member_id, payload, created_at)
    SELECT :event, members.member_id,
           jsonb_build_object(
               'member_id', members.member_id, 'points', members.points, 'lots', members.lots,
               'entry_id', entries.id, 'as_of', CAST(:as_of_text AS text)
           ),
           :as_of
    FROM members JOIN entries ON entries.member_id = members.member_id
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


def expire_all(
    database: Database,
    *,
    as_of: datetime,
    batch_size: int = DEFAULT_BATCH,
    workers: int = DEFAULT_WORKERS,
) -> int:
    """Expire every lot due at `as_of`, committing each batch; returns how many lots.

    Committing per batch keeps each write transaction short (on SQLite it holds the one writer
    lock). On PostgreSQL `workers` threads claim batches side by side (SKIP LOCKED keeps them
    apart); SQLite has a single writer, so it runs one.
    """

    def work() -> int:
        done = 0
        floor: datetime | None = None
        while True:
            with database.write() as session:
                expired, floor = _expire_batch(
                    session, as_of=as_of, batch_size=batch_size, floor=floor
                )
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
    due = [
        DueLot(row.id, row.member_id, row.remaining, row.expires_at, row.funding_partner_id)
        for row in session.execute(
            select(Lot.id, Lot.member_id, Lot.remaining, Lot.expires_at, Lot.funding_partner_id)
            .where(Lot.remaining > 0, Lot.expires_at <= as_of)
            .order_by(Lot.expires_at, Lot.id)
            .limit(batch_size)
        )
    ]
    if not due:
        return 0
    offs = write_offs(due)
    entry_ids = session.scalars(
        insert(JournalEntry).returning(JournalEntry.id, sort_by_parameter_order=True),
        [
            {
                "member_id": off.member_id,
                "entry_type": str(EntryType.EXPIRE),
                "amount": -off.points,
                "debt_change": 0,
                "reversed_points": 0,
                "occurred_at": off.occurred_at,
                "recorded_at": as_of,
                "partner_id": off.partner_id,
                "actor": ACTOR,
            }
            for off in offs
        ],
    ).all()
    lots = cast(Table, Lot.__table__)
    # executemany, not one IN list: no bound-variable limit whatever the batch size.
    session.execute(
        update(lots)
        .where(lots.c.id == bindparam("lot"))
        .values(expired_points=lots.c.remaining, remaining=0, expire_entry_id=bindparam("entry")),
        [
            {"lot": lot_id, "entry": entry_id}
            for entry_id, off in zip(entry_ids, offs, strict=True)
            for lot_id in off.lot_ids
        ],
    )
    for entry_id, off in zip(entry_ids, offs, strict=True):
        publish(
            session,
            event_type=EVENT,
            payload={
                "member_id": off.member_id,
                "points": off.points,
                "lots": len(off.lot_ids),
                "entry_id": entry_id,
                "as_of": as_of.isoformat(),
            },
            as_of=as_of,
            member_id=off.member_id,
        )
    return len(due)

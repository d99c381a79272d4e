"""Use cases of offline batches: upload (rows stored as they came), process a chunk of rows, read.

A chunk is one transaction: each row runs under the idempotency key `batch:<store>:<receipt>` of
the uploading client, so its purchase, its key and its row result commit together. A chunk reads
the keys of all its rows in one statement and writes the new ones in one (a receipt recorded twice
is refused by the purchase's own unique key, which waits for a concurrent insert). Rows are taken
with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers can share one large batch; the last
one to find no pending row completes the batch (once) and publishes `batch.completed`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kizuna.batches.domain import BatchFormat, BatchRow, parse_row, split_rows
from kizuna.batches.errors import ErrorCode
from kizuna.batches.models import PurchaseBatch, PurchaseBatchRow
from kizuna.clients import access
from kizuna.clients.domain import ClientIdentity
from kizuna.clients.models import ApiClient
from kizuna.clients.service import identity_of
from kizuna.core.errors import KizunaError, NotFound, Unprocessable
from kizuna.db.idempotency import ErrorCode as IdempotencyError
from kizuna.db.idempotency import IdempotencyKey, request_hash
from kizuna.ledger.models import PointAccount
from kizuna.members import service as members
from kizuna.members.models import Member
from kizuna.outbox.service import publish
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest

CHUNK = 100  # rows per transaction: the member locks of a chunk are held until it commits
log = logging.getLogger("kizuna.batches")


def create_batch(
    session: Session, *, client: ClientIdentity, content: bytes, fmt: BatchFormat, as_of: datetime
) -> PurchaseBatch:
    """Store an uploaded file's rows as pending; processing happens later, a chunk at a time."""
    rows = split_rows(content, fmt)
    batch = PurchaseBatch(
        client_id=client.id,
        partner_id=client.partner_id,
        format=str(fmt),
        file_sha256=hashlib.sha256(content).hexdigest(),
        status="received",
        total_rows=len(rows),
        ok_rows=0,
        duplicate_rows=0,
        error_rows=0,
        created_at=as_of,
    )
    session.add(batch)
    session.flush()
    session.execute(
        insert(PurchaseBatchRow),
        [
            {"batch_id": batch.id, "line_no": number, "raw": raw, "status": "pending"}
            for number, raw in enumerate(rows, start=1)
        ],
    )
    return batch


def get_batch(session: Session, *, batch_id: int, partner_id: int) -> PurchaseBatch:
    """A batch uploaded by a client of `partner_id`, or `batch_not_found`."""
    batch = session.get(PurchaseBatch, batch_id)
    if batch is None or batch.partner_id != partner_id:
        raise NotFound(ErrorCode.BATCH_NOT_FOUND, f"batch {batch_id} not found")
    return batch


def rows_of(
    session: Session, *, batch_id: int, status: str | None, after_line: int, limit: int
) -> list[PurchaseBatchRow]:
    """Rows of a batch in file order, after line `after_line`."""
    query = (
        select(PurchaseBatchRow)
        .where(PurchaseBatchRow.batch_id == batch_id, PurchaseBatchRow.line_no > after_line)
        .order_by(PurchaseBatchRow.line_no)
        .limit(limit)
    )
    if status is not None:
        query = query.where(PurchaseBatchRow.status == status)
    return list(session.scalars(query))


def open_batches(session: Session, *, limit: int = 10) -> list[int]:
    """Ids of batches not yet completed, oldest first."""
    return list(
        session.scalars(
            select(PurchaseBatch.id)
            .where(PurchaseBatch.status != "completed")
            .order_by(PurchaseBatch.id)
            .limit(limit)
        )
    )


def _commit_row(
    session: Session, identity: ClientIdentity, row: BatchRow, as_of: datetime
) -> tuple[int, dict[str, Any]]:
    if row.member_id is not None:
        member_id = row.member_id
    else:
        assert row.identifier is not None
        kind, value = row.identifier
        member_id = members.find_by_identifier(session, kind=kind, value=value).id
    access.member(session, identity, member_id)
    access.store(session, identity, row.store_id)
    result = purchases.commit_purchase(
        session,
        request=PurchaseRequest(
            member_id=member_id,
            store_id=row.store_id,
            receipt_no=row.receipt_no,
            occurred_at=row.occurred_at,
            lines=row.lines,
            channel="pos",
            offline=True,
        ),
        as_of=as_of,
        actor=identity.actor,
    )
    return 201, {
        "purchase_id": result.purchase_id,
        "member_id": result.member_id,
        "earned": result.earned,
    }


def _parse(raw: str) -> BatchRow | KizunaError:
    try:
        return parse_row(raw)
    except KizunaError as malformed:
        return malformed


@dataclass
class _Keys:
    """The chunk's idempotency keys: those stored before it, and the outcomes it adds."""

    client: str
    seen: dict[str, tuple[str, int, dict[str, Any]]]
    new: list[dict[str, Any]]


def _key_of(row: BatchRow) -> str:
    return f"batch:{row.store_id}:{row.receipt_no}"


def _load_keys(
    session: Session, identity: ClientIdentity, rows: list[BatchRow | KizunaError], as_of: datetime
) -> _Keys:
    client = str(identity.id)
    keys = [_key_of(row) for row in rows if isinstance(row, BatchRow)]
    found = session.execute(
        select(
            IdempotencyKey.id,
            IdempotencyKey.key,
            IdempotencyKey.request_hash,
            IdempotencyKey.response_status,
            IdempotencyKey.response_body,
            IdempotencyKey.expires_at,
        ).where(IdempotencyKey.client == client, IdempotencyKey.key.in_(keys))
    ).all()
    expired = [key.id for key in found if key.expires_at <= as_of]
    if expired:  # past retention: forgotten, as `run_idempotent` does
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired)))
    seen = {
        key.key: (key.request_hash, key.response_status, key.response_body)
        for key in found
        if key.expires_at > as_of
    }
    return _Keys(client, seen, [])


def _store_keys(session: Session, keys: _Keys) -> None:
    """Insert the chunk's new keys; one stored meanwhile by a concurrent chunk is kept (its
    receipt, recorded there, was refused here as a duplicate receipt)."""
    if not keys.new:
        return
    make = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        make(IdempotencyKey).on_conflict_do_nothing(index_elements=["client", "key"]), keys.new
    )


def _process_row(
    session: Session,
    identity: ClientIdentity,
    row: BatchRow | KizunaError,
    keys: _Keys,
    as_of: datetime,
    keep_days: int,
) -> tuple[str, dict[str, Any]]:
    """One row under its idempotency key: replayed if seen with the same content, refused if seen
    with other content, else committed (or refused) inside its own savepoint and its key kept."""
    if isinstance(row, KizunaError):
        return "error", row.to_dict()
    key = _key_of(row)
    digest = request_hash(row.canonical())
    if key in keys.seen:
        stored_hash, status, body = keys.seen[key]
        if stored_hash != digest:
            return "error", Unprocessable(
                IdempotencyError.IDEMPOTENCY_CONFLICT,
                "this Idempotency-Key was used for a different request",
            ).to_dict()
        return ("error" if status >= 400 else "duplicate"), body
    try:
        with session.begin_nested():
            status, body = _commit_row(session, identity, row, as_of)
    except KizunaError as refused:
        status, body = refused.status, refused.to_dict()
    except SQLAlchemyError as failed:  # rolled back to the row's savepoint; the key is not stored
        log.exception("batch row failed", extra={"error": type(failed).__name__})
        return "error", {"code": "row_failed", "message": "the row could not be processed"}
    keys.seen[key] = (digest, status, body)
    keys.new.append(
        {
            "client": keys.client,
            "key": key,
            "request_hash": digest,
            "response_status": status,
            "response_body": body,
            "created_at": as_of,
            "expires_at": as_of + timedelta(days=keep_days),
        }
    )
    return ("error" if status >= 400 else "ok"), body


def process_batch(session_factory: Any, *, batch_id: int, as_of: datetime, keep_days: int) -> int:
    """Process a whole batch, a chunk per transaction of `session_factory()`; returns rows done."""
    total = 0
    while True:
        with session_factory() as session:
            done = process_chunk(session, batch_id=batch_id, as_of=as_of, keep_days=keep_days)
        total += done
        if done == 0:
            return total


def process_chunk(
    session: Session, *, batch_id: int, as_of: datetime, keep_days: int, limit: int = CHUNK
) -> int:
    """Process up to `limit` pending rows of a batch; returns how many. Completes the batch when
    nothing is left."""
    batch = session.get(PurchaseBatch, batch_id)
    if batch is None or batch.status == "completed":
        return 0
    rows = session.execute(
        select(PurchaseBatchRow.id, PurchaseBatchRow.raw)
        .where(PurchaseBatchRow.batch_id == batch_id, PurchaseBatchRow.status == "pending")
        .order_by(PurchaseBatchRow.line_no)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        _complete(session, batch_id, as_of)
        return 0
    client = session.get(ApiClient, batch.client_id)
    assert client is not None
    identity = identity_of(session, client)
    parsed = [_parse(row.raw) for row in rows]
    _lock_members_in_order(session, parsed)
    keys = _load_keys(session, identity, parsed, as_of)
    results = []
    counts = {"ok": 0, "duplicate": 0, "error": 0}
    for row, data in zip(rows, parsed, strict=True):
        status, body = _process_row(session, identity, data, keys, as_of, keep_days)
        counts[status] += 1
        results.append({"id": row.id, "status": status, "result": body, "processed_at": as_of})
    _store_keys(session, keys)
    session.execute(update(PurchaseBatchRow), results)
    session.execute(
        update(PurchaseBatch)
        .where(PurchaseBatch.id == batch_id)
        .values(
            status="processing",
            ok_rows=PurchaseBatch.ok_rows + counts["ok"],
            duplicate_rows=PurchaseBatch.duplicate_rows + counts["duplicate"],
            error_rows=PurchaseBatch.error_rows + counts["error"],
        )
    )
    if len(rows) < limit:
        _complete(session, batch_id, as_of)
    return len(rows)


def _lock_members_in_order(session: Session, rows: list[BatchRow | KizunaError]) -> None:
    """Take the chunk's member locks up front, in member id order: two workers sharing a batch
    (or a worker and the API) then queue for a member instead of deadlocking on each other."""
    member_ids = {
        row.member_id for row in rows if isinstance(row, BatchRow) and row.member_id is not None
    }
    if member_ids:
        # The members come along into the session, so the rows' access checks read no more.
        session.execute(
            select(Member)
            .join(PointAccount, PointAccount.member_id == Member.id)
            .where(Member.id.in_(sorted(member_ids)))
            .order_by(Member.id)
            .with_for_update(of=PointAccount)
        ).all()


def _complete(session: Session, batch_id: int, as_of: datetime) -> None:
    pending = session.scalar(
        select(func.count())
        .select_from(PurchaseBatchRow)
        .where(PurchaseBatchRow.batch_id == batch_id, PurchaseBatchRow.status == "pending")
    )
    if pending:
        return
    done = session.execute(
        update(PurchaseBatch)
        .where(PurchaseBatch.id == batch_id, PurchaseBatch.status != "completed")
        .values(status="completed", completed_at=as_of)
        .returning(
            PurchaseBatch.partner_id,
            PurchaseBatch.total_rows,
            PurchaseBatch.ok_rows,
            PurchaseBatch.duplicate_rows,
            PurchaseBatch.error_rows,
        )
    ).one_or_none()
    if done is None:
        return
    publish(
        session,
        event_type="batch.completed",
        payload={
            "batch_id": batch_id,
            "total_rows": done.total_rows,
            "ok_rows": done.ok_rows,
            "duplicate_rows": done.duplicate_rows,
            "error_rows": done.error_rows,
        },
        as_of=as_of,
        partner_id=done.partner_id,
    )

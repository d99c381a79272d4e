"""Use cases of offline batches: upload (rows stored as they came), process a chunk, read.

An upload cuts the rows into chunks so that all rows of one member share a chunk
(`domain.plan_chunks`). A chunk is one transaction: its rows' purchases, their idempotency keys
(`batch:<store>:<receipt>` of the uploading client), the rows' results and the chunk's own `done`
mark commit together, so a crash leaves the chunk pending and its rows unposted, and a re-upload
finds the keys and posts nothing twice. Within a chunk, the rows that only earn for members in good
standing are posted as a set (`purchases.bulk`); every other row goes through the one-by-one
service in its own savepoint, so a refused row is its own error and stops nothing. Chunks are
claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share one batch without
waiting for each other's members; the last one to find no chunk left completes the batch (once)
and publishes `batch.completed`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ARRAY, Table, Text, delete, func, select, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kizuna.batches.domain import (
    CHUNK_ROWS,
    BatchFormat,
    BatchRow,
    member_key,
    parse_row,
    plan_chunks,
    split_rows,
)
from kizuna.batches.errors import ErrorCode
from kizuna.batches.models import PurchaseBatch, PurchaseBatchChunk, PurchaseBatchRow
from kizuna.clients import access
from kizuna.clients.domain import ClientIdentity
from kizuna.clients.models import ApiClient
from kizuna.clients.service import identity_of
from kizuna.core.errors import KizunaError, NotFound, Unprocessable
from kizuna.db.bulk import write_rows
from kizuna.db.idempotency import ErrorCode as IdempotencyError
from kizuna.db.idempotency import IdempotencyKey
from kizuna.members import service as members
from kizuna.outbox.service import publish
from kizuna.partners.models import Store
from kizuna.purchases import bulk
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest

log = logging.getLogger("kizuna.batches")


def create_batch(
    session: Session,
    *,
    client: ClientIdentity,
    content: bytes,
    fmt: BatchFormat,
    as_of: datetime,
    chunk_rows: int = CHUNK_ROWS,
) -> PurchaseBatch:
    """Store an uploaded file's rows as pending, cut into chunks of about `chunk_rows` rows;
    processing happens later, a chunk at a time."""
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
    chunks = plan_chunks([member_key(raw) for raw in rows], chunk_rows)
    write_rows(
        session,
        cast(Table, PurchaseBatchRow.__table__),
        ("batch_id", "line_no", "chunk_no", "raw", "status"),
        [
            (batch.id, number, chunk, raw, "pending")
            for number, (raw, chunk) in enumerate(zip(rows, chunks, strict=True), start=1)
        ],
    )
    sizes: dict[int, int] = {}
    for chunk in chunks:
        sizes[chunk] = sizes.get(chunk, 0) + 1
    write_rows(
        session,
        cast(Table, PurchaseBatchChunk.__table__),
        ("batch_id", "chunk_no", "status", "rows"),
        [(batch.id, chunk, "pending", size) for chunk, size in sorted(sizes.items())],
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
    """One row through the one-by-one service: the path of every row the set cannot post."""
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
    return 201, _body(result.purchase_id, result.member_id, result.earned)


def _body(purchase_id: int, member_id: int, earned: int) -> dict[str, Any]:
    return {"purchase_id": purchase_id, "member_id": member_id, "earned": earned}


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
    as_of: datetime
    keep_days: int

    def replay(self, row: BatchRow, digest: str) -> tuple[str, dict[str, Any]] | None:
        """The outcome of a row whose key was seen: replayed with the same content, refused with
        other content; None for a key not seen."""
        if (found := self.seen.get(_key_of(row))) is None:
            return None
        stored_hash, status, body = found
        if stored_hash != digest:
            return "error", Unprocessable(
                IdempotencyError.IDEMPOTENCY_CONFLICT,
                "this Idempotency-Key was used for a different request",
            ).to_dict()
        return ("error" if status >= 400 else "duplicate"), body

    def keep(
        self, row: BatchRow, digest: str, status: int, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Remember a row's outcome under its key; returns the row's status and result."""
        key = _key_of(row)
        self.seen[key] = (digest, status, body)
        self.new.append(
            {
                "client": self.client,
                "key": key,
                "request_hash": digest,
                "response_status": status,
                "response_body": body,
                "created_at": self.as_of,
                "expires_at": self.as_of + timedelta(days=self.keep_days),
            }
        )
        return ("error" if status >= 400 else "ok"), body


def _key_of(row: BatchRow) -> str:
    return f"batch:{row.store_id}:{row.receipt_no}"


def _load_keys(
    session: Session,
    identity: ClientIdentity,
    rows: Sequence[BatchRow | KizunaError],
    as_of: datetime,
    keep_days: int,
) -> _Keys:
    client = str(identity.id)
    keys = [_key_of(row) for row in rows if isinstance(row, BatchRow)]
    query = select(
        IdempotencyKey.id,
        IdempotencyKey.key,
        IdempotencyKey.request_hash,
        IdempotencyKey.response_status,
        IdempotencyKey.response_body,
        IdempotencyKey.expires_at,
    ).where(IdempotencyKey.client == client)
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter: a thousand bound values cost more to plan than to look up.
        query = query.where(IdempotencyKey.key == func.any(cast_(keys, ARRAY(Text))))
    else:
        query = query.where(IdempotencyKey.key.in_(keys))
    found = session.execute(query).all()
    expired = [key.id for key in found if key.expires_at <= as_of]
    if expired:  # past retention: forgotten, as `run_idempotent` does
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired)))
    seen = {
        key.key: (key.request_hash, key.response_status, key.response_body)
        for key in found
        if key.expires_at > as_of
    }
    return _Keys(client, seen, [], as_of, keep_days)


def _encoded(body: dict[str, Any], cache: dict[int, str]) -> str:
    """A row's result as JSON, encoded once for both its key and its row."""
    found = cache.get(id(body))
    if found is None:
        found = cache[id(body)] = json.dumps(body)
    return found


def _store_keys(session: Session, keys: _Keys, encoded: dict[int, str]) -> None:
    """Insert the chunk's new keys; one stored meanwhile by a concurrent chunk is kept (its
    receipt, recorded there, was refused here as a duplicate receipt)."""
    if not keys.new:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One statement over arrays (sent in binary: as text they cost ten times more to encode);
        # an executemany of a thousand rows costs ten times more again.
        connection.exec_driver_sql(
            "INSERT INTO idempotency_keys (client, key, request_hash, response_status,"
            " response_body, created_at, expires_at)"
            " SELECT %s, k.key, k.hash, k.status, k.body::jsonb, %s, %s"
            " FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[])"
            " AS k(key, hash, status, body)"
            " ON CONFLICT (client, key) DO NOTHING",
            (
                keys.client,
                keys.as_of,
                keys.as_of + timedelta(days=keys.keep_days),
                [new["key"] for new in keys.new],
                [new["request_hash"] for new in keys.new],
                [new["response_status"] for new in keys.new],
                [_encoded(new["response_body"], encoded) for new in keys.new],
            ),
        )
        return
    session.execute(
        sqlite.insert(IdempotencyKey).on_conflict_do_nothing(index_elements=["client", "key"]),
        keys.new,
    )


def _process_row(
    session: Session,
    identity: ClientIdentity,
    row: BatchRow | KizunaError,
    keys: _Keys,
    as_of: datetime,
) -> tuple[str, dict[str, Any]]:
    """One row under its idempotency key: replayed if seen, else committed (or refused) inside
    its own savepoint and its key kept."""
    if isinstance(row, KizunaError):
        return "error", row.to_dict()
    digest = row.digest()
    if (replayed := keys.replay(row, digest)) is not None:
        return replayed
    try:
        with session.begin_nested():
            status, body = _commit_row(session, identity, row, as_of)
    except KizunaError as refused:
        status, body = refused.status, refused.to_dict()
    except SQLAlchemyError as failed:  # rolled back to the row's savepoint; the key is not stored
        log.exception("batch row failed", extra={"error": type(failed).__name__})
        return "error", {"code": "row_failed", "message": "the row could not be processed"}
    return keys.keep(row, digest, status, body)


def process_batch(
    session_factory: Any,
    *,
    batch_id: int,
    as_of: datetime,
    keep_days: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Process a whole batch, a chunk per transaction of `session_factory()`; returns rows done.
    `progress` is told the rows of each chunk once it has committed."""
    total = 0
    while True:
        with session_factory() as session:
            done = process_chunk(session, batch_id=batch_id, as_of=as_of, keep_days=keep_days)
        if done is None:
            return total
        total += done
        if progress is not None:
            progress(done)


def process_chunk(
    session: Session, *, batch_id: int, as_of: datetime, keep_days: int
) -> int | None:
    """Process the next pending chunk of a batch; returns its rows, or None when no chunk is left
    to take (then the batch is completed if every chunk is done)."""
    batch = session.get(PurchaseBatch, batch_id)
    if batch is None or batch.status == "completed":
        return None
    chunk_no = session.scalar(
        select(PurchaseBatchChunk.chunk_no)
        .where(PurchaseBatchChunk.batch_id == batch_id, PurchaseBatchChunk.status == "pending")
        .order_by(PurchaseBatchChunk.chunk_no)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if chunk_no is None:
        _complete(session, batch_id, as_of)
        return None
    rows = session.execute(
        select(PurchaseBatchRow.id, PurchaseBatchRow.raw)
        .where(
            PurchaseBatchRow.batch_id == batch_id,
            PurchaseBatchRow.chunk_no == chunk_no,
            PurchaseBatchRow.status == "pending",
        )
        .order_by(PurchaseBatchRow.line_no)
    ).all()
    client = session.get(ApiClient, batch.client_id)
    assert client is not None
    identity = identity_of(session, client)
    encoded: dict[int, str] = {}
    with _no_cycle_collection():
        outcomes = _post_rows(
            session,
            identity,
            [_parse(row.raw) for row in rows],
            as_of=as_of,
            keep_days=keep_days,
            encoded=encoded,
        )
    counts = {"ok": 0, "duplicate": 0, "error": 0}
    for status, _ in outcomes:
        counts[status] += 1
    _store_results(session, [row.id for row in rows], outcomes, as_of, encoded)
    session.execute(
        update(PurchaseBatchChunk)
        .where(PurchaseBatchChunk.batch_id == batch_id, PurchaseBatchChunk.chunk_no == chunk_no)
        .values(status="done", processed_at=as_of)
    )
    # Last: every chunk moves these counters, so the batch's row stays locked only until commit.
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
    return len(rows)


_collection = {"paused": 0, "was_on": True}
_collection_lock = threading.Lock()


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a chunk is posted. A chunk makes ~100,000 short-lived
    containers, freed by reference counting; the collections they set off scan the worker's whole
    heap each time and cost a sixth of a chunk's CPU. Counted, since a worker's threads post
    chunks side by side: collection resumes when the last of them is done."""
    with _collection_lock:
        _collection["paused"] += 1
        if _collection["paused"] == 1:
            _collection["was_on"] = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _collection_lock:
            _collection["paused"] -= 1
            if _collection["paused"] == 0 and _collection["was_on"]:
                gc.enable()


def _post_rows(
    session: Session,
    identity: ClientIdentity,
    rows: Sequence[BatchRow | KizunaError],
    *,
    as_of: datetime,
    keep_days: int,
    encoded: dict[int, str],
) -> list[tuple[str, dict[str, Any]]]:
    """The outcome of each row, in file order. Rows the set can post go to `bulk.post_offline`
    (in file order); the others — and any it leaves — go one by one through `_process_row`, after
    it; a receipt repeated within the chunk is replayed last from its first occurrence."""
    keys = _load_keys(session, identity, rows, as_of, keep_days)
    outcomes: list[tuple[str, dict[str, Any]] | None] = [None] * len(rows)
    digests: dict[int, str] = {}
    first: set[str] = set()
    later: list[int] = []
    for number, row in enumerate(rows):
        if isinstance(row, KizunaError):
            outcomes[number] = "error", row.to_dict()
            continue
        digests[number] = digest = row.digest()
        if (replayed := keys.replay(row, digest)) is not None:
            outcomes[number] = replayed
        elif _key_of(row) in first:
            later.append(number)
        else:
            first.add(_key_of(row))
    fresh = [n for n, outcome in enumerate(outcomes) if outcome is None and n not in later]
    member_of = _members_of(session, identity, [cast(BatchRow, rows[n]) for n in fresh])
    locked = bulk.lock_members(session, sorted({m for m in member_of if m is not None}))
    stores = _stores_allowed(session, identity, {cast(BatchRow, rows[n]).store_id for n in fresh})
    receipts: list[tuple[int, bulk.OfflineReceipt]] = []
    for n, member_id in zip(fresh, member_of, strict=True):
        row = cast(BatchRow, rows[n])
        member = locked.get(member_id) if member_id is not None else None
        if member is None or member.program_id != identity.program_id:
            continue
        if row.store_id in stores:
            receipts.append(
                (
                    n,
                    bulk.OfflineReceipt(
                        member.id, row.store_id, row.receipt_no, row.occurred_at, row.lines
                    ),
                )
            )
    posted = bulk.post_offline(
        session, [r for _, r in receipts], locked=locked, as_of=as_of, actor=identity.actor
    )
    for (n, _), done in zip(receipts, posted, strict=True):
        if done is not None:
            row = cast(BatchRow, rows[n])
            outcomes[n] = keys.keep(
                row, digests[n], 201, _body(done.purchase_id, done.member_id, done.earned)
            )
    for n in [n for n in fresh if outcomes[n] is None] + later:
        outcomes[n] = _process_row(session, identity, rows[n], keys, as_of)
    _store_keys(session, keys, encoded)
    return [outcome for outcome in outcomes if outcome is not None]


def _members_of(
    session: Session, identity: ClientIdentity, rows: Sequence[BatchRow]
) -> list[int | None]:
    """The member each row names; None where an identifier names nobody (the row then fails
    one by one with the service's own error)."""
    found: list[int | None] = []
    for row in rows:
        if row.member_id is not None:
            found.append(row.member_id)
            continue
        assert row.identifier is not None
        kind, value = row.identifier
        try:
            found.append(members.find_by_identifier(session, kind=kind, value=value).id)
        except KizunaError:
            found.append(None)
    return found


def _stores_allowed(session: Session, identity: ClientIdentity, store_ids: set[int]) -> set[int]:
    """The stores among `store_ids` where the client may act (`access.store`, for many)."""
    found = session.execute(
        select(Store.id, Store.partner_id).where(Store.id.in_(sorted(store_ids)))
    )
    return {
        store_id
        for store_id, partner_id in found
        if (
            partner_id == identity.partner_id
            if identity.store_id is None
            else store_id == identity.store_id
        )
    }


def _store_results(
    session: Session,
    row_ids: Sequence[int],
    outcomes: Sequence[tuple[str, dict[str, Any]]],
    as_of: datetime,
    encoded: dict[int, str],
) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One statement over arrays, as `_store_keys`.
        connection.exec_driver_sql(
            "UPDATE purchase_batch_rows AS r SET status = u.status, result = u.result::jsonb,"
            " processed_at = %s"
            " FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS u(id, status, result)"
            " WHERE r.id = u.id",
            (
                as_of,
                list(row_ids),
                [status for status, _ in outcomes],
                [_encoded(body, encoded) for _, body in outcomes],
            ),
        )
        return
    session.execute(
        update(PurchaseBatchRow),
        [
            {"id": row_id, "status": status, "result": body, "processed_at": as_of}
            for row_id, (status, body) in zip(row_ids, outcomes, strict=True)
        ],
    )


def _complete(session: Session, batch_id: int, as_of: datetime) -> None:
    pending = session.scalar(
        select(func.count())
        .select_from(PurchaseBatchChunk)
        .where(PurchaseBatchChunk.batch_id == batch_id, PurchaseBatchChunk.status == "pending")
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

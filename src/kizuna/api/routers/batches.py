"""`/v1/batches`: an offline till uploads the day's receipts (NDJSON or CSV) and polls the result.

The upload answers `202` with the batch id at once; rows are processed in the background (here, and
by any `kizuna worker`), each exactly once, each with its own result or error. Uploading is the
till's (`batches:write`); the status and rows can also be read through a staff session with
`clients:read` (partner managers: their partner's batches only).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from kizuna.api.deps import (
    BatchesReader,
    BatchesWriter,
    DatabaseDep,
    IdempotencyKey,
    ReadSessionDep,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES, PROBLEM_CONTENT, Problem, problem_response
from kizuna.api.schemas import Id
from kizuna.batches import service as batches
from kizuna.batches.domain import BatchFormat
from kizuna.batches.models import PurchaseBatch
from kizuna.core.clock import utcnow
from kizuna.security import access

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=ERROR_RESPONSES)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
FORMATS = {
    "application/x-ndjson": BatchFormat.NDJSON,
    "application/jsonl": BatchFormat.NDJSON,
    "text/csv": BatchFormat.CSV,
}


class BatchRead(BaseModel):
    id: int
    status: str
    format: str
    total_rows: int
    ok_rows: int
    duplicate_rows: int
    error_rows: int
    created_at: datetime
    completed_at: datetime | None


class BatchRowRead(BaseModel):
    line_no: int
    status: str
    result: dict[str, Any] | None


def _read(batch: PurchaseBatch) -> BatchRead:
    return BatchRead(
        id=batch.id,
        status=batch.status,
        format=batch.format,
        total_rows=batch.total_rows,
        ok_rows=batch.ok_rows,
        duplicate_rows=batch.duplicate_rows,
        error_rows=batch.error_rows,
        created_at=batch.created_at,
        completed_at=batch.completed_at,
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "string"}} for media in ("application/x-ndjson", "text/csv")
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=BatchRead,
    openapi_extra=_UPLOAD_BODY,
    responses={
        status: {"model": Problem, "description": _title, "content": PROBLEM_CONTENT}
        for status, _title in ((413, "Payload Too Large"), (415, "Unsupported Media Type"))
    },
)
async def upload_batch(
    request: Request,
    client: BatchesWriter,
    key: IdempotencyKey,
    database: DatabaseDep,
    background: BackgroundTasks,
) -> JSONResponse:
    """Upload a file of receipts; the answer names the batch to poll."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = FORMATS.get(media)
    if fmt is None:
        return problem_response(
            415,
            "unsupported_format",
            "send the file as application/x-ndjson or text/csv",
        )
    declared = request.headers.get("content-length", "")
    # Refuse an oversized file before reading it when its length is declared, else after.
    too_large = declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES
    content = b"" if too_large else await request.body()
    if too_large or len(content) > MAX_UPLOAD_BYTES:
        return problem_response(413, "batch_too_large", "the file is larger than 64 MiB")

    def store() -> JSONResponse:
        with database.write() as session:

            def action() -> tuple[int, BatchRead]:
                batch = batches.create_batch(
                    session, client=client, content=content, fmt=fmt, as_of=utcnow()
                )
                return 202, _read(batch)

            return idempotent(
                session,
                request=request,
                client=client,
                key=key,
                body={"sha256": _digest(content), "format": str(fmt)},
                action=action,
            )

    response = await run_in_threadpool(store)
    if response.status_code == 202 and "Idempotent-Replayed" not in response.headers:
        batch_id = int(json.loads(bytes(response.body))["id"])
        background.add_task(
            batches.process_batch,
            database.write,
            batch_id=batch_id,
            as_of=utcnow(),
            keep_days=request.app.state.settings.idempotency_days,
        )
        response.background = background
    return response


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@router.get("/{batch_id}", response_model=BatchRead)
def get_batch(batch_id: Id, caller: BatchesReader, session: ReadSessionDep) -> BatchRead:
    """The batch's status and counts."""
    partner_id = access.batch_partner(session, caller, batch_id)
    return _read(batches.get_batch(session, batch_id=batch_id, partner_id=partner_id))


@router.get("/{batch_id}/rows", response_model=list[BatchRowRead])
def get_rows(
    batch_id: Id,
    caller: BatchesReader,
    session: ReadSessionDep,
    status: Literal["pending", "ok", "duplicate", "error"] | None = None,
    after_line: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BatchRowRead]:
    """Each row's result or error, in file order (page with `after_line`)."""
    partner_id = access.batch_partner(session, caller, batch_id)
    batch = batches.get_batch(session, batch_id=batch_id, partner_id=partner_id)
    rows = batches.rows_of(
        session, batch_id=batch.id, status=status, after_line=after_line, limit=limit
    )
    return [BatchRowRead(line_no=r.line_no, status=r.status, result=r.result) for r in rows]

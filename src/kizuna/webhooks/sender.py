"""The delivering side of webhooks: fan out, claim, POST, settle — one round per call.

Each step is its own short transaction; the HTTP request happens outside any transaction, so a slow
receiver never holds a lock. Fan-out scans above a watermark that trails a minute behind, because on
PostgreSQL an outbox row with a lower id can commit after one with a higher id.
"""

from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial

import httpx
from sqlalchemy import func, select

from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.outbox.models import OutboxEvent
from kizuna.webhooks import service
from kizuna.webhooks.domain import signature_header

WATERMARK_LAG_SECONDS = 60.0
FAN_OUT_BATCH = 500


class Sender:
    """Delivers webhooks for one worker process; keeps only a fan-out watermark in memory."""

    def __init__(
        self,
        database: Database,
        *,
        lease: timedelta = timedelta(seconds=30),
        batch: int = 20,
        concurrency: int = 8,
    ) -> None:
        self.database = database
        self.lease = lease
        self.batch = batch
        self.http = httpx.Client(timeout=min(lease.total_seconds() / 2, 10.0))
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")
        self._watermark = 0
        self._frontiers: deque[tuple[float, int]] = deque()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()

    def run_once(self, as_of: datetime) -> int:
        """Fan out new events and send what is due; returns how much work was done."""
        fanned = self._fan_out(as_of)
        with self.database.write() as session:
            claims = service.claim_due(session, as_of=as_of, lease=self.lease, limit=self.batch)
        list(self.pool.map(partial(self._send, as_of=as_of), claims))
        return fanned + len(claims)

    def _fan_out(self, as_of: datetime) -> int:
        """Fan out every event not yet fanned out, a transaction per 500 of them."""
        total = 0
        while True:
            with self.database.write() as session:
                newest = session.scalar(select(func.max(OutboxEvent.id))) or 0
                fanned = service.fan_out(
                    session, as_of=as_of, after_id=self._watermark, limit=FAN_OUT_BATCH
                )
            total += len(fanned)
            if len(fanned) < FAN_OUT_BATCH:
                break
        # Every event up to `newest` was visible and is fanned out now; one still invisible
        # (committing late) is below it only for a moment, so after the lag the scan can skip it.
        now = time.monotonic()
        self._frontiers.append((now, newest))
        while self._frontiers and now - self._frontiers[0][0] >= WATERMARK_LAG_SECONDS:
            self._watermark = max(self._watermark, self._frontiers.popleft()[1])
        return total

    def _send(self, claim: service.Claim, *, as_of: datetime) -> None:
        body = json.dumps(service.event_envelope(claim), separators=(",", ":")).encode()
        timestamp = int(time.time())
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            # Decrypted here, per claim, and dropped with the headers: AES-GCM on a short field
            # costs microseconds and needs no database round trip.
            signed = signature_header(claim.signing_secret(), timestamp, body)
        except KizunaError as unreadable:
            # A key missing from this worker's keyring: log it as a failed attempt (retried with
            # back-off, so deploying the key file fixes it) rather than lose the whole round.
            # The message names the field and key version, never the value.
            error = f"signing secret unreadable: {unreadable.code}"
        else:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Kizuna-Webhooks/1",
                "Kizuna-Event-Id": str(claim.event_id),
                "Kizuna-Event-Type": claim.event_type,
                "Kizuna-Delivery-Id": str(claim.delivery_id),
                "Kizuna-Signature": signed,
            }
            try:
                response = self.http.post(claim.url, content=body, headers=headers)
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except httpx.HTTPError as failed:
                error = f"{type(failed).__name__}: {failed}"
        duration_ms = int((time.perf_counter() - started) * 1000)
        with self.database.write() as session:
            service.settle(
                session,
                claim=claim,
                as_of=as_of + timedelta(milliseconds=duration_ms),
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )

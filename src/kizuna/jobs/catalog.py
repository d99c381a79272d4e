"""The jobs of every area. Add yours here: a function of `JobContext` returning work done."""

from __future__ import annotations

from datetime import timedelta

from kizuna.batches.service import open_batches, process_batch
from kizuna.db.idempotency import prune_expired
from kizuna.jobs.registry import JobContext, job
from kizuna.ledger.expiry import expire_due
from kizuna.webhooks.sender import Sender


@job("webhooks.deliver", every_seconds=1.0)
def deliver_webhooks(context: JobContext) -> int:
    """Fan new outbox events out to endpoints and send due deliveries."""
    sender = context.state.get("sender")
    if sender is None:
        lease = timedelta(seconds=float(context.options.get("lease_seconds", 30)))
        sender = context.state["sender"] = Sender(context.database, lease=lease)
    done: int = sender.run_once(context.as_of)
    return done


@job("idempotency.prune", every_seconds=3600.0)
def prune_idempotency_keys(context: JobContext) -> int:
    """Forget idempotency keys past their retention."""
    with context.database.write() as session:
        return prune_expired(session, as_of=context.as_of)


@job("batches.process", every_seconds=2.0)
def process_batches(context: JobContext) -> int:
    """Process pending rows of uploaded offline batches, a chunk per transaction."""
    with context.database.read() as session:
        batch_ids = open_batches(session)
    return sum(
        process_batch(
            context.database.write,
            batch_id=batch_id,
            as_of=context.as_of,
            keep_days=context.settings.idempotency_days,
        )
        for batch_id in batch_ids
    )


@job("ledger.expire", every_seconds=60.0)
def expire_points(context: JobContext) -> int:
    """Write the `expire` entries of lots past their expiry."""
    with context.database.write() as session:
        return expire_due(session, as_of=context.as_of)

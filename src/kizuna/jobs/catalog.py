"""The jobs of every area. Add yours here: a function of `JobContext` returning work done."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import select

from kizuna.batches.service import open_batches, process_batch
from kizuna.db.idempotency import prune_expired
from kizuna.jobs.registry import JobContext, job
from kizuna.ledger.expiry import JOB_LAG, expire_all
from kizuna.partners.models import Program
from kizuna.partners.service import policies
from kizuna.rules.birthdays import birthdays_today, grant_birthday
from kizuna.tiers.evaluation import evaluate_due
from kizuna.webhooks.sender import Sender

BATCH_THREADS = 1  # chunks are CPU work now: more workers, not more threads


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
    """Process pending rows of uploaded offline batches, a chunk per transaction.

    Chunks are taken with SKIP LOCKED, so several workers share a batch. A chunk posted as a set is
    Python work more than waiting: threads of one process would queue for the interpreter and
    cost more CPU per row (measured in docs/performance.md), so run a worker per core instead.
    """
    with context.database.read() as session:
        batch_ids = open_batches(session)
    if not batch_ids:
        return 0
    threads = 1 if context.database.dialect == "sqlite" else BATCH_THREADS

    def work(batch_id: int) -> int:
        return process_batch(
            context.database.write,
            batch_id=batch_id,
            as_of=context.as_of,
            keep_days=context.settings.idempotency_days,
        )

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batch") as pool:
        return sum(pool.map(work, [b for b in batch_ids for _ in range(threads)]))


@job("ledger.expire", every_seconds=60.0)
def expire_points(context: JobContext) -> int:
    """Write off lots past their expiry, a committed batch at a time (see `JOB_LAG` for why the
    job trails the clock)."""
    return expire_all(context.database, as_of=context.as_of - JOB_LAG)


@job("ranks.evaluate", every_seconds=3600.0)
def evaluate_ranks(context: JobContext) -> int:
    """Re-rank the members of every programme whose evaluation date has come (set-based SQL)."""
    with context.database.write() as session:
        return evaluate_due(session, as_of=context.as_of)


@job("rules.birthdays", every_seconds=3600.0)
def birthday_points(context: JobContext) -> int:
    """Post today's birthday points; safe to repeat (once per member per year)."""
    done = 0
    with context.database.read() as session:
        programs = [policies(session, pid) for pid in session.scalars(select(Program.id)).all()]
        due = [
            (program, birthdays_today(session, policies=program, as_of=context.as_of))
            for program in programs
        ]
    for program, member_ids in due:
        for member_id in member_ids:
            with context.database.write() as session:
                done += grant_birthday(
                    session, policies=program, member_id=member_id, as_of=context.as_of
                )
    return done

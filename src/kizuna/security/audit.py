"""The audit log: who did what to which thing, and who looked at whose personal data.

Every area calls `record` inside the transaction of the action it records, so an action and its
entry commit or vanish together. Entries form a hash chain (see `domain.audit_hash`); appenders
lock the single `audit_head` row first, which serialises them on PostgreSQL (on SQLite the
writer lock already does) and anchors the end of the chain. `verify` walks the chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kizuna.security.domain import AuditFacts, ChainProblem, audit_hash, verify_chain
from kizuna.security.models import AuditEntry, AuditHead

_HEAD_ID = 1
_VERIFY_BATCH = 5000


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    as_of: datetime,
) -> AuditEntry:
    """Append one entry to the audit log (no personal data in `details`: ids and codes only)."""
    head = session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == _HEAD_ID).with_for_update()
    ).one()
    facts = AuditFacts(
        seq=head.seq + 1,
        at=as_of,
        actor=actor,
        action=action,
        target=target,
        details=dict(details or {}),
        prev_hash=head.hash,
    )
    digest = audit_hash(facts)
    entry = AuditEntry(
        seq=facts.seq,
        at=facts.at,
        actor=facts.actor,
        action=facts.action,
        target=facts.target,
        details=facts.details,
        prev_hash=facts.prev_hash,
        hash=digest,
    )
    session.add(entry)
    session.execute(
        update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=facts.seq, hash=digest)
    )
    session.flush()
    return entry


_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.target,
    AuditEntry.details,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


def _chain(session: Session) -> Iterator[tuple[AuditFacts, str]]:
    """The chain in seq order, in batches of Core rows (nothing piles up in the session)."""
    last = 0
    while True:
        batch = session.execute(
            select(*_COLUMNS)
            .where(AuditEntry.seq > last)
            .order_by(AuditEntry.seq)
            .limit(_VERIFY_BATCH)
        ).all()
        if not batch:
            return
        for row in batch:
            facts = AuditFacts(
                seq=row.seq,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=row.details,
                prev_hash=row.prev_hash,
            )
            yield facts, row.hash
        last = batch[-1].seq


@dataclass(frozen=True)
class Verification:
    """The outcome of walking the chain."""

    entries: int
    problems: list[ChainProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> Verification:
    """Recompute every hash and link of the audit chain; any altered or deleted entry shows."""
    head = session.execute(
        select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == _HEAD_ID)
    ).one()
    count = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    problems = verify_chain(_chain(session), head_seq=head.seq, head_hash=head.hash)
    return Verification(count, problems)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def entries(
    session: Session, *, filters: AuditFilter, before_seq: int | None = None, limit: int = 50
) -> list[AuditEntry]:
    """The newest entries matching `filters`, older than `before_seq` (cursor), newest first."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if filters.actor:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.action:
        query = query.where(AuditEntry.action.startswith(filters.action, autoescape=True))
    if filters.target:
        query = query.where(AuditEntry.target.startswith(filters.target, autoescape=True))
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    return list(session.scalars(query))

"""Small builders for ledger tests: a programme with a given ledger policy, earns and reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.ledger import service as ledger
from kizuna.ledger.domain import ExpiryPolicy, ExpiryRule, LedgerPolicy, LotKind
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.rules.domain import BreakdownRow
from tests import factories as f


@dataclass(frozen=True)
class Shop:
    """A programme with one partner and store, and the ledger policy it runs."""

    program_id: int
    partner_id: int
    store_id: int
    policy: LedgerPolicy


def policy(
    standard: ExpiryPolicy | None = None,
    limited: ExpiryPolicy | None = None,
    *,
    grace_days: int = 30,
    approval_threshold: int = 1_000,
) -> LedgerPolicy:
    return LedgerPolicy(
        expiry={
            LotKind.STANDARD: standard or ExpiryPolicy(ExpiryRule.FIXED, days=30),
            LotKind.LIMITED: limited or ExpiryPolicy(ExpiryRule.FIXED, days=10),
        },
        restore_grace_days=grace_days,
        approval_threshold=approval_threshold,
    )


def shop(session: Session, ledger_policy: LedgerPolicy | None = None) -> Shop:
    chosen = ledger_policy or policy()
    program = f.program(session, ledger=chosen)
    partner = f.partner(session, program)
    store = f.store(session, partner)
    return Shop(program.id, partner.id, store.id, chosen)


def member(session: Session, where: Shop) -> int:
    from kizuna.partners.models import Program

    program = session.get(Program, where.program_id)
    assert program is not None
    return f.member(session, program).id


def earn(
    session: Session,
    where: Shop,
    member_id: int,
    points: int,
    at: datetime,
    *,
    limited_until: datetime | None = None,
    available_at: datetime | None = None,
) -> ledger.Posted:
    row = (
        BreakdownRow("campaign", "期間限定", points, kind="limited", expires_at=limited_until)
        if limited_until
        else BreakdownRow("base", "通常ポイント", points)
    )
    posted = ledger.earn(
        session,
        member_id=member_id,
        rows=[row],
        policy=where.policy,
        occurred_at=at,
        as_of=at,
        available_at=available_at,
        context=ledger.Context(partner_id=where.partner_id, store_id=where.store_id),
    )
    assert posted is not None
    return posted


def redeem(
    session: Session, where: Shop, member_id: int, points: int, at: datetime
) -> ledger.Posted:
    return ledger.redeem(
        session,
        member_id=member_id,
        points=points,
        policy=where.policy,
        occurred_at=at,
        as_of=at,
        context=ledger.Context(partner_id=where.partner_id, store_id=where.store_id),
    )


def available(session: Session, where: Shop, member_id: int, at: datetime) -> int:
    return ledger.balance(session, member_id=member_id, policy=where.policy, as_of=at).available


def lots_of(session: Session, member_id: int) -> list[Lot]:
    # populate_existing: the services write with Core, so objects already loaded may be stale.
    stmt = select(Lot).where(Lot.member_id == member_id).order_by(Lot.id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def entries_of(
    session: Session, member_id: int, entry_type: str | None = None
) -> list[JournalEntry]:
    stmt = select(JournalEntry).where(JournalEntry.member_id == member_id)
    if entry_type:
        stmt = stmt.where(JournalEntry.entry_type == entry_type)
    stmt = stmt.order_by(JournalEntry.id).execution_options(populate_existing=True)
    return list(session.scalars(stmt))

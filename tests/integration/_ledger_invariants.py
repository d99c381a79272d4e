"""The ledger's invariants for a set of members, checked straight from the tables (test helper)."""

from collections import defaultdict

from sqlalchemy import func, select

from kizuna.ledger.models import Allocation, JournalEntry, Lot, PointAccount


def ledger_problems(session, member_ids):
    """Every broken invariant among `member_ids`, as readable strings (empty: all hold)."""
    problems = []
    ids = list(member_ids)
    created = defaultdict(int)
    for entry_id, amount in session.execute(
        select(Lot.source_entry_id, func.sum(Lot.amount))
        .where(Lot.member_id.in_(ids))
        .group_by(Lot.source_entry_id)
    ):
        created[entry_id] = int(amount)
    allocated = defaultdict(int)
    for entry_id, points in session.execute(
        select(Allocation.entry_id, func.sum(Allocation.points))
        .where(Allocation.member_id.in_(ids))
        .group_by(Allocation.entry_id)
    ):
        allocated[entry_id] = int(points)
    journal = defaultdict(int)
    debts = defaultdict(int)
    for entry in session.scalars(select(JournalEntry).where(JournalEntry.member_id.in_(ids))):
        journal[entry.member_id] += entry.amount
        debts[entry.member_id] += entry.debt_change
        if created[entry.id] - allocated[entry.id] != entry.amount + entry.debt_change:
            problems.append(f"entry {entry.id} ({entry.entry_type}) does not balance")
    for member_id in ids:
        remaining = session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(Lot.member_id == member_id)
        )
        debt = session.scalar(select(PointAccount.debt).where(PointAccount.member_id == member_id))
        if debt != debts[member_id]:
            problems.append(f"member {member_id}: debt {debt} != journal {debts[member_id]}")
        if remaining - debt != journal[member_id]:
            problems.append(
                f"member {member_id}: lots−debt {remaining - debt} != {journal[member_id]}"
            )
    bad_lots = session.scalar(
        select(func.count()).where(
            Lot.member_id.in_(ids), (Lot.remaining < 0) | (Lot.remaining > Lot.amount)
        )
    )
    if bad_lots:
        problems.append(f"{bad_lots} lots out of range")
    return problems

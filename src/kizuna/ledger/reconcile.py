"""Reconciliation: prove that the books balance, member by member.

The ledger keeps the same facts twice — the journal (what happened) and the lots (what is left) —
so each can be checked against the other. Every invariant of SPEC §4 is one set-based query that
returns only the rows breaking it, so `check` runs over millions of entries in a few scans:
balance = Σ journal amount = Σ lot remaining − debt; debt = Σ debt_change ≥ 0; every lot within
0..amount and equal to amount − Σ allocations; every entry balanced (lots created − points
allocated = amount + debt_change); redemptions allocated in full from positive takes; every cancel
aimed at an entry of the same member and never reversing more than it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from kizuna.ledger.domain import EntryType
from kizuna.ledger.models import Allocation, JournalEntry, Lot, PointAccount

SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


class Invariant(StrEnum):
    BALANCE = "balance_matches_journal"
    DEBT = "debt_matches_journal"
    DEBT_NEGATIVE = "debt_not_negative"
    LOT_RANGE = "lot_remaining_within_amount"
    LOT_ALLOCATIONS = "lot_remaining_matches_allocations"
    ENTRY_BALANCED = "entry_balanced"
    REDEEM_ALLOCATIONS = "redeem_allocations_add_up"
    CANCEL_TARGET = "cancel_refers_to_own_entry"
    CANCEL_WITHIN = "cancel_within_reversed_entry"
    SAME_MEMBER = "rows_of_one_member"


@dataclass(frozen=True, order=True)
class Violation:
    """One broken invariant: whose books, which rule, and the figures that disagree."""

    member_id: int
    invariant: Invariant
    detail: str


def check(session: Session, member_ids: Collection[int] | None = None) -> list[Violation]:
    """Every violation of the ledger's invariants (all members, or only `member_ids`)."""
    members = None if member_ids is None else sorted(set(member_ids))
    found: list[Violation] = []
    for checker in (_accounts, _lots, _entries, _cancelled, _ownership):
        found.extend(checker(session, members))
    return sorted(found)


def _only(stmt: SelectT, column: Any, members: list[int] | None) -> SelectT:
    """`stmt` restricted to `members` (by `column`) when a subset was asked for."""
    return stmt if members is None else stmt.where(column.in_(members))


def _accounts(session: Session, members: list[int] | None) -> Iterable[Violation]:
    journal = _only(
        select(
            JournalEntry.member_id,
            func.sum(JournalEntry.amount).label("amount"),
            func.sum(JournalEntry.debt_change).label("debt"),
        ).group_by(JournalEntry.member_id),
        JournalEntry.member_id,
        members,
    ).subquery()
    lots = _only(
        select(Lot.member_id, func.sum(Lot.remaining).label("remaining")).group_by(Lot.member_id),
        Lot.member_id,
        members,
    ).subquery()
    amount = func.coalesce(journal.c.amount, 0)
    debt_changes = func.coalesce(journal.c.debt, 0)
    remaining = func.coalesce(lots.c.remaining, 0)
    stmt = _only(
        select(PointAccount.member_id, PointAccount.debt, amount, debt_changes, remaining)
        .outerjoin(journal, journal.c.member_id == PointAccount.member_id)
        .outerjoin(lots, lots.c.member_id == PointAccount.member_id)
        .where(
            or_(
                amount != remaining - PointAccount.debt,
                debt_changes != PointAccount.debt,
                PointAccount.debt < 0,
            )
        ),
        PointAccount.member_id,
        members,
    )
    for member_id, debt, total, debt_total, left in session.execute(stmt):
        if total != left - debt:
            yield Violation(
                member_id,
                Invariant.BALANCE,
                f"journal {total} ≠ lots remaining {left} − debt {debt}",
            )
        if debt_total != debt:
            yield Violation(
                member_id, Invariant.DEBT, f"debt {debt} ≠ journal debt changes {debt_total}"
            )
        if debt < 0:
            yield Violation(member_id, Invariant.DEBT_NEGATIVE, f"debt {debt}")


def _allocated_per(column: Any, members: list[int] | None) -> Any:
    return _only(
        select(
            column.label("key"),
            func.sum(Allocation.points).label("points"),
            func.min(Allocation.points).label("smallest"),
        ).group_by(column),
        Allocation.member_id,
        members,
    ).subquery()


def _lots(session: Session, members: list[int] | None) -> Iterable[Violation]:
    allocated = _allocated_per(Allocation.lot_id, members)
    taken = func.coalesce(allocated.c.points, 0)
    stmt = _only(
        select(Lot.id, Lot.member_id, Lot.amount, Lot.remaining, taken)
        .outerjoin(allocated, allocated.c.key == Lot.id)
        .where(
            or_(Lot.remaining < 0, Lot.remaining > Lot.amount, Lot.remaining != Lot.amount - taken)
        ),
        Lot.member_id,
        members,
    )
    for lot_id, member_id, amount, remaining, points in session.execute(stmt):
        if not 0 <= remaining <= amount:
            yield Violation(
                member_id,
                Invariant.LOT_RANGE,
                f"lot {lot_id}: remaining {remaining} outside 0..{amount}",
            )
        if remaining != amount - points:
            yield Violation(
                member_id,
                Invariant.LOT_ALLOCATIONS,
                f"lot {lot_id}: remaining {remaining} ≠ amount {amount} − allocated {points}",
            )


def _entries(session: Session, members: list[int] | None) -> Iterable[Violation]:
    created = _only(
        select(Lot.source_entry_id.label("key"), func.sum(Lot.amount).label("points")).group_by(
            Lot.source_entry_id
        ),
        Lot.member_id,
        members,
    ).subquery()
    allocated = _allocated_per(Allocation.entry_id, members)
    made = func.coalesce(created.c.points, 0)
    taken = func.coalesce(allocated.c.points, 0)
    is_redeem = JournalEntry.entry_type == str(EntryType.REDEEM)
    stmt = _only(
        select(
            JournalEntry.id,
            JournalEntry.member_id,
            JournalEntry.entry_type,
            JournalEntry.amount,
            JournalEntry.debt_change,
            made,
            taken,
            allocated.c.smallest,
        )
        .outerjoin(created, created.c.key == JournalEntry.id)
        .outerjoin(allocated, allocated.c.key == JournalEntry.id)
        .where(
            or_(
                made - taken != JournalEntry.amount + JournalEntry.debt_change,
                and_(is_redeem, or_(taken != -JournalEntry.amount, allocated.c.smallest <= 0)),
            )
        ),
        JournalEntry.member_id,
        members,
    )
    for entry_id, member_id, kind, amount, debt_change, lots, points, smallest in session.execute(
        stmt
    ):
        if lots - points != amount + debt_change:
            yield Violation(
                member_id,
                Invariant.ENTRY_BALANCED,
                f"entry {entry_id} ({kind}): lots created {lots} − allocated {points}"
                f" ≠ amount {amount} + debt change {debt_change}",
            )
        if kind == EntryType.REDEEM and (points != -amount or (smallest or 1) <= 0):
            yield Violation(
                member_id,
                Invariant.REDEEM_ALLOCATIONS,
                f"redeem {entry_id} of {-amount}: allocated {points}, smallest take {smallest}",
            )


def _cancelled(session: Session, members: list[int] | None) -> Iterable[Violation]:
    target = aliased(JournalEntry)
    is_cancel = JournalEntry.entry_type == str(EntryType.CANCEL)
    aimed = _only(
        select(JournalEntry.id, JournalEntry.member_id, target.id, target.member_id)
        .outerjoin(target, target.id == JournalEntry.reverses_entry_id)
        .where(
            or_(
                and_(
                    is_cancel, or_(target.id.is_(None), target.member_id != JournalEntry.member_id)
                ),
                and_(~is_cancel, JournalEntry.reverses_entry_id.is_not(None)),
            )
        ),
        JournalEntry.member_id,
        members,
    )
    for entry_id, member_id, target_id, target_member in session.execute(aimed):
        yield Violation(
            member_id,
            Invariant.CANCEL_TARGET,
            f"entry {entry_id} reverses entry {target_id} of member {target_member}",
        )
    reversed_ = _only(
        select(
            JournalEntry.reverses_entry_id.label("key"),
            func.sum(JournalEntry.reversed_points).label("points"),
        )
        .where(JournalEntry.reverses_entry_id.is_not(None))
        .group_by(JournalEntry.reverses_entry_id),
        JournalEntry.member_id,
        members,
    ).subquery()
    beyond = (
        select(target.id, target.member_id, target.amount, reversed_.c.points)
        .join(reversed_, reversed_.c.key == target.id)
        .where(reversed_.c.points > func.abs(target.amount))
    )
    for entry_id, member_id, amount, points in session.execute(beyond):
        yield Violation(
            member_id,
            Invariant.CANCEL_WITHIN,
            f"entry {entry_id} of {amount} reversed by {points} points",
        )


def _ownership(session: Session, members: list[int] | None) -> Iterable[Violation]:
    entry = aliased(JournalEntry)
    allocations = _only(
        select(Allocation.id, Allocation.member_id, Lot.member_id, entry.member_id)
        .join(Lot, Lot.id == Allocation.lot_id)
        .join(entry, entry.id == Allocation.entry_id)
        .where(or_(Allocation.member_id != Lot.member_id, Allocation.member_id != entry.member_id)),
        Allocation.member_id,
        members,
    )
    for allocation_id, member_id, lot_member, entry_member in session.execute(allocations):
        yield Violation(
            member_id,
            Invariant.SAME_MEMBER,
            f"allocation {allocation_id}: lot of member {lot_member}, entry of {entry_member}",
        )
    lots = _only(
        select(Lot.id, Lot.member_id, entry.member_id)
        .join(entry, entry.id == Lot.source_entry_id)
        .where(Lot.member_id != entry.member_id),
        Lot.member_id,
        members,
    )
    for lot_id, member_id, entry_member in session.execute(lots):
        yield Violation(
            member_id,
            Invariant.SAME_MEMBER,
            f"lot {lot_id} was created by an entry of member {entry_member}",
        )

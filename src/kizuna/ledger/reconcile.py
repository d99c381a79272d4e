"""Reconciliation: prove that the books balance, member by member.

The ledger keeps the same facts twice — the journal (what happened) and the lots (what is left) —
so each can be checked against the other. Every invariant of SPEC §4 is one set-based query that
returns only the rows breaking it, so `check` runs over millions of entries in a few scans:
balance = Σ journal amount = Σ lot remaining − debt; debt = Σ debt_change ≥ 0; every lot within
0..amount and equal to amount − Σ allocations − expired_points; every entry balanced (lots
created − points allocated − points written off in lots = amount + debt_change); every expire
entry equal to the points its lots wrote off; redemptions allocated in full from positive takes;
every cancel aimed at an entry of the same member and never reversing more than it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from kizuna.ledger.domain import EntryType
from kizuna.ledger.models import Allocation, JournalEntry, Lot, PointAccount

Query = Select[*tuple[Any, ...]]
Run = Callable[[Query], Iterable[Any]]
SelectT = TypeVar("SelectT", bound=Query)


class Invariant(StrEnum):
    BALANCE = "balance_matches_journal"
    DEBT = "debt_matches_journal"
    DEBT_NEGATIVE = "debt_not_negative"
    LOT_RANGE = "lot_remaining_within_amount"
    LOT_ALLOCATIONS = "lot_remaining_matches_allocations"
    ENTRY_BALANCED = "entry_balanced"
    EXPIRE_LOTS = "expire_entry_matches_its_lots"
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
    filtered = member_ids is not None
    params = {"members": sorted(set(member_ids))} if member_ids is not None else {}

    def run(stmt: Query) -> Iterable[Any]:
        return session.execute(stmt, params)

    found: list[Violation] = []
    for checker in (_accounts, _lots, _entries, _cancelled, _ownership):
        found.extend(checker(run, filtered))
    return sorted(found)


def _only(stmt: SelectT, column: Any, filtered: bool) -> SelectT:
    """`stmt` restricted to the members asked for (by `column`), if a subset was asked for."""
    return stmt.where(column.in_(bindparam("members", expanding=True))) if filtered else stmt


# The statements are built once per shape (all members / some): building them is most of the
# cost of checking one member, which the API and the tests do after every change.


@cache
def _accounts_query(filtered: bool) -> Query:
    journal = _only(
        select(
            JournalEntry.member_id,
            func.sum(JournalEntry.amount).label("amount"),
            func.sum(JournalEntry.debt_change).label("debt"),
        ).group_by(JournalEntry.member_id),
        JournalEntry.member_id,
        filtered,
    ).subquery()
    lots = _only(
        select(Lot.member_id, func.sum(Lot.remaining).label("remaining")).group_by(Lot.member_id),
        Lot.member_id,
        filtered,
    ).subquery()
    amount = func.coalesce(journal.c.amount, 0)
    debt_changes = func.coalesce(journal.c.debt, 0)
    remaining = func.coalesce(lots.c.remaining, 0)
    return _only(
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
        filtered,
    )


def _accounts(run: Run, filtered: bool) -> Iterable[Violation]:
    for member_id, debt, total, debt_total, left in run(_accounts_query(filtered)):
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


def _allocated_per(column: Any, filtered: bool) -> Any:
    return _only(
        select(
            column.label("key"),
            func.sum(Allocation.points).label("points"),
            func.min(Allocation.points).label("smallest"),
        ).group_by(column),
        Allocation.member_id,
        filtered,
    ).subquery()


@cache
def _lots_query(filtered: bool) -> Query:
    allocated = _allocated_per(Allocation.lot_id, filtered)
    taken = func.coalesce(allocated.c.points, 0)
    return _only(
        select(Lot.id, Lot.member_id, Lot.amount, Lot.remaining, taken, Lot.expired_points)
        .outerjoin(allocated, allocated.c.key == Lot.id)
        .where(
            or_(
                Lot.remaining < 0,
                Lot.remaining > Lot.amount,
                Lot.remaining != Lot.amount - taken - Lot.expired_points,
            )
        ),
        Lot.member_id,
        filtered,
    )


def _lots(run: Run, filtered: bool) -> Iterable[Violation]:
    for lot_id, member_id, amount, remaining, points, expired in run(_lots_query(filtered)):
        if not 0 <= remaining <= amount:
            yield Violation(
                member_id,
                Invariant.LOT_RANGE,
                f"lot {lot_id}: remaining {remaining} outside 0..{amount}",
            )
        if remaining != amount - points - expired:
            yield Violation(
                member_id,
                Invariant.LOT_ALLOCATIONS,
                f"lot {lot_id}: remaining {remaining} ≠ amount {amount} − allocated {points}"
                f" − expired {expired}",
            )


@cache
def _entries_query(filtered: bool) -> Query:
    created = _only(
        select(Lot.source_entry_id.label("key"), func.sum(Lot.amount).label("points")).group_by(
            Lot.source_entry_id
        ),
        Lot.member_id,
        filtered,
    ).subquery()
    allocated = _allocated_per(Allocation.entry_id, filtered)
    # Expiry writes no allocations: the lots an expire entry wrote off name it instead.
    written = _only(
        select(Lot.expire_entry_id.label("key"), func.sum(Lot.expired_points).label("points"))
        .where(Lot.expire_entry_id.is_not(None))
        .group_by(Lot.expire_entry_id),
        Lot.member_id,
        filtered,
    ).subquery()
    made = func.coalesce(created.c.points, 0)
    taken = func.coalesce(allocated.c.points, 0)
    written_off = func.coalesce(written.c.points, 0)
    is_redeem = JournalEntry.entry_type == str(EntryType.REDEEM)
    is_expire = JournalEntry.entry_type == str(EntryType.EXPIRE)
    return _only(
        select(
            JournalEntry.id,
            JournalEntry.member_id,
            JournalEntry.entry_type,
            JournalEntry.amount,
            JournalEntry.debt_change,
            made,
            taken,
            written_off,
            allocated.c.smallest,
        )
        .outerjoin(created, created.c.key == JournalEntry.id)
        .outerjoin(allocated, allocated.c.key == JournalEntry.id)
        .outerjoin(written, written.c.key == JournalEntry.id)
        .where(
            or_(
                made - taken - written_off != JournalEntry.amount + JournalEntry.debt_change,
                and_(is_redeem, or_(taken != -JournalEntry.amount, allocated.c.smallest <= 0)),
                and_(is_expire, written_off != -JournalEntry.amount),
            )
        ),
        JournalEntry.member_id,
        filtered,
    )


def _entries(run: Run, filtered: bool) -> Iterable[Violation]:
    for entry_id, member_id, kind, amount, debt_change, lots, points, written, smallest in run(
        _entries_query(filtered)
    ):
        if lots - points - written != amount + debt_change:
            yield Violation(
                member_id,
                Invariant.ENTRY_BALANCED,
                f"entry {entry_id} ({kind}): lots created {lots} − allocated {points}"
                f" − written off {written} ≠ amount {amount} + debt change {debt_change}",
            )
        if kind == EntryType.EXPIRE and written != -amount:
            yield Violation(
                member_id,
                Invariant.EXPIRE_LOTS,
                f"expire {entry_id} of {-amount}: its lots wrote off {written}",
            )
        if kind == EntryType.REDEEM and (points != -amount or (smallest or 1) <= 0):
            yield Violation(
                member_id,
                Invariant.REDEEM_ALLOCATIONS,
                f"redeem {entry_id} of {-amount}: allocated {points}, smallest take {smallest}",
            )


@cache
def _cancel_queries(filtered: bool) -> tuple[Query, Query]:
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
        filtered,
    )
    reversed_ = _only(
        select(
            JournalEntry.reverses_entry_id.label("key"),
            func.sum(JournalEntry.reversed_points).label("points"),
        )
        .where(JournalEntry.reverses_entry_id.is_not(None))
        .group_by(JournalEntry.reverses_entry_id),
        JournalEntry.member_id,
        filtered,
    ).subquery()
    beyond = (
        select(target.id, target.member_id, target.amount, reversed_.c.points)
        .join(reversed_, reversed_.c.key == target.id)
        .where(reversed_.c.points > func.abs(target.amount))
    )
    return aimed, beyond


def _cancelled(run: Run, filtered: bool) -> Iterable[Violation]:
    aimed, beyond = _cancel_queries(filtered)
    for entry_id, member_id, target_id, target_member in run(aimed):
        yield Violation(
            member_id,
            Invariant.CANCEL_TARGET,
            f"entry {entry_id} reverses entry {target_id} of member {target_member}",
        )
    for entry_id, member_id, amount, points in run(beyond):
        yield Violation(
            member_id,
            Invariant.CANCEL_WITHIN,
            f"entry {entry_id} of {amount} reversed by {points} points",
        )


@cache
def _ownership_queries(filtered: bool) -> tuple[Query, Query]:
    entry = aliased(JournalEntry)
    allocations = _only(
        select(Allocation.id, Allocation.member_id, Lot.member_id, entry.member_id)
        .join(Lot, Lot.id == Allocation.lot_id)
        .join(entry, entry.id == Allocation.entry_id)
        .where(or_(Allocation.member_id != Lot.member_id, Allocation.member_id != entry.member_id)),
        Allocation.member_id,
        filtered,
    )
    expirer = aliased(JournalEntry)
    lots = _only(
        select(Lot.id, Lot.member_id, entry.member_id, expirer.member_id, expirer.entry_type)
        .join(entry, entry.id == Lot.source_entry_id)
        .outerjoin(expirer, expirer.id == Lot.expire_entry_id)
        .where(
            or_(
                Lot.member_id != entry.member_id,
                Lot.member_id != expirer.member_id,
                expirer.entry_type != str(EntryType.EXPIRE),
            )
        ),
        Lot.member_id,
        filtered,
    )
    return allocations, lots


def _ownership(run: Run, filtered: bool) -> Iterable[Violation]:
    allocations, lots = _ownership_queries(filtered)
    for allocation_id, member_id, lot_member, entry_member in run(allocations):
        yield Violation(
            member_id,
            Invariant.SAME_MEMBER,
            f"allocation {allocation_id}: lot of member {lot_member}, entry of {entry_member}",
        )
    for lot_id, member_id, entry_member, expirer_member, expirer_kind in run(lots):
        if entry_member != member_id:
            yield Violation(
                member_id,
                Invariant.SAME_MEMBER,
                f"lot {lot_id} was created by an entry of member {entry_member}",
            )
        if expirer_member is not None and expirer_member != member_id:
            yield Violation(
                member_id,
                Invariant.SAME_MEMBER,
                f"lot {lot_id} was written off by an entry of member {expirer_member}",
            )
        if expirer_kind is not None and expirer_kind != EntryType.EXPIRE:
            yield Violation(
                member_id,
                Invariant.EXPIRE_LOTS,
                f"lot {lot_id} was written off by a {expirer_kind} entry",
            )

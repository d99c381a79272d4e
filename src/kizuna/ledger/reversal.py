"""Reversals: cancelling all or part of an earn or a redemption, also after a merge (名寄せ).

A cancel names the entry it reverses (`reverses_entry_id`) and how many of its points
(`reversed_points`), so partial reversals add up and never pass the entry. A redemption's points go
back to the lots they came from; an earn is taken back from its own lots, its expired part
waived, then from other lots, then as debt. Like `service`, functions take the member's lock before
they decide, and `flush`, never commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, KizunaError, NotFound
from kizuna.db.prepared import Call, Prepared, run_together
from kizuna.ledger.domain import (
    EntryType,
    ExpiryRule,
    LedgerPolicy,
    LotKind,
    LotState,
    Take,
    expired_points_of,
    plan_earn_reversal,
    restore_plan,
)
from kizuna.ledger.errors import ErrorCode
from kizuna.ledger.models import Allocation, JournalEntry, Lot
from kizuna.ledger.service import (
    EARN_LIKE,
    LOT_STATE_COLUMNS,
    REDEEM_LIKE,
    Context,
    NewLot,
    Posted,
    apply_takes,
    carried_lots,
    get_entry,
    insert_entry,
    insert_lots,
    lock_account_call,
    lock_accounts,
    locked_debt,
    lot_states,
    open_lots,
    open_lots_call,
    set_debt,
)


@dataclass(frozen=True)
class _Entry:
    """What a reversal needs to know of the entry it reverses."""

    id: int
    member_id: int
    entry_type: str
    amount: int


_ENTRY = Prepared(
    select(
        JournalEntry.id, JournalEntry.member_id, JournalEntry.entry_type, JournalEntry.amount
    ).where(JournalEntry.id == bindparam("entry_id")),
    ("entry_id",),
)
_REVERSED_SO_FAR = Prepared(
    select(
        func.coalesce(func.sum(JournalEntry.reversed_points), 0),
        func.coalesce(func.sum(JournalEntry.amount), 0),
    ).where(JournalEntry.reverses_entry_id == bindparam("entry_id")),
    ("entry_id",),
)


def reversed_so_far(session: Session, entry_id: int) -> tuple[int, int]:
    """(points reversed, their balance effect) over all cancels of entry `entry_id`."""
    return _sums(_REVERSED_SO_FAR.rows(session, {"entry_id": entry_id}))


def _sums(rows: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
    return int(rows[0][0]), int(rows[0][1])


def reverse(
    session: Session,
    *,
    entry_id: int,
    policy: LedgerPolicy,
    as_of: datetime,
    points: int | None = None,
    context: Context = Context(),
) -> Posted | None:
    """Cancel `points` (default: all that is left) of an earn or a redemption.

    A redemption's points go back to the lots they came from, or to a new lot that expires
    `restore_grace_days` from now when that lot has expired. An earn is taken back from its own
    unspent lots, then the expired part costs nothing, then other lots, then debt.
    """
    found = _ENTRY.rows(session, {"entry_id": entry_id})
    if not found:
        raise NotFound(ErrorCode.ENTRY_NOT_FOUND, f"journal entry {entry_id} not found")
    entry = _Entry(*found[0])
    kind = EntryType(entry.entry_type)
    earn_like = kind in EARN_LIKE and entry.amount > 0
    if not earn_like and not (kind in REDEEM_LIKE and entry.amount < 0):
        raise Conflict(ErrorCode.NOT_REVERSIBLE, f"a {kind} entry cannot be reversed")
    # The member's lock, then (in the same round trip, so after it) what was reversed so far.
    locked, reversed_rows = run_together(
        session,
        [
            lock_account_call(entry.member_id),
            Call(_REVERSED_SO_FAR, {"entry_id": entry_id}),
        ],
    )
    debt = locked_debt(entry.member_id, locked)
    done, done_effect = _sums(reversed_rows)
    left = abs(entry.amount) - done
    points = left if points is None else points
    if points < 0:
        raise KizunaError(ErrorCode.INVALID_POINTS, "points to reverse cannot be negative")
    if points > left or (points == 0 and left == 0):
        raise Conflict(
            ErrorCode.ALREADY_REVERSED,
            f"entry {entry_id} has {left} points left to reverse, {points} asked",
            reversible=left,
        )
    if points == 0:
        return None
    if earn_like:
        return _reverse_earn(
            session, entry, points, done + done_effect, debt, as_of=as_of, context=context
        )
    return _restore_redemption(session, entry, points, done, policy, as_of=as_of, context=context)


# A redemption's allocations, oldest first, each with the lot it took from.
_ALLOCATED_LOTS = Prepared(
    select(*LOT_STATE_COLUMNS, Lot.funding_partner_id, Allocation.points)
    .join(Lot, Lot.id == Allocation.lot_id)
    .where(Allocation.entry_id == bindparam("entry_id"))
    .order_by(Allocation.id),
    ("entry_id",),
)


def _restore_redemption(
    session: Session,
    entry: _Entry,
    points: int,
    already: int,
    policy: LedgerPolicy,
    *,
    as_of: datetime,
    context: Context,
) -> Posted:
    allocated = _ALLOCATED_LOTS.rows(session, {"entry_id": entry.id})
    plan = restore_plan([(row[0], row[-1]) for row in allocated], already, points)
    lots = {row[0]: row for row in allocated}
    cancel_id = insert_entry(
        session,
        member_id=entry.member_id,
        entry_type=EntryType.CANCEL,
        amount=points,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
        reverses_entry_id=entry.id,
        reversed_points=points,
    )
    back: list[Take] = []
    fresh: dict[tuple[str, int | None], int] = defaultdict(int)
    for lot_id, give in plan:
        *columns, funding_partner_id, _ = lots[lot_id]
        lot = lot_states([tuple(columns)])[0]
        if lot.is_expired(as_of):
            fresh[(str(lot.kind), funding_partner_id)] += give
        else:
            back.append((lot_id, -give))
    apply_takes(session, entry_id=cancel_id, member_id=entry.member_id, takes=back)
    new_lots = [
        NewLot(
            kind=LotKind(kind),
            expiry_rule=ExpiryRule.FIXED,
            amount=amount,
            earned_at=as_of,
            available_at=as_of,
            expires_at=as_of + timedelta(days=policy.restore_grace_days),
            funding_partner_id=partner,
        )
        for (kind, partner), amount in sorted(fresh.items(), key=lambda item: str(item[0]))
    ]
    lot_ids = insert_lots(session, entry_id=cancel_id, member_id=entry.member_id, lots=new_lots)
    return Posted(cancel_id, entry.member_id, EntryType.CANCEL, points, takes=back, lot_ids=lot_ids)


_OWN_LOTS = Prepared(
    select(*LOT_STATE_COLUMNS, Lot.expired_points).where(
        Lot.source_entry_id == bindparam("entry_id")
    ),
    ("entry_id",),
)


def _reverse_earn(
    session: Session,
    entry: _Entry,
    points: int,
    already_waived: int,
    debt: int,
    *,
    as_of: datetime,
    context: Context,
) -> Posted:
    own_rows, open_rows = run_together(
        session,
        [Call(_OWN_LOTS, {"entry_id": entry.id}), open_lots_call(entry.member_id)],
    )
    own = [
        replace(state, expired_points=row[-1])
        for state, row in zip(lot_states(row[:-1] for row in own_rows), own_rows, strict=True)
    ]
    own_ids = {lot.id for lot in own}
    others = [lot for lot in lot_states(open_rows) if lot.id not in own_ids]
    plan = plan_earn_reversal(
        own_lots=own,
        expired_points=max(expired_points_of(own, as_of) - already_waived, 0),
        other_lots=others,
        points=points,
        as_of=as_of,
    )
    cancel_id = insert_entry(
        session,
        member_id=entry.member_id,
        entry_type=EntryType.CANCEL,
        amount=plan.amount,
        debt_change=plan.debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
        reverses_entry_id=entry.id,
        reversed_points=points,
    )
    takes = plan.from_own_lots + plan.from_other_lots
    apply_takes(session, entry_id=cancel_id, member_id=entry.member_id, takes=takes)
    if plan.debt:
        set_debt(session, entry.member_id, debt + plan.debt, as_of)
    return Posted(cancel_id, entry.member_id, EntryType.CANCEL, plan.amount, plan.debt, takes=takes)


# --- reversals after a merge (名寄せ) -------------------------------------------------------------
# A merged member's entries stay under its id, but its points were carried to the survivor by
# `transfer.transfer_all` (`merge_out` / `merge_in`). Reversing one of its earns afterwards is
# booked where each part belongs: the cancel on the merged member, against its own entry, with the
# balance effect the reversal has; that effect is the merged member's debt for an instant, handed
# over by a `merge_out` as a merge hands over debt; the survivor's `merge_in` settles it exactly as
# the reversal would have on one member — from the earn's own lots (now the survivor's copies),
# the expired part waived, then other lots in redemption order, then debt.


def reverse_for_survivor(
    session: Session,
    *,
    entry_id: int,
    survivor_id: int,
    transfers: Sequence[tuple[int, int]],
    as_of: datetime,
    points: int,
    context: Context = Context(),
) -> Posted:
    """Reverse `points` of an earn of a member whose points `transfers` carried to `survivor_id`
    (see above); returns the survivor's `merge_in`, or the cancel when nothing was left to take."""
    entry = get_entry(session, entry_id)
    if entry.member_id == survivor_id:
        raise ValueError("a reversal for a survivor needs the entry of another member")
    if EntryType(entry.entry_type) not in EARN_LIKE or entry.amount <= 0:
        raise Conflict(ErrorCode.NOT_REVERSIBLE, f"a {entry.entry_type} entry cannot be reversed")
    debts = lock_accounts(session, [entry.member_id, survivor_id])
    done, done_effect = reversed_so_far(session, entry_id)
    left = entry.amount - done
    if not 0 < points <= left:
        raise Conflict(
            ErrorCode.ALREADY_REVERSED,
            f"entry {entry_id} has {left} points left to reverse, {points} asked",
            reversible=left,
        )
    own_ids = session.scalars(select(Lot.id).where(Lot.source_entry_id == entry_id)).all()
    lineage = [
        (row.member_id, replace(_lot_state(row), expired_points=row.expired_points))
        for row in session.execute(
            select(*LOT_STATE_COLUMNS, Lot.expired_points, Lot.member_id).where(
                Lot.id.in_(carried_lots(session, lot_ids=own_ids, transfers=transfers))
            )
        )
    ]
    own = [lot for member_id, lot in lineage if member_id == survivor_id]
    held = {lot.id for lot in own}
    plan = plan_earn_reversal(
        own_lots=own,
        expired_points=max(
            expired_points_of((lot for _, lot in lineage), as_of) - (done + done_effect), 0
        ),
        other_lots=[lot for lot in open_lots(session, survivor_id) if lot.id not in held],
        points=points,
        as_of=as_of,
    )
    effect = plan.amount
    cancel_id = insert_entry(
        session,
        member_id=entry.member_id,
        entry_type=EntryType.CANCEL,
        amount=effect,
        debt_change=-effect,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
        reverses_entry_id=entry.id,
        reversed_points=points,
    )
    if effect == 0:
        return Posted(cancel_id, entry.member_id, EntryType.CANCEL, 0)
    insert_entry(
        session,
        member_id=entry.member_id,
        entry_type=EntryType.MERGE_OUT,
        amount=-effect,
        debt_change=effect,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    in_id = insert_entry(
        session,
        member_id=survivor_id,
        entry_type=EntryType.MERGE_IN,
        amount=effect,
        debt_change=plan.debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    takes = plan.from_own_lots + plan.from_other_lots
    apply_takes(session, entry_id=in_id, member_id=survivor_id, takes=takes)
    if plan.debt:
        set_debt(session, survivor_id, debts[survivor_id] + plan.debt, as_of)
    return Posted(in_id, survivor_id, EntryType.MERGE_IN, effect, plan.debt, takes=takes)


def _lot_state(row: Any) -> LotState:
    return LotState(
        id=row.id,
        kind=LotKind(row.kind),
        amount=row.amount,
        remaining=row.remaining,
        earned_at=row.earned_at,
        available_at=row.available_at,
        expires_at=row.expires_at,
    )

"""Moving points between members (a merge, 名寄せ), and opening the balances of migrated members.

Points move lot by lot so that nothing about them changes but the owner: the `merge_out` entry of
the merged member takes every unexpired lot's remainder (allocations) and hands over their debt;
the `merge_in` entry of the survivor creates one lot per lot taken, with the same kind, expiry
rule, earning, availability (pending stays pending), expiry and funding partner, and takes on the
debt. Both entries keep the ledger's per-entry rule

    points of the lots it created − points it allocated == amount + debt_change

(merge_out: 0 − held == (debt − held) + (−debt); merge_in: held − 0 == (held − debt) + debt).
Expired lots not yet written off stay behind: they are worth nothing and the expiry job writes
them off where they are. Both accounts are locked in member-id order, so two merges cannot
deadlock.

`open_accounts` posts the opening balances (`migrate_in`) of members created by a bulk import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.base import Base
from kizuna.ledger.domain import EntryType, ExpiryRule, LedgerPolicy, LotKind, redemption_key
from kizuna.ledger.errors import ErrorCode
from kizuna.ledger.models import JournalEntry, Lot, PointAccount
from kizuna.ledger.service import (
    Context,
    NewLot,
    apply_takes,
    insert_entry,
    insert_lots,
    lock_account,
    lot_row,
    lots_for_earn,
    open_lots,
    set_debt,
)
from kizuna.rules.domain import BreakdownRow


def _table(model: type[Base]) -> Table:
    # Core inserts of plain rows: the ORM's bulk path costs more per row than the database does.
    return cast(Table, model.__table__)


@dataclass(frozen=True)
class Transfer:
    """What a transfer wrote: both entries (None when there was nothing to move) and the sums."""

    out_entry_id: int | None
    in_entry_id: int | None
    points: int
    debt: int
    lots: int


def transfer_all(
    session: Session,
    *,
    from_member_id: int,
    to_member_id: int,
    as_of: datetime,
    context: Context = Context(),
) -> Transfer:
    """Move every unexpired point (pending too) and the debt of one member to another."""
    if from_member_id == to_member_id:
        raise ValueError("a transfer needs two different members")
    debts: dict[int, int] = {}
    for member_id in sorted((from_member_id, to_member_id)):
        debts[member_id] = lock_account(session, member_id)
    moving = sorted(
        (lot for lot in open_lots(session, from_member_id) if not lot.is_expired(as_of)),
        key=redemption_key,
    )
    held = sum(lot.remaining for lot in moving)
    debt = debts[from_member_id]
    if held == 0 and debt == 0:
        return Transfer(None, None, 0, 0, 0)
    details = {
        row.id: row
        for row in session.execute(
            select(Lot.id, Lot.expiry_rule, Lot.funding_partner_id).where(
                Lot.id.in_([lot.id for lot in moving])
            )
        )
    }
    out_id = insert_entry(
        session,
        member_id=from_member_id,
        entry_type=EntryType.MERGE_OUT,
        amount=debt - held,
        debt_change=-debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    apply_takes(
        session,
        entry_id=out_id,
        member_id=from_member_id,
        takes=[(lot.id, lot.remaining) for lot in moving],
    )
    if debt:
        set_debt(session, from_member_id, 0, as_of)
    in_id = insert_entry(
        session,
        member_id=to_member_id,
        entry_type=EntryType.MERGE_IN,
        amount=held - debt,
        debt_change=debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    insert_lots(
        session,
        entry_id=in_id,
        member_id=to_member_id,
        lots=[
            NewLot(
                kind=LotKind(lot.kind),
                expiry_rule=ExpiryRule(details[lot.id].expiry_rule),
                amount=lot.remaining,
                earned_at=lot.earned_at,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
                funding_partner_id=details[lot.id].funding_partner_id,
            )
            for lot in moving
        ],
    )
    if debt:
        set_debt(session, to_member_id, debts[to_member_id] + debt, as_of)
    return Transfer(out_id, in_id, held, debt, len(moving))


@dataclass(frozen=True)
class Opening:
    """The opening balance of a member created in the caller's transaction."""

    member_id: int
    rows: Sequence[BreakdownRow]


def open_accounts(
    session: Session,
    *,
    openings: Sequence[Opening],
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context = Context(),
    entry_type: EntryType = EntryType.MIGRATE_IN,
) -> list[int]:
    """Open the accounts of new members and post their opening balances, in a few statements.

    The result is what `open_account` then `earn` per member would write — the same entry and
    the same lots (`lots_for_earn`) — without a lock or a round trip per member: the members
    were created in this transaction, so nobody else can see them, they have no debt to repay and
    no lots whose expiry could roll. Returns the ids of the entries posted.
    """
    if any(row.points < 0 for opening in openings for row in opening.rows):
        raise KizunaError(ErrorCode.INVALID_POINTS, "earned points cannot be negative")
    if not openings:
        return []
    session.execute(
        insert(_table(PointAccount)),
        [{"member_id": o.member_id, "debt": 0, "updated_at": as_of} for o in openings],
    )
    posting = [o for o in openings if sum(row.points for row in o.rows) > 0]
    if not posting:
        return []
    entry_ids = list(
        session.scalars(
            insert(_table(JournalEntry)).returning(
                _table(JournalEntry).c.id, sort_by_parameter_order=True
            ),
            [
                {
                    "member_id": o.member_id,
                    "entry_type": str(entry_type),
                    "amount": sum(row.points for row in o.rows),
                    "debt_change": 0,
                    "reverses_entry_id": None,
                    "reversed_points": 0,
                    "occurred_at": occurred_at,
                    "recorded_at": as_of,
                    "breakdown": [row.to_dict() for row in o.rows],
                    **context.columns(),
                }
                for o in posting
            ],
        )
    )
    lots = [
        lot_row(o.member_id, entry_id, lot)
        for entry_id, o in zip(entry_ids, posting, strict=True)
        for lot in lots_for_earn(
            o.rows,
            sum(row.points for row in o.rows),
            policy=policy,
            occurred_at=occurred_at,
            available_at=occurred_at,
            funding_partner_id=context.partner_id,
        )
    ]
    session.execute(insert(_table(Lot)), lots)
    return entry_ids

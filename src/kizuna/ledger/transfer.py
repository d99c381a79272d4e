"""Moving a member's points to another member: the ledger side of a merge (名寄せ).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kizuna.ledger.domain import EntryType, ExpiryRule, LotKind, redemption_key
from kizuna.ledger.models import Lot
from kizuna.ledger.service import (
    Context,
    NewLot,
    _apply_takes,
    _insert_entry,
    _insert_lots,
    _lock_account,
    _set_debt,
    open_lots,
)


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
        debts[member_id] = _lock_account(session, member_id)
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
    out_id = _insert_entry(
        session,
        member_id=from_member_id,
        entry_type=EntryType.MERGE_OUT,
        amount=debt - held,
        debt_change=-debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    _apply_takes(
        session,
        entry_id=out_id,
        member_id=from_member_id,
        takes=[(lot.id, lot.remaining) for lot in moving],
    )
    if debt:
        _set_debt(session, from_member_id, 0, as_of)
    in_id = _insert_entry(
        session,
        member_id=to_member_id,
        entry_type=EntryType.MERGE_IN,
        amount=held - debt,
        debt_change=debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    _insert_lots(
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
        _set_debt(session, to_member_id, debts[to_member_id] + debt, as_of)
    return Transfer(out_id, in_id, held, debt, len(moving))

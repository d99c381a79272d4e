"""Returns and confirmations of receipts already recorded.

A return restores the points the receipt redeemed, then reverses its earn down to what the kept
lines earn under the rules in force at the original purchase time; a confirmation makes an EC
order's pending points available once it ships. Both act on the member who holds the receipt's
points now: its buyer, or, after a merge (名寄せ), the member the buyer was merged into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, KizunaError, NotFound
from kizuna.db.prepared import Prepared
from kizuna.ledger import reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import Balance, EntryType, restored_after_return
from kizuna.ledger.models import JournalEntry
from kizuna.ledger.transfer import transfer_all
from kizuna.members import merge
from kizuna.members.domain import MemberStatus
from kizuna.members.models import Member
from kizuna.outbox.service import publish
from kizuna.partners import service as partners
from kizuna.partners.models import Program
from kizuna.partners.service import ProgramPolicies
from kizuna.purchases import service
from kizuna.purchases.domain import ReturnLine, kept_lines, refunded_amount, returned_after
from kizuna.purchases.errors import ErrorCode
from kizuna.purchases.models import Purchase
from kizuna.rules import service as rules
from kizuna.rules.domain import PurchaseLine, breakdown_total


@dataclass(frozen=True)
class ReturnResult:
    purchase_id: int
    member_id: int
    refunded_amount: int
    points_restored: int
    points_reversed: int
    debt_added: int
    status: str
    balance: Balance


@dataclass(frozen=True)
class _Receipt:
    """A recorded purchase as a return reads it, with its buyer and programme."""

    id: int
    member_id: int
    partner_id: int
    store_id: int
    channel: str
    occurred_at: datetime
    total_amount: int
    lines: list[dict[str, Any]]
    returned_quantities: list[int]
    points_used: int
    refunded_amount: int
    points_restored: int
    buyer_status: str
    program: ProgramPolicies
    ranked: bool
    campaigns: bool
    # The receipt's earn and redemption entries (None: it has none) and the points of its earn
    # reversed so far.
    earn_entry_id: int | None
    redeem_entry_id: int | None
    earn_amount: int
    earn_reversed: int


_EARN = JournalEntry.__table__.alias("receipt_earn")
_REDEEM = JournalEntry.__table__.alias("receipt_redeem")
_CANCEL = JournalEntry.__table__.alias("earn_cancel")
_EARN_REVERSED = (
    select(func.coalesce(func.sum(_CANCEL.c.reversed_points), 0))
    .where(_CANCEL.c.reverses_entry_id == _EARN.c.id)
    .scalar_subquery()
)
# A return's first statement: the receipt, locked (two returns of one receipt take turns), with
# its buyer's status, the programme's policies, whether it has ranks or campaigns at all, and the
# receipt's earn and redemption entries.
_LOCKED_RECEIPT = Prepared(
    select(
        Purchase.id,
        Purchase.member_id,
        Purchase.partner_id,
        Purchase.store_id,
        Purchase.channel,
        Purchase.occurred_at,
        Purchase.total_amount,
        Purchase.lines,
        Purchase.returned_quantities,
        Purchase.points_used,
        Purchase.refunded_amount,
        Purchase.points_restored,
        Member.status,
        *partners.POLICY_COLUMNS,
        service.HAS_RANKS.label("ranked"),
        service.HAS_CAMPAIGNS.label("campaigns"),
        _EARN.c.id,
        _REDEEM.c.id,
        func.coalesce(_EARN.c.amount, 0),
        func.coalesce(_EARN_REVERSED, 0),
    )
    .join(Member, Member.id == Purchase.member_id)
    .join(Program, Program.id == Member.program_id)
    .outerjoin(
        _EARN, and_(_EARN.c.purchase_id == Purchase.id, _EARN.c.entry_type == str(EntryType.EARN))
    )
    .outerjoin(
        _REDEEM,
        and_(_REDEEM.c.purchase_id == Purchase.id, _REDEEM.c.entry_type == str(EntryType.REDEEM)),
    )
    .where(
        Purchase.store_id == bindparam("store_id"), Purchase.receipt_no == bindparam("receipt_no")
    )
    .with_for_update(of=Purchase),
    ("store_id", "receipt_no"),
)
_RECORD_RETURN = Prepared(
    update(Purchase)
    .where(Purchase.id == bindparam("purchase_id"))
    .values(
        returned_quantities=bindparam(
            "returned_quantities", type_=Purchase.returned_quantities.type
        ),
        refunded_amount=bindparam("refunded_amount"),
        points_restored=bindparam("points_restored"),
        status=bindparam("status"),
    ),
    ("purchase_id", "returned_quantities", "refunded_amount", "points_restored", "status"),
)


def _locked_receipt(session: Session, store_id: int, receipt_no: str) -> _Receipt:
    rows = _LOCKED_RECEIPT.rows(session, {"store_id": store_id, "receipt_no": receipt_no})
    if not rows:
        raise NotFound(
            ErrorCode.PURCHASE_NOT_FOUND, f"no purchase {receipt_no} at store {store_id}"
        )
    (id_, member_id, partner_id, store, channel, occurred_at, total, lines, returned, used,
     refunded, restored, status, *policy, ranked, campaigns, earn_id, redeem_id, earned,
     reversed_points) = rows[0]  # fmt: skip
    return _Receipt(
        id=id_,
        member_id=member_id,
        partner_id=partner_id,
        store_id=store,
        channel=channel,
        occurred_at=occurred_at,
        total_amount=total,
        lines=lines,
        returned_quantities=returned,
        points_used=used,
        refunded_amount=refunded,
        points_restored=restored,
        buyer_status=status,
        program=partners.policies_of(*policy),
        ranked=bool(ranked),
        campaigns=bool(campaigns),
        earn_entry_id=earn_id,
        redeem_entry_id=redeem_id,
        earn_amount=int(earned),
        earn_reversed=int(reversed_points),
    )


def _points_to_restore(purchase: _Receipt, refunded: int, explicit: int | None, full: bool) -> int:
    """How many redeemed points this return gives back (cumulative rule unless told otherwise)."""
    left = purchase.points_used - purchase.points_restored
    if explicit is not None:
        if not 0 <= explicit <= left:
            raise KizunaError(
                ErrorCode.INVALID_RETURN,
                f"restore_points must be between 0 and {left}",
                restorable=left,
            )
        return explicit
    if full:
        return left
    target = restored_after_return(purchase.points_used, refunded, purchase.total_amount)
    return max(target - purchase.points_restored, 0)


def return_purchase(
    session: Session,
    *,
    store_id: int,
    receipt_no: str,
    lines: Sequence[ReturnLine] | None,
    as_of: datetime,
    restore_points: int | None = None,
    actor: str | None = None,
) -> ReturnResult:
    """A full (lines=None) or partial return: restore redeemed points, then reverse the earn.

    A receipt of a member since merged stays theirs (its postings name them), but its points now
    sit with the member who stands for them: the return acts there (`_Holder`)."""
    purchase = _locked_receipt(session, store_id, receipt_no)
    program = purchase.program
    holder = _holder_of(
        session, purchase.member_id, purchase.buyer_status, campaigns=purchase.campaigns
    )
    original = [PurchaseLine.from_dict(line) for line in purchase.lines]
    returned = returned_after(original, purchase.returned_quantities, lines)
    full = all(q == line.quantity for q, line in zip(returned, original, strict=True))
    refunded = refunded_amount(original, returned)
    restore = _points_to_restore(purchase, refunded, restore_points, full)
    context = ledger.Context(
        actor=actor,
        partner_id=purchase.partner_id,
        store_id=store_id,
        channel=purchase.channel,
        external_ref=receipt_no,
        purchase_id=purchase.id,
    )
    if restore and purchase.redeem_entry_id is not None:
        reversal.reverse(
            session,
            entry_id=purchase.redeem_entry_id,
            policy=program.ledger,
            as_of=as_of,
            points=restore,
            context=context,
        )
        if holder.member_id != purchase.member_id:
            # Restored to the lots they came from, as on any member, then carried on as the
            # merge carried everything the buyer held.
            transfer_all(
                session,
                from_member_id=purchase.member_id,
                to_member_id=holder.member_id,
                as_of=as_of,
                context=context,
            )
    restored_total = purchase.points_restored + restore
    reversed_points, debt_added = _reverse_earn_down(
        session,
        purchase=purchase,
        program=program,
        holder=holder,
        kept=kept_lines(original, returned),
        points_still_used=purchase.points_used - restored_total,
        full=full,
        as_of=as_of,
        context=context,
    )
    status = "returned" if full else "partially_returned"
    _RECORD_RETURN.execute(
        session,
        {
            "purchase_id": purchase.id,
            "returned_quantities": returned,
            "refunded_amount": refunded,
            "points_restored": restored_total,
            "status": status,
        },
    )
    balance = ledger.balance(
        session, member_id=holder.member_id, policy=program.ledger, as_of=as_of
    )
    result = ReturnResult(
        purchase_id=purchase.id,
        member_id=holder.member_id,
        refunded_amount=refunded - purchase.refunded_amount,
        points_restored=restore,
        points_reversed=reversed_points,
        debt_added=debt_added,
        status=status,
        balance=balance,
    )
    publish(
        session,
        event_type="points.returned",
        payload={
            "member_id": holder.member_id,
            "purchase_id": purchase.id,
            "store_id": store_id,
            "receipt_no": receipt_no,
            "refunded_amount": result.refunded_amount,
            "points_restored": restore,
            "points_reversed": reversed_points,
            "full": full,
        },
        as_of=as_of,
        partner_id=purchase.partner_id,
        member_id=holder.member_id,
    )
    return result


@dataclass(frozen=True)
class _Holder:
    """Who holds a receipt's points now: its buyer, or the member a merge carried them to
    (through `transfers`, the merges' `merge_out` / `merge_in` entry pairs)."""

    member_id: int
    transfers: list[tuple[int, int]]


def _holder_of(session: Session, buyer_id: int, status: str, *, campaigns: bool) -> _Holder:
    if status != MemberStatus.MERGED:
        if campaigns:
            # The member's lock before the campaigns' counters, in the order a commit takes them:
            # a return gives budget back before it reverses points, and a commit of the same
            # member holding the lock and waiting for a counter would deadlock with it.
            ledger.lock_accounts(session, [buyer_id])
        return _Holder(buyer_id, [])
    survivor_id, transfers = merge.carried_to(session, buyer_id)
    # Both accounts locked now, in member-id order: the reversals below take both.
    ledger.lock_accounts(session, [buyer_id, survivor_id])
    return _Holder(survivor_id, transfers)


def _reverse_earn_down(
    session: Session,
    *,
    purchase: _Receipt,
    program: ProgramPolicies,
    holder: _Holder,
    kept: list[PurchaseLine],
    points_still_used: int,
    full: bool,
    as_of: datetime,
    context: ledger.Context,
) -> tuple[int, int]:
    """Reverse the earn to what the kept lines earn; returns (points reversed, debt added)."""
    earn_entry_id = purchase.earn_entry_id
    if earn_entry_id is None:
        return 0, 0
    still_earned = purchase.earn_amount - purchase.earn_reversed
    if full:
        target = 0
        if purchase.campaigns:  # without campaigns a receipt holds no grants
            rules.release_purchase(session, purchase_id=purchase.id, as_of=as_of)
    else:
        facts = rules.PurchaseFacts(
            member_id=purchase.member_id,
            lines=kept,
            points_used=points_still_used,
            occurred_at=purchase.occurred_at,
            partner_id=purchase.partner_id,
            store_id=purchase.store_id,
            channel=purchase.channel,
            purchase_id=purchase.id,
        )
        # reserve=True: the campaign grants of this purchase are recomputed and what the
        # returned lines had taken from budgets and caps is given back.
        rows = rules.earn_for_purchase(
            session,
            policies=program,
            purchase=facts,
            reserve=True,
            book=None if purchase.campaigns else service.NO_CAMPAIGNS,
            ranked=purchase.ranked,
        )
        target = breakdown_total(rows)
    to_reverse = max(still_earned - target, 0)
    if to_reverse == 0:
        return 0, 0
    if holder.member_id != purchase.member_id:
        carried = reversal.reverse_for_survivor(
            session,
            entry_id=earn_entry_id,
            survivor_id=holder.member_id,
            transfers=holder.transfers,
            as_of=as_of,
            points=to_reverse,
            context=context,
        )
        return to_reverse, carried.debt_change
    posted = reversal.reverse(
        session,
        entry_id=earn_entry_id,
        policy=program.ledger,
        as_of=as_of,
        points=to_reverse,
        context=context,
    )
    return to_reverse, posted.debt_change if posted else 0


def _locked_purchase(session: Session, store_id: int, receipt_no: str) -> Purchase:
    purchase = session.scalars(
        select(Purchase)
        .where(Purchase.store_id == store_id, Purchase.receipt_no == receipt_no)
        .with_for_update()
    ).one_or_none()
    if purchase is None:
        raise NotFound(
            ErrorCode.PURCHASE_NOT_FOUND, f"no purchase {receipt_no} at store {store_id}"
        )
    return purchase


def _entry_of(session: Session, purchase_id: int, entry_type: EntryType) -> JournalEntry | None:
    return session.scalars(
        select(JournalEntry).where(
            JournalEntry.purchase_id == purchase_id,
            JournalEntry.entry_type == str(entry_type),
        )
    ).first()


def confirm_purchase(session: Session, *, store_id: int, receipt_no: str, as_of: datetime) -> int:
    """Make an EC order's pending points available now (it shipped); returns the points."""
    purchase = _locked_purchase(session, store_id, receipt_no)
    earn_entry = _entry_of(session, purchase.id, EntryType.EARN)
    confirmed = 0
    if earn_entry is not None:
        # A buyer since merged: the pending points are the survivor's now.
        _, transfers = merge.carried_to(session, purchase.member_id)
        confirmed = ledger.confirm_lots(
            session, entry_id=earn_entry.id, as_of=as_of, transfers=transfers
        )
    if confirmed == 0:
        raise Conflict(ErrorCode.NOT_PENDING, f"purchase {receipt_no} has no pending points")
    return confirmed

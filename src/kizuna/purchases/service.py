"""Use cases of purchases: quote a receipt, and commit it (earn and redeem in one transaction).

Each use case is one transaction owned by the caller. A commit redeems first, then earns what the
rules give for the receipt. Returns and EC confirmations of receipts already recorded live in
`purchases.returns`, which shares this module's `HAS_RANKS`, `HAS_CAMPAIGNS` and `NO_CAMPAIGNS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, NotFound
from kizuna.db.prepared import Call, Check, Prepared, run_and_commit, run_together
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import Balance, EntryType, LotState
from kizuna.ledger.models import PointAccount
from kizuna.members.models import Member
from kizuna.outbox.service import publish_calls
from kizuna.partners import service as partners
from kizuna.partners.models import Program, Store
from kizuna.partners.service import ProgramPolicies
from kizuna.purchases.domain import PurchaseRequest, validate_purchase
from kizuna.purchases.errors import ErrorCode
from kizuna.purchases.models import Purchase
from kizuna.rules import service as rules
from kizuna.rules.book import CampaignBook
from kizuna.rules.domain import BreakdownRow, breakdown_total
from kizuna.rules.models import Campaign
from kizuna.tiers import service as tiers
from kizuna.tiers.models import RankPolicy


@dataclass(frozen=True)
class PurchaseQuote:
    """What a purchase would earn and whether its redemption would go through."""

    earned: int
    breakdown: list[BreakdownRow]
    redeemable: bool
    balance: Balance


@dataclass(frozen=True)
class PurchaseResult:
    purchase_id: int
    member_id: int
    earned: int
    redeemed: int
    breakdown: list[BreakdownRow]
    pending: bool
    earn_entry_id: int | None
    redeem_entry_id: int | None
    balance: Balance


def _member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("member_not_found", f"member {member_id} not found")
    return member


def _facts(
    request: PurchaseRequest, partner_id: int, purchase_id: int | None = None
) -> rules.PurchaseFacts:
    return rules.PurchaseFacts(
        member_id=request.member_id,
        lines=request.lines,
        points_used=request.redeem_points,
        occurred_at=request.occurred_at,
        partner_id=partner_id,
        store_id=request.store_id,
        channel=request.channel,
        purchase_id=purchase_id,
    )


def _setting(session: Session, request: PurchaseRequest) -> tuple[ProgramPolicies, int]:
    # One round trip for the member's status, their programme's policies and the store's
    # partner. The slow path only names what is missing.
    row = session.execute(
        select(Member.status, *partners.POLICY_COLUMNS, Store.partner_id)
        .join(Program, Program.id == Member.program_id)
        .join(Store, Store.id == request.store_id)
        .where(Member.id == request.member_id)
    ).first()
    if row is None:
        _member(session, request.member_id)
        partners.get_store(session, request.store_id)
        raise NotFound("member_not_found", f"member {request.member_id} not found")
    status, *program_columns, partner_id = row
    if status != "active":
        raise Conflict(ErrorCode.MEMBER_NOT_ACTIVE, f"member {request.member_id} is {status}")
    program = partners.policies_of(*program_columns)
    validate_purchase(request, program.point_value_yen)
    return program, partner_id


def quote_purchase(session: Session, *, request: PurchaseRequest, as_of: datetime) -> PurchaseQuote:
    """The points a purchase would earn, with the breakdown; writes nothing."""
    program, partner_id = _setting(session, request)
    rows = rules.earn_for_purchase(
        session, policies=program, purchase=_facts(request, partner_id), reserve=False
    )
    balance = ledger.balance(
        session, member_id=request.member_id, policy=program.ledger, as_of=as_of
    )
    return PurchaseQuote(
        earned=breakdown_total(rows),
        breakdown=rows,
        redeemable=request.redeem_points <= balance.available and not request.offline,
        balance=balance,
    )


# The hot path runs these statements for every receipt: built once, they are compiled once,
# where `insert(Purchase).values(...)` per call spends more CPU building the statement than the
# database spends running it (measured in docs/performance.md).
HAS_RANKS = exists().where(RankPolicy.program_id == Member.program_id)
HAS_CAMPAIGNS = exists().where(Campaign.program_id == Member.program_id)
_LOCKED_SETTING = Prepared(
    (
        select(
            Member.status,
            *partners.POLICY_COLUMNS,
            Store.partner_id,
            PointAccount.debt,
            HAS_RANKS.label("ranked"),
            HAS_CAMPAIGNS.label("campaigns"),
        )
        .join(Program, Program.id == Member.program_id)
        .join(Store, Store.id == bindparam("store_id"))
        .join(PointAccount, PointAccount.member_id == Member.id)
        .where(Member.id == bindparam("member_id"))
        .with_for_update(of=PointAccount)
    ),
    ("member_id", "store_id"),
)
NO_CAMPAIGNS = CampaignBook([])


@dataclass(frozen=True)
class _Locked:
    """What a commit reads in its first statement, with the member's account locked."""

    program: ProgramPolicies
    partner_id: int
    debt: int
    ranked: bool
    campaigns: bool


def _lock_setting(
    session: Session, request: PurchaseRequest, checks: Sequence[Check] = ()
) -> _Locked:
    # One round trip takes the member's lock (the ledger's `point_accounts` row, as every ledger
    # write does) and reads the member, programme, store's partner and whether the programme has
    # ranks or campaigns at all: without them the commit asks nothing more about either. The
    # caller's checks (the API's access check) go in the same round trip and are verified first.
    rows, *checked = run_together(
        session,
        [
            Call(_LOCKED_SETTING, {"member_id": request.member_id, "store_id": request.store_id}),
            *(check.call for check in checks),
        ],
    )
    for check, check_rows in zip(checks, checked, strict=True):
        check.verify(check_rows)
    if not rows:
        _setting(session, request)  # names what is missing
        raise NotFound("member_not_found", f"member {request.member_id} not found")
    status, *program_columns, partner_id, debt, ranked, campaigns = rows[0]
    if status != "active":
        raise Conflict(ErrorCode.MEMBER_NOT_ACTIVE, f"member {request.member_id} is {status}")
    program = partners.policies_of(*program_columns)
    validate_purchase(request, program.point_value_yen)
    return _Locked(program, partner_id, int(debt), bool(ranked), bool(campaigns))


# The purchase columns a commit writes, in the order the bulk path (`purchases.bulk`) copies them.
PURCHASE_COLUMNS = (
    "member_id",
    "partner_id",
    "store_id",
    "receipt_no",
    "channel",
    "occurred_at",
    "recorded_at",
    "total_amount",
    "lines",
    "returned_quantities",
    "points_used",
    "refunded_amount",
    "points_restored",
    "status",
)
# `INSERT … ON CONFLICT (store_id, receipt_no) DO NOTHING RETURNING id` of each engine: a taken
# receipt returns no row, without a separate look-up first.
_INSERT_PURCHASE = {
    name: Prepared(
        make(Purchase)
        .on_conflict_do_nothing(index_elements=["store_id", "receipt_no"])
        .returning(Purchase.id),
        PURCHASE_COLUMNS,
    )
    for name, make in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def _purchase_row(request: PurchaseRequest, as_of: datetime, partner_id: int) -> dict[str, Any]:
    return {
        "member_id": request.member_id,
        "partner_id": partner_id,
        "store_id": request.store_id,
        "receipt_no": request.receipt_no,
        "channel": request.channel,
        "occurred_at": request.occurred_at,
        "recorded_at": as_of,
        "total_amount": request.total_amount,
        "lines": [line.to_dict() for line in request.lines],
        "returned_quantities": [0] * len(request.lines),
        "points_used": request.redeem_points,
        "refunded_amount": 0,
        "points_restored": 0,
        "status": "completed",
    }


def commit_purchase(
    session: Session,
    *,
    request: PurchaseRequest,
    as_of: datetime,
    actor: str | None = None,
    checks: Sequence[Check] = (),
    then: Callable[[PurchaseResult], Sequence[Call]] | None = None,
    commit: bool = False,
) -> PurchaseResult:
    """Record a receipt: redeem the points paid with, earn the points it gives, atomically.

    `checks` (the caller's own, such as access) run with the first statement and refuse first.
    `then` gives, from the result, the caller's last statements (the API's idempotency record):
    they go out with the receipt's writes when nothing has to be read back first. `commit`: the
    transaction ends with them, its COMMIT in the same round trip (`db.prepared.run_and_commit`);
    nothing may follow in the transaction."""
    locked = _lock_setting(session, request, checks)
    program, partner_id = locked.program, locked.partner_id
    # The receipt, the member's open lots (read under the lock taken above) and the ids of the
    # journal entries to come, in one round trip; the redemption spends from the lots and the
    # balance returned is computed from them, the redemption's takes and the earn's new lots.
    entries = 2 if request.redeem_points else 1
    inserted, lot_rows, id_rows = run_together(
        session,
        [
            Call(
                _INSERT_PURCHASE[session.get_bind().dialect.name],
                _purchase_row(request, as_of, partner_id),
            ),
            ledger.open_lots_call(request.member_id),
            ledger.reserve_entry_ids(session, entries),
        ],
    )
    if not inserted:
        raise Conflict(
            ErrorCode.DUPLICATE_RECEIPT,
            f"receipt {request.receipt_no} was already recorded at this store",
        )
    purchase_id = int(inserted[0][0])
    entry_ids = ledger.reserved_entry_ids(session, id_rows, entries)
    lots = ledger.lot_states(lot_rows)
    context = ledger.Context(
        actor=actor,
        partner_id=partner_id,
        store_id=request.store_id,
        channel=request.channel,
        external_ref=request.receipt_no,
        purchase_id=purchase_id,
    )
    # The entries' writes go out together, in one round trip with the outbox events when
    # nothing has to read them first.
    plans: list[ledger.Planned] = []
    if request.redeem_points:
        plans.append(
            ledger.plan_redeem(
                member_id=request.member_id,
                points=request.redeem_points,
                policy=program.ledger,
                occurred_at=request.occurred_at,
                as_of=as_of,
                context=context,
                entry_type=EntryType.REDEEM,
                lots=lots,
                entry_id=entry_ids[0],
            )
        )
    every_plan = list(plans)
    if plans and locked.campaigns:
        # Campaign conditions may read the member's lots and history: the redemption first.
        ledger.run_planned(session, plans)
        plans = []
    rows = rules.earn_for_purchase(
        session,
        policies=program,
        purchase=_facts(request, partner_id, purchase_id),
        reserve=True,
        book=None if locked.campaigns else NO_CAMPAIGNS,
        ranked=locked.ranked,
    )
    earn_plan = ledger.plan_earn(
        member_id=request.member_id,
        rows=rows,
        policy=program.ledger,
        occurred_at=request.occurred_at,
        as_of=as_of,
        context=context,
        available_at=request.pending_until,
        entry_type=EntryType.EARN,
        debt=locked.debt,
        entry_id=entry_ids[-1],
    )
    if earn_plan:
        plans.append(earn_plan)
        every_plan.append(earn_plan)
    pending = (
        request.pending_until is not None and request.pending_until > as_of and bool(earn_plan)
    )
    earned_points = breakdown_total(rows)
    result = partial(
        PurchaseResult,
        purchase_id=purchase_id,
        member_id=request.member_id,
        earned=earned_points,
        redeemed=request.redeem_points,
        breakdown=rows,
        pending=pending,
        earn_entry_id=entry_ids[-1] if earn_plan else None,
        redeem_entry_id=entry_ids[0] if request.redeem_points else None,
    )
    events = _purchase_events(
        request, purchase_id, request.redeem_points, earned_points, rows, pending
    )
    publish = publish_calls(events, as_of=as_of, partner_id=partner_id, member_id=request.member_id)
    rolls = ledger.policy_rolls(program.ledger)
    balance = partial(
        ledger.balance, session, member_id=request.member_id, policy=program.ledger, as_of=as_of
    )
    if not locked.ranked and not rolls:
        # The result is known before anything is written: the writes, the events and the
        # caller's last statements (and with `commit` the COMMIT) go out in one round trip.
        known = _after(lots, every_plan, locked.debt)
        done = result(balance=balance(known=known))
        last = [*publish, *(then(done) if then else [])]
        ledger.run_planned(session, plans, then=last, commit=commit)
        return done
    if locked.ranked:
        # The rank counts this receipt's earn; its own events come before the points'.
        ledger.run_planned(session, plans)
        tiers.after_purchase(
            session, member_id=request.member_id, occurred_at=request.occurred_at, as_of=as_of
        )
        run_together(session, publish)
    else:
        ledger.run_planned(session, plans, then=publish)
    # Rolling expiry moved expiry dates in the database: the balance is read back.
    done = result(balance=balance(known=None if rolls else _after(lots, every_plan, locked.debt)))
    last = list(then(done)) if then else []
    if commit:
        run_and_commit(session, last)
    elif last:
        run_together(session, last)
    return done


def _after(
    lots: list[LotState], plans: Sequence[ledger.Planned], debt: int
) -> tuple[list[LotState], int]:
    """The member's open lots and debt after this commit, from what it read and plans to write
    (not for rolling expiry, which moves expiry dates in the database). The lots it opens have no
    ids yet: a balance reads their points and dates, never their ids."""
    taken: dict[int, int] = {}
    for lot_id, points in (take for plan in plans for take in plan.takes):
        taken[lot_id] = taken.get(lot_id, 0) + points
    after = [replace(lot, remaining=lot.remaining - taken.get(lot.id, 0)) for lot in lots]
    after = [lot for lot in after if lot.remaining > 0]
    for plan in plans:
        after += [
            LotState(
                0, new.kind, new.amount, new.amount, new.earned_at, new.available_at, new.expires_at
            )
            for new in plan.opened
        ]
        debt += plan.debt_change
    return after, debt


def _purchase_events(
    request: PurchaseRequest,
    purchase_id: int,
    redeemed: int,
    earned: int,
    breakdown: list[BreakdownRow],
    pending: bool,
) -> list[tuple[str, dict[str, Any]]]:
    """The outbox events of a committed purchase: `points.redeemed`, then `points.earned`."""
    common: dict[str, Any] = {
        "member_id": request.member_id,
        "purchase_id": purchase_id,
        "store_id": request.store_id,
        "receipt_no": request.receipt_no,
        "occurred_at": request.occurred_at.isoformat(),
    }
    events: list[tuple[str, dict[str, Any]]] = []
    if redeemed:
        events.append(("points.redeemed", {**common, "points": redeemed}))
    if earned:
        payload = {
            **common,
            "points": earned,
            "pending": pending,
            "breakdown": [row.to_dict() for row in breakdown],
        }
        events.append(("points.earned", payload))
    return events


def find_purchase(session: Session, *, store_id: int, receipt_no: str) -> Purchase | None:
    """The purchase with this receipt number at this store, if any."""
    return session.scalars(
        select(Purchase).where(Purchase.store_id == store_id, Purchase.receipt_no == receipt_no)
    ).one_or_none()

"""Use cases of the ledger: post earns, redemptions, adjustments and forfeits; the building blocks
they share with `reversal` (cancelling entries) and `transfer` (merges).

Every function takes the member's lock first (`lock_account`): a row lock on PostgreSQL, and on
SQLite the writer lock the caller's `Database.write()` already holds. It then reads the member's
open lots, lets `domain` decide, and writes the entry, its lots and allocations with Core
statements (the hot path avoids the ORM's unit of work). Functions `flush`, never commit: the caller
owns the transaction, so a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from kizuna.core.errors import Conflict, KizunaError, NotFound
from kizuna.db.bulk import allocate_ids, id_reservation, reserved_ids
from kizuna.db.prepared import Call, Prepared, run_and_commit, run_together
from kizuna.ledger.domain import (
    Balance,
    EntryType,
    ExpiryRule,
    LedgerPolicy,
    LotKind,
    LotState,
    Take,
    allocate_redemption,
    balance_of,
    redemption_key,
    split_debt_repayment,
)
from kizuna.ledger.errors import ErrorCode
from kizuna.ledger.models import Allocation, JournalEntry, Lot, PointAccount
from kizuna.rules.domain import BreakdownRow

EARN_LIKE = {EntryType.EARN, EntryType.ADJUST, EntryType.MIGRATE_IN, EntryType.MERGE_IN}
REDEEM_LIKE = {EntryType.REDEEM, EntryType.ADJUST}


@dataclass(frozen=True)
class Context:
    """Who and where an entry comes from; copied onto the journal entry."""

    actor: str | None = None
    partner_id: int | None = None
    store_id: int | None = None
    channel: str | None = None
    external_ref: str | None = None
    purchase_id: int | None = None
    reason_code: str | None = None
    reason: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "partner_id": self.partner_id,
            "store_id": self.store_id,
            "channel": self.channel,
            "external_ref": self.external_ref,
            "purchase_id": self.purchase_id,
            "reason_code": self.reason_code,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Posted:
    """A journal entry just written."""

    entry_id: int
    member_id: int
    entry_type: EntryType
    amount: int
    debt_change: int = 0
    takes: list[Take] = field(default_factory=list)
    lot_ids: list[int] = field(default_factory=list)
    lots: list[LotState] = field(default_factory=list)  # the lots it opened


def open_account(session: Session, *, member_id: int, as_of: datetime) -> None:
    """Create the point account of a new member."""
    session.execute(insert(PointAccount).values(member_id=member_id, debt=0, updated_at=as_of))


_LOCK_ACCOUNT = Prepared(
    select(PointAccount.debt)
    .where(PointAccount.member_id == bindparam("member_id"))
    .with_for_update(),
    ("member_id",),
)


def lock_account(session: Session, member_id: int) -> int:
    """Serialise writes for `member_id`; returns the member's debt."""
    return locked_debt(member_id, _LOCK_ACCOUNT.rows(session, {"member_id": member_id}))


def lock_account_call(member_id: int) -> Call:
    """`lock_account` as a call to run together with others (`db.prepared.run_together`); its
    rows go to `locked_debt`."""
    return Call(_LOCK_ACCOUNT, {"member_id": member_id})


def locked_debt(member_id: int, rows: Sequence[tuple[Any, ...]]) -> int:
    """The debt read from the member's account row (`member_not_found` without one)."""
    if not rows:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
    return int(rows[0][0])


def lock_accounts(session: Session, member_ids: Iterable[int]) -> dict[int, int]:
    """Take several members' write locks in member-id order (so that two such callers never
    deadlock); returns their debts."""
    return {member_id: lock_account(session, member_id) for member_id in sorted(set(member_ids))}


# The columns a `LotState` is read from (`lot_states`), in its order.
LOT_STATE_COLUMNS = (
    Lot.id,
    Lot.kind,
    Lot.amount,
    Lot.remaining,
    Lot.earned_at,
    Lot.available_at,
    Lot.expires_at,
)


def open_lots(session: Session, member_id: int) -> list[LotState]:
    """The member's lots that still hold points (expired ones too, until the expiry job runs)."""
    return lot_states(_OPEN_LOTS.rows(session, {"member_id": member_id}))


def open_lots_call(member_id: int) -> Call:
    """`open_lots` as a call to run together with others (`db.prepared.run_together`); its rows
    go to `lot_states`."""
    return Call(_OPEN_LOTS, {"member_id": member_id})


def lot_states(rows: Iterable[tuple[Any, ...]]) -> list[LotState]:
    return [
        LotState(lot_id, LotKind(kind), amount, remaining, earned, available, expires)
        for lot_id, kind, amount, remaining, earned, available, expires in rows
    ]


_OPEN_LOTS = Prepared(
    select(*LOT_STATE_COLUMNS).where(Lot.member_id == bindparam("member_id"), Lot.remaining > 0),
    ("member_id",),
)


# Built once: constructing an insert per call cost several times more CPU than executing it
# (measured on the purchase path, where these run for every receipt).
_ENTRIES = cast(Table, JournalEntry.__table__)
_LOTS = cast(Table, Lot.__table__)
_CONTEXT_KEYS = tuple(Context().columns())
_ENTRY_KEYS = (
    "member_id",
    "entry_type",
    "amount",
    "debt_change",
    "reverses_entry_id",
    "reversed_points",
    "occurred_at",
    "recorded_at",
    "breakdown",
    *_CONTEXT_KEYS,
)
_INSERT_ENTRY = Prepared(insert(_ENTRIES).returning(_ENTRIES.c.id), _ENTRY_KEYS)
# An entry whose id was reserved first (`db.bulk.id_reservation`): its lots and allocations can
# then go out in the same round trip.
_INSERT_RESERVED_ENTRY = Prepared(insert(_ENTRIES), ("id", *_ENTRY_KEYS))
# The columns a new lot is written with, in this order here and in `ledger.opening`'s COPY.
LOT_COLUMNS = (
    "member_id",
    "kind",
    "expiry_rule",
    "amount",
    "remaining",
    "earned_at",
    "available_at",
    "expires_at",
    "funding_partner_id",
    "source_entry_id",
    "expired_points",
)
_INSERT_LOT = Prepared(insert(_LOTS).returning(_LOTS.c.id), LOT_COLUMNS)
_INSERT_ALLOCATION = Prepared(
    insert(cast(Table, Allocation.__table__)), ("entry_id", "lot_id", "member_id", "points")
)
_TAKE_FROM_LOT = Prepared(
    update(_LOTS)
    .where(_LOTS.c.id == bindparam("taken_lot_id"))
    .values(remaining=_LOTS.c.remaining - bindparam("taken")),
    ("taken_lot_id", "taken"),
)


def insert_entry(
    session: Session,
    *,
    member_id: int,
    entry_type: EntryType,
    amount: int,
    occurred_at: datetime,
    as_of: datetime,
    context: Context,
    debt_change: int = 0,
    reverses_entry_id: int | None = None,
    reversed_points: int = 0,
    breakdown: list[dict[str, Any]] | None = None,
) -> int:
    entry_id = _INSERT_ENTRY.scalar(
        session,
        entry_row(
            member_id=member_id,
            entry_type=entry_type,
            amount=amount,
            occurred_at=occurred_at,
            as_of=as_of,
            context=context,
            debt_change=debt_change,
            reverses_entry_id=reverses_entry_id,
            reversed_points=reversed_points,
            breakdown=breakdown,
        ),
    )
    return int(entry_id)


def entry_row(
    *,
    member_id: int,
    entry_type: EntryType,
    amount: int,
    occurred_at: datetime,
    as_of: datetime,
    context: Context,
    debt_change: int = 0,
    reverses_entry_id: int | None = None,
    reversed_points: int = 0,
    breakdown: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The columns (`_ENTRY_KEYS`) of a new journal entry."""
    return {
        "member_id": member_id,
        "entry_type": str(entry_type),
        "amount": amount,
        "debt_change": debt_change,
        "reverses_entry_id": reverses_entry_id,
        "reversed_points": reversed_points,
        "occurred_at": occurred_at,
        "recorded_at": as_of,
        "breakdown": breakdown,
        **context.columns(),
    }


def take_calls(*, entry_id: int, member_id: int, takes: Sequence[Take]) -> list[Call]:
    """`apply_takes` as calls to run together with other statements."""
    if not takes:
        return []
    allocations = [
        {"entry_id": entry_id, "lot_id": lot_id, "member_id": member_id, "points": points}
        for lot_id, points in takes
    ]
    moves = [{"taken_lot_id": lot_id, "taken": points} for lot_id, points in takes]
    return [
        Call(_INSERT_ALLOCATION, allocations, many=True),
        Call(_TAKE_FROM_LOT, moves, many=True),
    ]


def apply_takes(session: Session, *, entry_id: int, member_id: int, takes: Sequence[Take]) -> None:
    """Record allocations (positive: taken, negative: given back) and move the lots' remaining."""
    calls = take_calls(entry_id=entry_id, member_id=member_id, takes=takes)
    if calls:
        run_together(session, calls)


@dataclass(frozen=True)
class NewLot:
    kind: LotKind
    expiry_rule: ExpiryRule
    amount: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    funding_partner_id: int | None


def insert_lots(
    session: Session, *, entry_id: int, member_id: int, lots: Sequence[NewLot]
) -> list[int]:
    return [int(_INSERT_LOT.scalar(session, lot_row(member_id, entry_id, lot))) for lot in lots]


def lot_row(member_id: int, entry_id: int, lot: NewLot) -> dict[str, Any]:
    """The columns (`LOT_COLUMNS`) of a new lot opened by entry `entry_id`."""
    return {
        "member_id": member_id,
        "kind": str(lot.kind),
        "expiry_rule": str(lot.expiry_rule),
        "amount": lot.amount,
        "remaining": lot.amount,
        "earned_at": lot.earned_at,
        "available_at": lot.available_at,
        "expires_at": lot.expires_at,
        "funding_partner_id": lot.funding_partner_id,
        "source_entry_id": entry_id,
        "expired_points": 0,
    }


def set_debt(session: Session, member_id: int, debt: int, as_of: datetime) -> None:
    run_together(session, [set_debt_call(member_id, debt, as_of)])


_SET_DEBT = Prepared(
    update(PointAccount)
    .where(PointAccount.member_id == bindparam("account_member_id"))
    .values(debt=bindparam("new_debt"), updated_at=bindparam("debt_updated_at")),
    ("account_member_id", "new_debt", "debt_updated_at"),
)


def set_debt_call(member_id: int, debt: int, as_of: datetime) -> Call:
    return Call(
        _SET_DEBT, {"account_member_id": member_id, "new_debt": debt, "debt_updated_at": as_of}
    )


_ROLL_EXPIRY = Prepared(
    update(_LOTS)
    .where(
        _LOTS.c.member_id == bindparam("rolled_member_id"),
        _LOTS.c.kind == bindparam("rolled_kind"),
        _LOTS.c.expiry_rule == str(ExpiryRule.ROLLING),
        _LOTS.c.remaining > 0,
        _LOTS.c.expires_at > bindparam("rolled_as_of"),
        _LOTS.c.expires_at < bindparam("new_expiry"),
    )
    .values(expires_at=bindparam("new_expiry")),
    ("rolled_member_id", "rolled_kind", "rolled_as_of", "new_expiry"),
)


def _roll_expiry(
    *, member_id: int, policy: LedgerPolicy, activity_at: datetime, as_of: datetime
) -> list[Call]:
    """Rolling expiry: an earn or a redeem moves every unexpired rolling lot's expiry forward."""
    return [
        Call(
            _ROLL_EXPIRY,
            {
                "rolled_member_id": member_id,
                "rolled_kind": str(kind),
                "rolled_as_of": as_of,
                "new_expiry": activity_at + timedelta(days=expiry.days),
            },
        )
        for kind, expiry in policy.expiry.items()
        if expiry.rule is ExpiryRule.ROLLING
    ]


def lots_for_earn(
    rows: Sequence[BreakdownRow],
    points_for_lots: int,
    *,
    policy: LedgerPolicy,
    occurred_at: datetime,
    available_at: datetime,
    funding_partner_id: int | None,
) -> list[NewLot]:
    """Group breakdown rows into lots by kind and expiry; debt repayment comes off limited first."""
    groups: dict[tuple[LotKind, datetime | None, ExpiryRule], int] = defaultdict(int)
    for row in rows:
        kind = LotKind(row.kind)
        if row.expires_at is not None:
            groups[(kind, row.expires_at, ExpiryRule.FIXED)] += row.points
        else:
            expiry = policy.expiry[kind]
            groups[(kind, expiry.expires_at(occurred_at, policy.tz), expiry.rule)] += row.points
    repay = sum(groups.values()) - points_for_lots
    lots: list[NewLot] = []
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] is not LotKind.LIMITED,))
    for (kind, expires_at, rule), points in ordered:
        repaid = min(repay, points)
        repay -= repaid
        if points - repaid > 0:
            lots.append(
                NewLot(
                    kind=kind,
                    expiry_rule=rule,
                    amount=points - repaid,
                    earned_at=occurred_at,
                    available_at=max(available_at, occurred_at),
                    expires_at=expires_at,
                    funding_partner_id=funding_partner_id,
                )
            )
    return lots


@dataclass(frozen=True)
class Planned:
    """The writes of one journal entry whose id is reserved, to run together with other
    statements (`run_planned`); `finish` makes the `Posted` from what its calls returned."""

    calls: list[Call]
    finish: Callable[[list[list[tuple[Any, ...]]]], Posted]
    # What the entry will do, known before it is written: the lots it takes from and the lots
    # (without ids yet) it opens, and its change to the member's debt.
    takes: list[Take] = field(default_factory=list)
    opened: list[NewLot] = field(default_factory=list)
    debt_change: int = 0


def run_planned(
    session: Session,
    plans: Sequence[Planned],
    *,
    then: Sequence[Call] = (),
    commit: bool = False,
) -> list[Posted]:
    """Run the plans' writes, and the calls `then`, in one round trip; returns what each posted.
    `commit`: they are the transaction's last statements, and its COMMIT goes with them
    (`db.prepared.run_and_commit`)."""
    calls = [call for plan in plans for call in plan.calls]
    results = (run_and_commit if commit else run_together)(session, [*calls, *then])
    posted: list[Posted] = []
    start = 0
    for plan in plans:
        posted.append(plan.finish(results[start : start + len(plan.calls)]))
        start += len(plan.calls)
    return posted


def reserve_entry_ids(session: Session, count: int) -> Call:
    """Ids for `count` journal entries, as a call to run with others (`reserved_entry_ids`)."""
    return id_reservation(session, _ENTRIES, count)


def reserved_entry_ids(session: Session, rows: Sequence[tuple[Any, ...]], count: int) -> list[int]:
    return reserved_ids(session, rows, count)


def _earned_points(rows: Sequence[BreakdownRow]) -> int:
    total = sum(row.points for row in rows)
    if total < 0 or any(row.points < 0 for row in rows):
        raise KizunaError(ErrorCode.INVALID_POINTS, "earned points cannot be negative")
    return total


def earn(
    session: Session,
    *,
    member_id: int,
    rows: Sequence[BreakdownRow],
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context = Context(),
    available_at: datetime | None = None,
    entry_type: EntryType = EntryType.EARN,
    debt: int | None = None,
) -> Posted | None:
    """Post the points of a breakdown; None when it adds up to nothing (see `plan_earn`).
    `debt`: the member's debt as the caller read it under the member's lock (None: take the lock
    here)."""
    total = _earned_points(rows)
    if debt is None:
        debt = lock_account(session, member_id)
    if total == 0:
        return None
    plan = plan_earn(
        member_id=member_id,
        rows=rows,
        policy=policy,
        occurred_at=occurred_at,
        as_of=as_of,
        context=context,
        available_at=available_at,
        entry_type=entry_type,
        debt=debt,
        entry_id=allocate_ids(session, _ENTRIES, 1)[0],
    )
    return run_planned(session, [plan])[0] if plan else None


def plan_earn(
    *,
    member_id: int,
    rows: Sequence[BreakdownRow],
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context,
    available_at: datetime | None,
    entry_type: EntryType,
    debt: int,
    entry_id: int,
) -> Planned | None:
    """The writes of an earn as entry `entry_id`; None when the breakdown adds up to nothing.

    An earn repays debt first and rolls rolling expiry; other entry types posted through here
    (adjustments, migrations, merges) do neither, as SPEC §4 decides. The rest becomes lots,
    pending until `available_at` if that is later.
    """
    total = _earned_points(rows)
    if total == 0:
        return None
    is_earn = entry_type is EntryType.EARN
    repaid, for_lots = split_debt_repayment(total, debt if is_earn else 0)
    entry = entry_row(
        member_id=member_id,
        entry_type=entry_type,
        amount=total,
        debt_change=-repaid,
        occurred_at=occurred_at,
        as_of=as_of,
        context=context,
        breakdown=[row.to_dict() for row in rows],
    )
    calls = [Call(_INSERT_RESERVED_ENTRY, {"id": entry_id, **entry})]
    if is_earn:
        calls += _roll_expiry(
            member_id=member_id, policy=policy, activity_at=occurred_at, as_of=as_of
        )
    lots = lots_for_earn(
        rows,
        for_lots,
        policy=policy,
        occurred_at=occurred_at,
        available_at=available_at or occurred_at,
        funding_partner_id=context.partner_id,
    )
    first_lot = len(calls)
    calls += [Call(_INSERT_LOT, lot_row(member_id, entry_id, lot)) for lot in lots]
    if repaid:
        calls.append(set_debt_call(member_id, debt - repaid, as_of))

    def finish(results: list[list[tuple[Any, ...]]]) -> Posted:
        lot_ids = [int(rows[0][0]) for rows in results[first_lot : first_lot + len(lots)]]
        opened = [
            LotState(
                lot_id,
                lot.kind,
                lot.amount,
                lot.amount,
                lot.earned_at,
                lot.available_at,
                lot.expires_at,
            )
            for lot_id, lot in zip(lot_ids, lots, strict=True)
        ]
        return Posted(entry_id, member_id, entry_type, total, -repaid, lot_ids=lot_ids, lots=opened)

    return Planned(calls, finish, opened=lots, debt_change=-repaid)


def policy_rolls(policy: LedgerPolicy) -> bool:
    """True when some kind of points uses rolling expiry."""
    return any(expiry.rule is ExpiryRule.ROLLING for expiry in policy.expiry.values())


def redeem(
    session: Session,
    *,
    member_id: int,
    points: int,
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context = Context(),
    entry_type: EntryType = EntryType.REDEEM,
    lots: list[LotState] | None = None,
) -> Posted:
    """Spend `points` of the member's available lots in redemption order, or refuse whole (see
    `plan_redeem`). `lots`: the member's open lots as the caller read them under the member's
    lock (None: lock and read here)."""
    if lots is None:
        lock_account(session, member_id)
        lots = open_lots(session, member_id)
    allocate_redemption(lots, points, as_of)  # refuses before an id is reserved
    plan = plan_redeem(
        member_id=member_id,
        points=points,
        policy=policy,
        occurred_at=occurred_at,
        as_of=as_of,
        context=context,
        entry_type=entry_type,
        lots=lots,
        entry_id=allocate_ids(session, _ENTRIES, 1)[0],
    )
    return run_planned(session, [plan])[0]


def plan_redeem(
    *,
    member_id: int,
    points: int,
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context,
    entry_type: EntryType,
    lots: list[LotState],
    entry_id: int,
) -> Planned:
    """The writes of a redemption of `points` from `lots` (the member's open lots, read under
    their lock) as entry `entry_id`; refuses with `insufficient_points` when they fall short."""
    takes = allocate_redemption(lots, points, as_of)
    entry = entry_row(
        member_id=member_id,
        entry_type=entry_type,
        amount=-points,
        occurred_at=occurred_at,
        as_of=as_of,
        context=context,
    )
    calls = [Call(_INSERT_RESERVED_ENTRY, {"id": entry_id, **entry})]
    calls += take_calls(entry_id=entry_id, member_id=member_id, takes=takes)
    if entry_type is EntryType.REDEEM:
        calls += _roll_expiry(
            member_id=member_id, policy=policy, activity_at=occurred_at, as_of=as_of
        )
    posted = Posted(entry_id, member_id, entry_type, -points, takes=takes)
    return Planned(calls, lambda _results: posted, takes=takes)


def get_entry(session: Session, entry_id: int) -> JournalEntry:
    """Journal entry `entry_id`, or `entry_not_found`."""
    entry = session.get(JournalEntry, entry_id)
    if entry is None:
        raise NotFound(ErrorCode.ENTRY_NOT_FOUND, f"journal entry {entry_id} not found")
    return entry


def forfeit(
    session: Session, *, member_id: int, as_of: datetime, context: Context = Context()
) -> Posted | None:
    """Take every point the member still holds (pending too) and write off their debt."""
    debt = lock_account(session, member_id)
    lots = [lot for lot in open_lots(session, member_id) if not lot.is_expired(as_of)]
    takes = [(lot.id, lot.remaining) for lot in sorted(lots, key=redemption_key)]
    held = sum(points for _, points in takes)
    if held == 0 and debt == 0:
        return None
    entry_id = insert_entry(
        session,
        member_id=member_id,
        entry_type=EntryType.FORFEIT,
        amount=debt - held,
        debt_change=-debt,
        occurred_at=as_of,
        as_of=as_of,
        context=context,
    )
    apply_takes(session, entry_id=entry_id, member_id=member_id, takes=takes)
    if debt:
        set_debt(session, member_id, 0, as_of)
    return Posted(entry_id, member_id, EntryType.FORFEIT, debt - held, -debt, takes=takes)


def balance(
    session: Session,
    *,
    member_id: int,
    policy: LedgerPolicy,
    as_of: datetime,
    known: tuple[list[LotState], int] | None = None,
) -> Balance:
    """The member's balance view at `as_of`; from `known` (open lots, debt) when the caller
    already holds them under the member's lock, else read."""
    if known is not None:
        return balance_of(known[0], known[1], as_of, policy.tz)
    debt, lots = run_together(
        session,
        [Call(_DEBT, {"member_id": member_id}), open_lots_call(member_id)],
    )
    return balance_of(lot_states(lots), locked_debt(member_id, debt), as_of, policy.tz)


_DEBT = Prepared(
    select(PointAccount.debt).where(PointAccount.member_id == bindparam("member_id")),
    ("member_id",),
)


def confirm_lots(
    session: Session,
    *,
    entry_id: int,
    as_of: datetime,
    transfers: Sequence[tuple[int, int]] = (),
) -> int:
    """Make the pending lots of an earn available now; returns how many points became available.
    After a merge its points are the survivor's copies of those lots (`transfers`, as for
    `carried_lots`): those are the ones confirmed."""
    own = select(Lot.id).where(Lot.source_entry_id == entry_id)
    lot_ids = (
        carried_lots(session, lot_ids=session.scalars(own).all(), transfers=transfers)
        if transfers
        else None
    )
    pending = select(Lot.id, Lot.remaining).where(Lot.available_at > as_of, Lot.remaining > 0)
    rows = session.execute(
        pending.where(Lot.id.in_(lot_ids) if lot_ids is not None else Lot.id.in_(own))
    ).all()
    if rows:
        session.execute(
            update(Lot).where(Lot.id.in_([row.id for row in rows])).values(available_at=as_of)
        )
    return sum(row.remaining for row in rows)


def entries_of(session: Session, member_ids: Iterable[int]) -> list[JournalEntry]:
    """All journal entries of the given members, oldest first."""
    return list(
        session.scalars(
            select(JournalEntry)
            .where(JournalEntry.member_id.in_(list(member_ids)))
            .order_by(JournalEntry.id)
        )
    )


def carried_lots(
    session: Session, *, lot_ids: Iterable[int], transfers: Sequence[tuple[int, int]]
) -> list[int]:
    """The lots `lot_ids` and their copies through `transfers` — (`merge_out`, `merge_in`) entry
    pairs of `transfer.transfer_all`, oldest first — whose `merge_in` opens one lot per lot its
    `merge_out` took, in the same order."""
    lineage = list(lot_ids)
    current = set(lineage)
    for out_id, in_id in transfers:
        taken = session.execute(
            select(Allocation.lot_id, Allocation.points)
            .where(Allocation.entry_id == out_id)
            .order_by(Allocation.id)
        ).all()
        opened = session.execute(
            select(Lot.id, Lot.amount).where(Lot.source_entry_id == in_id).order_by(Lot.id)
        ).all()
        if [row.points for row in taken] != [row.amount for row in opened]:
            raise Conflict(
                ErrorCode.NOT_REVERSIBLE,
                f"entries {out_id} and {in_id} are not one transfer of the same lots",
            )
        copies = [
            copy.id for took, copy in zip(taken, opened, strict=True) if took.lot_id in current
        ]
        lineage += copies
        current = set(copies)
    return lineage

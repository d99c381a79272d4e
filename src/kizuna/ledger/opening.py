"""Opening balances of members created in bulk (a legacy import), and the bulk writes they need.

`open_balances` writes, for each new member, what `open_account` and then
`earn(entry_type=MIGRATE_IN)` would write one member at a time — the account, one entry of the
breakdown's total and the lots `lots_for_earn` makes of it — for thousands of members in a
handful of statements: ids are taken from the tables' sequences first, then the rows are loaded
with `COPY` on PostgreSQL and one `executemany` per table on SQLite. The members must
have been created in the caller's transaction: nobody else can see them, so there is no lock to
take, no debt to repay and no rolling expiry to move (a `migrate_in` is not an earn).

The loading itself (`db.bulk.allocate_ids`, `db.bulk.write_rows`) serves any table whose rows
reference each other (the legacy-card import uses it for members, profiles and cards).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.base import Base
from kizuna.db.bulk import allocate_ids, write_rows
from kizuna.ledger.domain import EntryType, LedgerPolicy
from kizuna.ledger.errors import ErrorCode
from kizuna.ledger.models import JournalEntry, Lot, PointAccount
from kizuna.ledger.service import LOT_COLUMNS, Context, lots_for_earn
from kizuna.ledger.transfer import Opening
from kizuna.rules.domain import BreakdownRow


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


_ACCOUNTS = _table(PointAccount)
_ENTRIES = _table(JournalEntry)
_LOTS = _table(Lot)

_ENTRY_COLUMNS = (
    "id",
    "member_id",
    "entry_type",
    "amount",
    "debt_change",
    "reversed_points",
    "occurred_at",
    "recorded_at",
    "breakdown",
    "actor",
    "partner_id",
    "store_id",
    "channel",
    "external_ref",
    "purchase_id",
    "reason_code",
    "reason",
)
_LOT_COLUMNS = LOT_COLUMNS


class BalanceOpener:
    """Posts opening balances, chunk after chunk, with one policy, time and context.

    Per member it writes exactly what `open_account` and `earn(…, entry_type=entry_type)` write:
    an account without debt; when the breakdown adds up to more than nothing, one entry of that
    total (the breakdown kept, nothing repaid) and the lots `lots_for_earn` makes of it. The
    breakdown's JSON and lots depend on nothing but the breakdown here, so they are worked out
    once per distinct breakdown (legacy balances repeat a lot) and remembered.
    """

    MEMO_LIMIT = 100_000

    def __init__(
        self,
        *,
        policy: LedgerPolicy,
        occurred_at: datetime,
        as_of: datetime,
        context: Context = Context(),
        entry_type: EntryType = EntryType.MIGRATE_IN,
    ) -> None:
        self.policy = policy
        self.occurred_at = occurred_at
        self.as_of = as_of
        self.context = context
        self.entry_type = str(entry_type)
        columns = context.columns()
        self._about = tuple(columns[name] for name in _ENTRY_COLUMNS[9:])
        self._memo: dict[tuple[BreakdownRow, ...], _Posting] = {}

    def _posting(self, rows: Sequence[BreakdownRow]) -> _Posting:
        key = tuple(rows)
        posting = self._memo.get(key)
        if posting is None:
            total = sum(row.points for row in rows)
            lots = lots_for_earn(
                rows,
                total,
                policy=self.policy,
                occurred_at=self.occurred_at,
                available_at=self.occurred_at,
                funding_partner_id=self.context.partner_id,
            )
            posting = _Posting(
                total,
                [row.to_dict() for row in rows],
                [
                    (
                        str(lot.kind),
                        str(lot.expiry_rule),
                        lot.amount,
                        lot.amount,
                        lot.earned_at,
                        lot.available_at,
                        lot.expires_at,
                        lot.funding_partner_id,
                    )
                    for lot in lots
                ],
            )
            if len(self._memo) >= self.MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = posting
        return posting

    def open(self, session: Session, openings: Sequence[Opening]) -> list[int]:
        """Open the accounts of members created in this transaction and post their balances;
        returns the entry ids, in the order of the openings that post one."""
        if any(row.points < 0 for opening in openings for row in opening.rows):
            raise KizunaError(ErrorCode.INVALID_POINTS, "earned points cannot be negative")
        if not openings:
            return []
        as_of, occurred_at = self.as_of, self.occurred_at
        write_rows(
            session,
            _ACCOUNTS,
            ("member_id", "debt", "updated_at"),
            [(opening.member_id, 0, as_of) for opening in openings],
        )
        posting = [
            (opening.member_id, entry)
            for opening in openings
            if (entry := self._posting(opening.rows)).total > 0
        ]
        entry_ids = allocate_ids(session, _ENTRIES, len(posting))
        entry_type, about = self.entry_type, self._about
        write_rows(
            session,
            _ENTRIES,
            _ENTRY_COLUMNS,
            [
                (
                    entry_id,
                    member_id,
                    entry_type,
                    entry.total,
                    0,
                    0,
                    occurred_at,
                    as_of,
                    entry.breakdown,
                    *about,
                )
                for entry_id, (member_id, entry) in zip(entry_ids, posting, strict=True)
            ],
        )
        write_rows(
            session,
            _LOTS,
            _LOT_COLUMNS,
            [
                (member_id, *lot, entry_id, 0)
                for entry_id, (member_id, entry) in zip(entry_ids, posting, strict=True)
                for lot in entry.lots
            ],
        )
        return entry_ids


class _Posting(NamedTuple):
    total: int
    breakdown: list[dict[str, Any]]
    lots: list[tuple[Any, ...]]  # _LOT_COLUMNS between member_id and source_entry_id


def open_balances(
    session: Session,
    *,
    openings: Sequence[Opening],
    policy: LedgerPolicy,
    occurred_at: datetime,
    as_of: datetime,
    context: Context = Context(),
    entry_type: EntryType = EntryType.MIGRATE_IN,
) -> list[int]:
    """Open the accounts of members created in this transaction and post their opening balances
    (one chunk; see `BalanceOpener`). Returns the entry ids, in the order of the openings that
    post one."""
    opener = BalanceOpener(
        policy=policy, occurred_at=occurred_at, as_of=as_of, context=context, entry_type=entry_type
    )
    return opener.open(session, openings)

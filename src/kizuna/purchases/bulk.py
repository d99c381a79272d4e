"""Offline receipts posted as a set: the earning half of `commit_purchase`, for many at once.

An offline batch brings thousands of receipts that only earn (offline redemption is refused). One
by one, each costs a transaction's worth of round trips; here a chunk of them is evaluated in
Python — base earn, rank bonus, campaigns with their budgets, caps and once-per-period keys, rank
upgrades — against state read once per chunk under the members' locks, and written with one
multi-row statement per table (COPY on PostgreSQL). The result is what `commit_purchase` would
write for the same receipts one after another in the order given: the same purchases, journal
entries, lots, grants, counters, rank changes and outbox events.

Only what this module can reproduce exactly is posted here; everything else is left to the caller
(`None`) for the one-by-one service: a member who is missing, inactive, in debt or has duplicates
merged into it (名寄せ: their grants count towards its caps), a programme with rolling expiry,
campaigns whose conditions read the member's history or lots, a store that does not exist, a
receipt number already taken, a receipt the service would refuse.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii as _q
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Table,
    bindparam,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.bulk import EncodedJson, allocate_ids, write_rows
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import EntryType
from kizuna.ledger.models import JournalEntry, Lot, PointAccount
from kizuna.members import service as members
from kizuna.members.models import Member, MemberMerge
from kizuna.outbox.models import OutboxEvent
from kizuna.outbox.service import EVENT_COLUMNS
from kizuna.partners import service as partners
from kizuna.partners.models import Store
from kizuna.partners.service import ProgramPolicies
from kizuna.purchases.domain import PurchaseRequest, validate_purchase
from kizuna.purchases.models import Purchase
from kizuna.purchases.service import NO_CAMPAIGNS, PURCHASE_COLUMNS
from kizuna.rules import service as rules
from kizuna.rules.book import CampaignBook
from kizuna.rules.campaigns import Award, choose_awards
from kizuna.rules.domain import BreakdownRow, PurchaseLine, base_earn
from kizuna.rules.facts import HISTORY_FIELDS, LOT_FIELDS, Facts, MemberFacts, event_facts
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage, CampaignVersion
from kizuna.rules.sql import PROFILE_FIELDS
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Metric, RankRules, TierSpec, Window
from kizuna.tiers.models import MemberRank, RankChange

CHANNEL = "pos"
log = logging.getLogger("kizuna.purchases.bulk")
# Conditions on these fields need the member's state as each earlier receipt of the chunk left it.
_STATEFUL_FIELDS = HISTORY_FIELDS | LOT_FIELDS


class OfflineReceipt(NamedTuple):
    """A receipt from an offline till: it earns, it redeems nothing. (Named tuples here and
    below: thousands are made per chunk, and a tuple is several times cheaper to build.)"""

    member_id: int
    store_id: int
    receipt_no: str
    occurred_at: datetime
    lines: Sequence[PurchaseLine]


class Posted(NamedTuple):
    """A receipt posted here: what `commit_purchase` would have answered about it."""

    purchase_id: int
    member_id: int
    earned: int


class LockedMember(NamedTuple):
    """A member as read under their account lock."""

    id: int
    status: str
    program_id: int
    debt: int
    joined_at: datetime
    join_channel: str | None
    join_store_id: int | None
    # Someone was merged into the member: caps and once-only campaigns count their grants too,
    # which the one-by-one service reads.
    absorbed: bool


def lock_members(session: Session, member_ids: Sequence[int]) -> dict[int, LockedMember]:
    """Take the members' account locks in id order (the order every writer uses, so that chunks
    and API calls queue rather than deadlock) and read what posting needs; missing ids are
    absent."""
    if not member_ids:
        return {}
    rows = session.execute(
        select(
            Member.id,
            Member.status,
            Member.program_id,
            PointAccount.debt,
            Member.joined_at,
            Member.join_channel,
            Member.join_store_id,
            exists().where(MemberMerge.survivor_id == Member.id),
        )
        .join(PointAccount, PointAccount.member_id == Member.id)
        .where(Member.id.in_(sorted(set(member_ids))))
        .order_by(Member.id)
        .with_for_update(of=PointAccount)
    )
    return {row.id: LockedMember(*row) for row in rows}


def post_offline(
    session: Session,
    receipts: Sequence[OfflineReceipt],
    *,
    locked: Mapping[int, LockedMember],
    as_of: datetime,
    actor: str | None,
) -> list[Posted | None]:
    """Post the receipts it can, in the order given, as one set; None for each receipt left to
    `commit_purchase`. `locked`: the receipts' members, locked by `lock_members`. A failure while
    writing (a receipt number taken meanwhile by a concurrent till, text the database cannot store)
    leaves nothing behind and every receipt to the caller, whose one-by-one posting then names
    the receipt at fault."""
    chunk = _Chunk(session, as_of=as_of, actor=actor, locked=locked)
    chosen = chunk.eligible(receipts)
    if not any(chosen):
        return [None] * len(receipts)
    driver_error = session.get_bind().dialect.loaded_dbapi.Error
    try:
        with session.begin_nested():
            return chunk.post(receipts, chosen)
    except (SQLAlchemyError, driver_error, UnicodeError):
        # COPY goes through the driver, whose errors SQLAlchemy does not wrap.
        log.warning("posting a set of receipts failed; they go one by one", exc_info=True)
        return [None] * len(receipts)


@dataclass
class _Programme:
    policies: ProgramPolicies
    rolls: bool
    ranks: RankRules | None
    bounds: list[datetime] = field(default_factory=list)
    books: dict[int, CampaignBook] = field(default_factory=dict)


class _Chunk:
    """The state a set of receipts is evaluated against, and the rows it will write."""

    def __init__(
        self,
        session: Session,
        *,
        as_of: datetime,
        actor: str | None,
        locked: Mapping[int, LockedMember],
    ) -> None:
        self.session, self.as_of, self.actor, self.locked = session, as_of, actor, locked
        self.programmes: dict[int, _Programme] = {}
        self.partner_of: dict[int, int] = {}

    # --- what can be posted here -------------------------------------------------------------

    def eligible(self, receipts: Sequence[OfflineReceipt]) -> list[bool]:
        """Which receipts this module posts; a member's receipts go all here or all not."""
        stores = {receipt.store_id for receipt in receipts}
        self.partner_of = dict(
            self.session.execute(
                select(Store.id, Store.partner_id).where(Store.id.in_(stores))
            ).all()
        )
        times: dict[int, list[datetime]] = defaultdict(list)
        for receipt in receipts:
            member = self.locked.get(receipt.member_id)
            if member is not None:
                times[member.program_id].append(receipt.occurred_at)
        for program_id, moments in times.items():
            self.programmes[program_id] = self._programme(program_id, min(moments), max(moments))
        refused_members: set[int] = set()
        chosen = [False] * len(receipts)
        for number, receipt in enumerate(receipts):
            if self._member_refused(receipt):
                refused_members.add(receipt.member_id)
            elif receipt.store_id in self.partner_of and self._valid(receipt):
                chosen[number] = True
        taken = self._receipts_taken([r for r, ok in zip(receipts, chosen, strict=True) if ok])
        seen: set[tuple[int, str]] = set()
        for number, receipt in enumerate(receipts):
            key = (receipt.store_id, receipt.receipt_no)
            if receipt.member_id in refused_members or key in taken or key in seen:
                chosen[number] = False
            if chosen[number]:
                seen.add(key)
        return chosen

    def _member_refused(self, receipt: OfflineReceipt) -> bool:
        member = self.locked.get(receipt.member_id)
        if member is None or member.status != "active" or member.debt or member.absorbed:
            return True
        programme = self.programmes[member.program_id]
        if programme.rolls:
            return True
        book = self._book(programme, receipt.occurred_at)
        return bool(book.fields_for("purchase") & _STATEFUL_FIELDS)

    def _valid(self, receipt: OfflineReceipt) -> bool:
        programme = self.programmes[self.locked[receipt.member_id].program_id]
        try:
            validate_purchase(_request(receipt), programme.policies.point_value_yen)
        except KizunaError:
            return False
        return True

    def _receipts_taken(self, receipts: Sequence[OfflineReceipt]) -> set[tuple[int, str]]:
        """Receipts already recorded (the service would refuse them as duplicates)."""
        by_store: dict[int, list[str]] = defaultdict(list)
        for receipt in receipts:
            by_store[receipt.store_id].append(receipt.receipt_no)
        connection = self.session.connection()
        taken: set[tuple[int, str]] = set()
        for store_id, numbers in sorted(by_store.items()):
            if connection.dialect.name == "postgresql":
                # One array parameter (binary: cheapest to encode) instead of a thousand values.
                found = connection.exec_driver_sql(
                    "SELECT receipt_no FROM purchases WHERE store_id = %s AND receipt_no = ANY(%b)",
                    (store_id, numbers),
                ).scalars()
                taken.update((store_id, number) for number in found)
                continue
            for start in range(0, len(numbers), 500):
                taken.update(
                    (store_id, number)
                    for number in self.session.scalars(
                        select(Purchase.receipt_no).where(
                            Purchase.store_id == store_id,
                            Purchase.receipt_no.in_(numbers[start : start + 500]),
                        )
                    )
                )
        return taken

    def _programme(self, program_id: int, first: datetime, last: datetime) -> _Programme:
        policies = partners.policies(self.session, program_id)
        programme = _Programme(
            policies=policies,
            rolls=ledger.policy_rolls(policies.ledger),
            ranks=tiers.rules_of(self.session, program_id),
        )
        # The instants at which a campaign version comes into or goes out of force between the
        # first and the last receipt: between two of them the campaigns in force do not change.
        windows = self.session.execute(
            select(
                CampaignVersion.effective_from,
                CampaignVersion.effective_to,
                CampaignVersion.starts_at,
                CampaignVersion.ends_at,
            )
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(
                Campaign.program_id == program_id,
                CampaignVersion.effective_from <= last,
                or_(CampaignVersion.effective_to.is_(None), CampaignVersion.effective_to > first),
                CampaignVersion.starts_at <= last,
                CampaignVersion.ends_at > first,
            )
        ).all()
        programme.bounds = sorted({moment for row in windows for moment in row if moment})
        return programme

    def _book(self, programme: _Programme, at: datetime) -> CampaignBook:
        segment = bisect_right(programme.bounds, at)
        book = programme.books.get(segment)
        if book is None:
            book = programme.books[segment] = (
                rules.campaigns_in_force(
                    self.session, program_id=programme.policies.program_id, at=at
                )
                if programme.bounds
                else NO_CAMPAIGNS
            )
        return book

    # --- posting -------------------------------------------------------------------------------

    def post(
        self, receipts: Sequence[OfflineReceipt], chosen: Sequence[bool]
    ) -> list[Posted | None]:
        picked = [r for r, ok in zip(receipts, chosen, strict=True) if ok]
        member_ids = sorted({r.member_id for r in picked})
        purchase_ids = allocate_ids(self.session, _table(Purchase), len(picked))
        state = _State.load(self.session, member_ids, self.programmes, self.locked, self.as_of)
        writes = _Writes()
        results: dict[int, Posted] = {}
        for receipt, purchase_id in zip(picked, purchase_ids, strict=True):
            results[id(receipt)] = self._post_one(receipt, purchase_id, state, writes)
        writes.entry_ids = allocate_ids(self.session, _table(JournalEntry), len(writes.entries))
        writes.flush(self.session)
        state.flush()
        return [results.get(id(receipt)) for receipt in receipts]

    def _post_one(
        self, receipt: OfflineReceipt, purchase_id: int, state: _State, writes: _Writes
    ) -> Posted:
        member = self.locked[receipt.member_id]
        programme = self.programmes[member.program_id]
        policies = programme.policies
        partner_id = self.partner_of[receipt.store_id]
        at = receipt.occurred_at
        total_amount = sum(line.amount for line in receipt.lines)
        writes.purchases.append(
            (
                purchase_id,
                member.id,
                partner_id,
                receipt.store_id,
                receipt.receipt_no,
                CHANNEL,
                at,
                self.as_of,
                total_amount,
                _lines_json(receipt.lines),
                _zeros(len(receipt.lines)),
                0,
                0,
                0,
                "completed",
            )
        )
        # rules.earn_for_purchase, with the state of this chunk instead of a query per receipt
        base = base_earn(receipt.lines, 0, policies.earn)
        rows = [base] if base.points else []
        rank = state.rank_at(programme, member.id, at)
        if rank is not None and (bonus := rank.bonus(base.points)):
            rows.append(BreakdownRow(rule="rank", label=f"ランク特典 ({rank.name})", points=bonus))
        book = self._book(programme, at)
        if book.rules:
            tz = policies.ledger.tz
            facts = Facts(
                as_of=at,
                tz=tz,
                event=event_facts(
                    event_type="purchase",
                    occurred_at=at,
                    tz=tz,
                    channel=CHANNEL,
                    store=receipt.store_id,
                    partner=partner_id,
                    amount=total_amount,
                    lines=receipt.lines,
                ),
                member=state.member_facts(member, book.fields_for("purchase"), rank),
            )
            candidates = book.candidates(
                facts,
                lines=receipt.lines,
                points_used_yen=0,
                policy=policies.earn,
                base_points=base.points,
            )
            awards = state.settle(candidates, member.id, purchase_id, facts, writes)
            rows += [award.rule.row(award.points, at) for award in awards]
        earned = sum(row.points for row in rows)
        # ledger.earn, for a member without debt
        if earned:
            breakdown = _breakdown_json(rows)
            entry = len(writes.entries)
            writes.entries.append(
                (
                    member.id,
                    str(EntryType.EARN),
                    earned,
                    0,
                    0,
                    at,
                    self.as_of,
                    EncodedJson(breakdown),
                    self.actor,
                    partner_id,
                    receipt.store_id,
                    CHANNEL,
                    receipt.receipt_no,
                    purchase_id,
                )
            )
            # The ledger's own grouping of an earn's rows into lots, so that the lots are its lots.
            for lot in ledger.lots_for_earn(
                rows,
                earned,
                policy=policies.ledger,
                occurred_at=at,
                available_at=at,
                funding_partner_id=partner_id,
            ):
                writes.lots.append(
                    (
                        entry,
                        member.id,
                        str(lot.kind),
                        str(lot.expiry_rule),
                        lot.amount,
                        lot.amount,
                        lot.earned_at,
                        lot.available_at,
                        lot.expires_at,
                        lot.funding_partner_id,
                    )
                )
        if programme.ranks is not None:
            state.after_purchase(programme.ranks, member, at, total_amount, earned, writes)
        if earned:
            writes.events.append(
                (
                    "points.earned",
                    # The payload `purchases.service` publishes, with the breakdown encoded once.
                    EncodedJson(
                        f'{{"member_id": {member.id}, "purchase_id": {purchase_id},'
                        f' "store_id": {receipt.store_id},'
                        f' "receipt_no": {_q(receipt.receipt_no)},'
                        f' "occurred_at": "{at.isoformat()}", "points": {earned},'
                        f' "pending": false, "breakdown": {breakdown}}}'
                    ),
                    partner_id,
                    member.id,
                    self.as_of,
                )
            )
        return Posted(purchase_id, member.id, earned)


# JSON of the shapes every receipt writes, as `json.dumps` of their `to_dict()` would encode
# them, without building the dicts (the encoder's generic path cost more than the rest of a row).


def _lines_json(lines: Sequence[PurchaseLine]) -> EncodedJson:
    """A receipt's lines (`PurchaseLine.to_dict()` of each)."""
    return EncodedJson(
        "["
        + ", ".join(
            f'{{"sku": {_q(line.sku)}, "amount": {int(line.amount)},'
            f' "quantity": {int(line.quantity)},'
            f' "category": {"null" if line.category is None else _q(line.category)},'
            f' "brand": {"null" if line.brand is None else _q(line.brand)}}}'
            for line in lines
        )
        + "]"
    )


_ROW_PARTS: dict[tuple[str, str, str, datetime | None], tuple[str, str]] = {}


def _breakdown_json(rows: Sequence[BreakdownRow]) -> str:
    """An earn's breakdown (`BreakdownRow.to_dict()` of each row)."""
    parts = []
    for row in rows:
        key = (row.rule, row.label, row.kind, row.expires_at)
        around = _ROW_PARTS.get(key)
        if around is None:
            if len(_ROW_PARTS) > 10_000:
                _ROW_PARTS.clear()
            expires = "null" if row.expires_at is None else f'"{row.expires_at.isoformat()}"'
            around = _ROW_PARTS[key] = (
                f'{{"rule": {_q(row.rule)}, "label": {_q(row.label)}, "points": ',
                f', "kind": {_q(row.kind)}, "expires_at": {expires}}}',
            )
        parts.append(f"{around[0]}{int(row.points)}{around[1]}")
    return "[" + ", ".join(parts) + "]"


_ZEROS: dict[int, EncodedJson] = {}


def _zeros(count: int) -> EncodedJson:
    """A receipt's `returned_quantities` before any return."""
    found = _ZEROS.get(count)
    if found is None:
        found = _ZEROS[count] = EncodedJson(json.dumps([0] * count))
    return found


def _request(receipt: OfflineReceipt) -> PurchaseRequest:
    return PurchaseRequest(
        member_id=receipt.member_id,
        store_id=receipt.store_id,
        receipt_no=receipt.receipt_no,
        occurred_at=receipt.occurred_at,
        lines=receipt.lines,
        channel=CHANNEL,
        offline=True,
    )


@dataclass
class _Writes:
    """Rows to write, in the order the one-by-one service would have written them."""

    purchases: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    entry_ids: list[int] = field(default_factory=list)
    lots: list[tuple[Any, ...]] = field(default_factory=list)  # first item: index of the entry
    grants: list[tuple[Any, ...]] = field(default_factory=list)
    rank_changes: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def flush(self, session: Session) -> None:
        write_rows(session, _table(Purchase), _PURCHASE_COLUMNS, self.purchases)
        write_rows(
            session,
            _table(JournalEntry),
            _ENTRY_COLUMNS,
            [
                (entry_id, *entry)
                for entry_id, entry in zip(self.entry_ids, self.entries, strict=True)
            ],
        )
        write_rows(
            session,
            _table(Lot),
            _LOT_COLUMNS,
            [(self.entry_ids[lot[0]], *lot[1:]) for lot in self.lots],
        )
        write_rows(session, _table(CampaignGrant), _GRANT_COLUMNS, self.grants)
        write_rows(session, _table(RankChange), _RANK_CHANGE_COLUMNS, self.rank_changes)
        write_rows(session, _table(OutboxEvent), _EVENT_COLUMNS, self.events)


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


_PURCHASE_COLUMNS = ("id", *PURCHASE_COLUMNS)
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
)
_LOT_COLUMNS = (
    "source_entry_id",
    "member_id",
    "kind",
    "expiry_rule",
    "amount",
    "remaining",
    "earned_at",
    "available_at",
    "expires_at",
    "funding_partner_id",
)
_GRANT_COLUMNS = (
    "campaign_id",
    "version_id",
    "member_id",
    "purchase_id",
    "period_key",
    "points",
    "created_at",
    "updated_at",
)
_RANK_CHANGE_COLUMNS = (
    "member_id",
    "program_id",
    "from_tier_id",
    "to_tier_id",
    "changed_at",
    "reason",
    "metric_value",
)
_EVENT_COLUMNS = EVENT_COLUMNS


def _tier(ranks: RankRules, tier_id: int | None) -> TierSpec | None:
    """As `tiers.service`: the tier of that id, else the lowest."""
    return next((tier for tier in ranks.tiers if tier.id == tier_id), ranks.lowest)


class _State:
    """What the receipts of a chunk read and move: campaign counters, once-per-period grants,
    ranks and their metric, profiles. Read once (locked where the service locks), kept up to
    date receipt by receipt, written once."""

    def __init__(self, session: Session, as_of: datetime) -> None:
        self.session, self.as_of = session, as_of
        self.budget_used: dict[int, int] = {}
        self.budget_moved: set[int] = set()
        self.usage: dict[tuple[int, int], int] = {}
        self.usage_stored: set[tuple[int, int]] = set()
        self.usage_touched: set[tuple[int, int]] = set()
        self.periods: dict[int, set[tuple[int, str | None]]] = defaultdict(set)
        self.changes: dict[int, list[tuple[datetime, int, int]]] = defaultdict(list)
        self.tier_of: dict[int, int] = {}
        self.ranked_before: set[int] = set()
        self.rank_moved: dict[int, int] = {}
        self.metric_base: dict[tuple[int, datetime, datetime], int] = {}
        self.contributions: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
        self.profiles: dict[int, Any] = {}
        self.program_of: dict[int, int] = {}

    @classmethod
    def load(
        cls,
        session: Session,
        member_ids: Sequence[int],
        programmes: Mapping[int, _Programme],
        locked: Mapping[int, LockedMember],
        as_of: datetime,
    ) -> _State:
        state = cls(session, as_of)
        state.program_of = {member_id: locked[member_id].program_id for member_id in member_ids}
        rules_in_play = {
            rule.campaign_id: rule
            for programme in programmes.values()
            for book in programme.books.values()
            for rule in book.rules
        }
        limited = sorted(cid for cid, rule in rules_in_play.items() if rule.limited)
        if limited:
            state.budget_used = dict(
                session.execute(
                    select(Campaign.id, Campaign.budget_used)
                    .where(Campaign.id.in_(limited))
                    .order_by(Campaign.id)
                    .with_for_update()
                ).all()
            )
        capped = sorted(
            cid for cid, rule in rules_in_play.items() if rule.definition.per_member_cap
        )
        if capped and member_ids:
            for cid, member_id, points in session.execute(
                select(
                    CampaignMemberUsage.campaign_id,
                    CampaignMemberUsage.member_id,
                    CampaignMemberUsage.points,
                )
                .where(
                    CampaignMemberUsage.member_id.in_(member_ids),
                    CampaignMemberUsage.campaign_id.in_(capped),
                )
                .order_by(CampaignMemberUsage.member_id, CampaignMemberUsage.campaign_id)
                .with_for_update()
            ):
                state.usage[(cid, member_id)] = points
                state.usage_stored.add((cid, member_id))
        periodic = sorted(
            cid for cid, rule in rules_in_play.items() if rule.definition.frequency != "any"
        )
        if periodic and member_ids:
            for cid, member_id, key in session.execute(
                select(
                    CampaignGrant.campaign_id, CampaignGrant.member_id, CampaignGrant.period_key
                ).where(
                    CampaignGrant.member_id.in_(member_ids),
                    CampaignGrant.campaign_id.in_(periodic),
                    CampaignGrant.period_key.is_not(None),
                )
            ):
                state.periods[member_id].add((cid, key))
        ranked = [
            member_id
            for member_id in member_ids
            if programmes[locked[member_id].program_id].ranks is not None
        ]
        if ranked:
            for member_id, changed_at, change_id, tier_id in session.execute(
                select(
                    RankChange.member_id,
                    RankChange.changed_at,
                    RankChange.id,
                    RankChange.to_tier_id,
                ).where(RankChange.member_id.in_(ranked))
            ):
                state.changes[member_id].append((changed_at, change_id, tier_id))
            for member_id, tier_id in session.execute(
                select(MemberRank.member_id, MemberRank.tier_id).where(
                    MemberRank.member_id.in_(ranked)
                )
            ):
                state.tier_of[member_id] = tier_id
                state.ranked_before.add(member_id)
        return state

    # --- ranks (tiers.service.rank_at and after_purchase) -------------------------------------

    def rank_at(self, programme: _Programme, member_id: int, at: datetime) -> TierSpec | None:
        """The tier in force at `at`: the last change strictly before it, else the lowest."""
        if programme.ranks is None:
            return None
        before = [change for change in self.changes.get(member_id, ()) if change[0] < at]
        return _tier(programme.ranks, max(before)[2] if before else None)

    def after_purchase(
        self,
        ranks: RankRules,
        member: LockedMember,
        at: datetime,
        amount: int,
        earned: int,
        writes: _Writes,
    ) -> None:
        """Upgrade the member at once when this receipt's window now meets a higher threshold."""
        added = {Metric.SPEND: amount, Metric.VISITS: 1 if amount > 0 else 0}.get(
            ranks.metric, earned
        )
        self.contributions[member.id].append((at, added))
        start, end = ranks.period_of(self.as_of if ranks.window is Window.ROLLING_12M else at)
        base = self.metric_base.get((member.id, start, end))
        if base is None:
            # Read before anything of this chunk is written: its receipts are added below.
            base = self.metric_base[(member.id, start, end)] = tiers.metric_value(
                self.session, member_id=member.id, metric=ranks.metric, start=start, end=end
            )
        value = base + sum(n for t, n in self.contributions[member.id] if start <= t < end)
        target = ranks.tier_for(value)
        current = _tier(ranks, self.tier_of.get(member.id))
        if target is None or (current is not None and target.level <= current.level):
            return
        writes.rank_changes.append(
            (
                member.id,
                member.program_id,
                current.id if current else None,
                target.id,
                self.as_of,
                "upgrade",
                value,
            )
        )
        self.tier_of[member.id] = self.rank_moved[member.id] = target.id
        # Changes of this chunk come after every stored one of the same instant.
        self.changes[member.id].append((self.as_of, 2**62 + len(writes.rank_changes), target.id))
        writes.events.append(
            (
                "rank.changed",
                {
                    "member_id": member.id,
                    "from": current.code if current else None,
                    "to": target.code,
                    "reason": "upgrade",
                    "metric_value": value,
                },
                None,
                member.id,
                self.as_of,
            )
        )

    # --- campaigns (rules.service._member_facts and budgets.settle) ----------------------------

    def member_facts(
        self, member: LockedMember, fields: frozenset[str], rank: TierSpec | None
    ) -> MemberFacts:
        profile = None
        if fields & PROFILE_FIELDS:
            profile = self.profiles.get(member.id)
            if profile is None:
                profile = self.profiles[member.id] = members.get_profile(self.session, member.id)
        return MemberFacts(
            member_id=member.id,
            joined_at=member.joined_at,
            rank=rank.code if rank else None,
            birth_date=profile.birth_date if profile else None,
            gender=profile.gender if profile else None,
            postal_code=profile.postal_code if profile else None,
            join_channel=member.join_channel,
            join_store=member.join_store_id,
        )

    def settle(
        self,
        candidates: Sequence[Award],
        member_id: int,
        purchase_id: int,
        facts: Facts,
        writes: _Writes,
    ) -> list[Award]:
        """Drop awards already had this period, limit the rest by caps and budgets, choose, and
        record the grants; the awards in campaign id order, as `budgets.record` returns them."""
        store = facts.event.store if facts.event else None
        keys = {a.rule.campaign_id: a.rule.period_key(facts.local_date, store) for a in candidates}
        taken = self.periods[member_id]
        candidates = [
            a for a in candidates if (a.rule.campaign_id, keys[a.rule.campaign_id]) not in taken
        ]
        room: dict[int, int | None] = {}
        for award in sorted(candidates, key=lambda a: a.rule.campaign_id):
            d, cid = award.rule.definition, award.rule.campaign_id
            if not award.rule.limited:
                continue
            left: int | None = None
            if d.budget is not None:
                left = d.budget - self.budget_used.get(cid, 0)
            if d.per_member_cap is not None:
                self.usage_touched.add((cid, member_id))
                cap_left = d.per_member_cap - self.usage.get((cid, member_id), 0)
                left = cap_left if left is None else min(left, cap_left)
            room[cid] = None if left is None else max(left, 0)
        chosen = {award.rule.campaign_id: award for award in choose_awards(candidates, room)}
        kept = []
        for cid in sorted(chosen):
            award = chosen[cid]
            key = keys.get(cid)
            writes.grants.append(
                (
                    cid,
                    award.rule.version_id,
                    member_id,
                    purchase_id,
                    key,
                    award.points,
                    facts.as_of,
                    facts.as_of,
                )
            )
            if key is not None:
                taken.add((cid, key))
            if award.rule.definition.budget is not None:
                self.budget_used[cid] = self.budget_used.get(cid, 0) + award.points
                self.budget_moved.add(cid)
            if award.rule.definition.per_member_cap is not None:
                self.usage[(cid, member_id)] = self.usage.get((cid, member_id), 0) + award.points
            kept.append(award)
        return kept

    def flush(self) -> None:
        """Write the counters and ranks the receipts moved."""
        connection = self.session.connection()
        if self.budget_moved:
            connection.execute(
                update(_table(Campaign))
                .where(_table(Campaign).c.id == bindparam("cid"))
                .values(budget_used=bindparam("used")),
                [{"cid": cid, "used": self.budget_used[cid]} for cid in sorted(self.budget_moved)],
            )
        new_usage = sorted(self.usage_touched - self.usage_stored)
        write_rows(
            self.session,
            _table(CampaignMemberUsage),
            ("campaign_id", "member_id", "points"),
            [(cid, member_id, self.usage.get((cid, member_id), 0)) for cid, member_id in new_usage],
        )
        moved = sorted(
            pair for pair in self.usage_touched & self.usage_stored if pair in self.usage
        )
        if moved:
            usage = _table(CampaignMemberUsage)
            connection.execute(
                update(usage)
                .where(
                    usage.c.campaign_id == bindparam("cid"), usage.c.member_id == bindparam("mid")
                )
                .values(points=bindparam("points")),
                [{"cid": c, "mid": m, "points": self.usage[(c, m)]} for c, m in moved],
            )
        ranks = _table(MemberRank)
        held = sorted(self.rank_moved.keys() & self.ranked_before)
        if held:
            connection.execute(
                update(ranks)
                .where(ranks.c.member_id == bindparam("mid"))
                .values(tier_id=bindparam("tier"), since=bindparam("since")),
                [{"mid": m, "tier": self.rank_moved[m], "since": self.as_of} for m in held],
            )
        new_ranks = sorted(self.rank_moved.keys() - self.ranked_before)
        write_rows(
            self.session,
            ranks,
            ("member_id", "program_id", "tier_id", "since"),
            [(m, self.program_of[m], self.rank_moved[m], self.as_of) for m in new_ranks],
        )


# --- writing many rows at once: the two engines differ here -------------------------------------


def _driver(session: Session) -> Any:
    """The psycopg connection under the session's (its COPY, and results without SQLAlchemy)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver

"""Replay a planned year through the services, as tills, the EC site and the nightly jobs would.

Nothing here writes a row itself: the programme, partners and stores come from the partners
service, members from sign-up, receipts from `commit_purchase` / `return_purchase` /
`confirm_purchase`, the welcome bonus from the ledger's `earn`, and expiries from the ledger's
expiry job. Each call runs at the event's own time (`as_of`), in committed batches, so the result
is a database that a year of real traffic could have produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.demo.catalogue import (
    EXCLUDED_CATEGORIES,
    PARTNERS,
    PROGRAM_CODE,
    PROGRAM_NAME,
    STORES,
)
from kizuna.demo.plan import (
    WELCOME_BONUS,
    WELCOME_DAYS,
    Event,
    ExpiryRun,
    Join,
    Planner,
    Refund,
    Sale,
    Ship,
)
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.ledger.expiry import expire_due
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.members import cards
from kizuna.members import service as members
from kizuna.members.domain import Profile
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.partners.models import Partner, Program
from kizuna.partners.service import ProgramPolicies
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.purchases.errors import ErrorCode as PurchaseError
from kizuna.purchases.models import Purchase
from kizuna.rules.domain import BreakdownRow, EarnPolicy
from kizuna.security import service as security

ACTOR = "demo"
STAFF_PARTNER, STAFF_STORE = "MART", "M001"  # where the scoped demo staff work
REDEEM_MINIMUM = 100  # members start paying with points once they hold a round hundred
# Called after each event with (events done, events in all, the event just replayed).
Progress = Callable[[int, int, Event], None]


@dataclass(frozen=True)
class DemoSummary:
    """What the demo built, counted from the database."""

    program_id: int
    stores: int
    members: int
    purchases: int
    returns: int
    ec_orders: int
    pending_points: int
    points_earned: int
    points_redeemed: int
    points_expired: int
    expired_lots: int
    start: datetime
    end: datetime


class _Replay:
    """The ids the services gave back, and how to apply each kind of event."""

    def __init__(self, program: ProgramPolicies, store_ids: dict[str, int]) -> None:
        self.program = program
        self.store_ids = store_ids
        self.partner_of_store: dict[str, int] = {}
        self.member_ids: dict[int, int] = {}

    def apply(self, session: Session, event: Event) -> None:
        if isinstance(event, Join):
            self.join(session, event)
        elif isinstance(event, Sale):
            self.sale(session, event)
        elif isinstance(event, Refund):
            returns.return_purchase(
                session,
                store_id=self.store_ids[event.store_code],
                receipt_no=event.receipt_no,
                lines=list(event.lines) if event.lines is not None else None,
                as_of=event.at,
                actor=ACTOR,
            )
        elif isinstance(event, Ship):
            self.ship(session, event)
        elif isinstance(event, ExpiryRun):
            expire_due(session, as_of=event.at)

    def join(self, session: Session, event: Join) -> None:
        store_id = self.store_ids[event.store_code]
        person = event.person
        member = members.create_member(
            session,
            program_id=self.program.program_id,
            joined_at=event.at,
            identifiers={"email": person.email, "phone": person.phone},
            join_store_id=store_id,
            join_channel=event.channel,
            profile=Profile(
                name_kanji=person.name_kanji,
                name_kana=person.name_kana,
                birth_date=person.birth_date,
                gender=person.gender,
                postal_code=person.postal_code,
                address=person.address,
            ),
            consents={"email": person.email_consent, "dm": person.dm_consent},
        )
        cards.issue_card(session, member_id=member.id, as_of=event.at)
        self.member_ids[event.member_no] = member.id
        welcome = BreakdownRow(
            rule="welcome",
            label="入会特典（期間限定）",
            points=WELCOME_BONUS,
            kind="limited",
            expires_at=event.at + timedelta(days=WELCOME_DAYS),
        )
        ledger.earn(
            session,
            member_id=member.id,
            rows=[welcome],
            policy=self.program.ledger,
            occurred_at=event.at,
            as_of=event.at,
            context=ledger.Context(
                actor=ACTOR,
                partner_id=self.partner_id(session, event.store_code),
                store_id=store_id,
                channel=event.channel,
                reason_code="welcome_bonus",
            ),
        )

    def partner_id(self, session: Session, store_code: str) -> int:
        if store_code not in self.partner_of_store:
            store = partners.get_store(session, self.store_ids[store_code])
            self.partner_of_store[store_code] = store.partner_id
        return self.partner_of_store[store_code]

    def sale(self, session: Session, event: Sale) -> None:
        member_id = self.member_ids[event.member_no]
        redeem = 0
        if event.redeem is not None:
            available = ledger.balance(
                session, member_id=member_id, policy=self.program.ledger, as_of=event.at
            ).available
            # Points pay for goods that earn, never for tobacco or gift cards.
            payable = sum(
                line.amount for line in event.lines if line.category not in EXCLUDED_CATEGORIES
            )
            usable = min(available, payable // self.program.point_value_yen)
            if usable >= REDEEM_MINIMUM:
                redeem = usable if event.redeem == "all" else usable // 100 * 100
        request = PurchaseRequest(
            member_id=member_id,
            store_id=self.store_ids[event.store_code],
            receipt_no=event.receipt_no,
            occurred_at=event.at,
            lines=event.lines,
            redeem_points=redeem,
            channel="ec" if event.pending_until else "pos",
            pending_until=event.pending_until,
        )
        purchases.commit_purchase(session, request=request, as_of=event.at, actor=ACTOR)

    def ship(self, session: Session, event: Ship) -> None:
        try:
            returns.confirm_purchase(
                session,
                store_id=self.store_ids[event.store_code],
                receipt_no=event.receipt_no,
                as_of=event.at,
            )
        except KizunaError as error:
            # An order of tobacco or gift cards only, or returned whole, has nothing pending.
            if error.code != PurchaseError.NOT_PENDING:
                raise


def _setup(session: Session) -> tuple[ProgramPolicies, dict[str, int]]:
    program = partners.create_program(
        session,
        code=PROGRAM_CODE,
        name=PROGRAM_NAME,
        timezone="Asia/Tokyo",
        ledger=LedgerPolicy(timezone="Asia/Tokyo"),
        earn=EarnPolicy(points=1, per_yen=100, excluded_categories=EXCLUDED_CATEGORIES),
    )
    partner_ids = {
        spec.code: partners.create_partner(
            session,
            program_id=program.id,
            code=spec.code,
            name=spec.name,
            is_operator=spec.is_operator,
        ).id
        for spec in PARTNERS
    }
    store_ids = {
        spec.code: partners.create_store(
            session,
            partner_id=partner_ids[spec.partner_code],
            code=spec.code,
            name=spec.name,
            prefecture=spec.prefecture,
        ).id
        for spec in STORES
    }
    return partners.policies(session, program.id), store_ids


def demo_exists(database: Database) -> bool:
    """True when the database already holds the demo programme (the demo wants an empty one)."""
    with database.read() as session:
        return session.scalar(select(Program.id).where(Program.code == PROGRAM_CODE)) is not None


def create_demo_staff(database: Database, *, as_of: datetime) -> list[tuple[str, str, str]]:
    """One console account per role, scoped to the first supermarket and its partner:
    (user name, password, role)."""
    with database.write() as session:
        program_id = session.scalar(select(Program.id).where(Program.code == PROGRAM_CODE))
        partner = session.scalar(
            select(Partner).where(Partner.program_id == program_id, Partner.code == STAFF_PARTNER)
        )
        assert partner is not None, "build the demo first"
        store = partners.find_store(session, partner_id=partner.id, code=STAFF_STORE)
        assert store is not None
        accounts = security.create_demo_staff(
            session, as_of=as_of, store_id=store.id, partner_id=partner.id
        )
    return [(username, password, str(role)) for username, password, role in accounts]


def plan_events(*, members: int, seed: int, end: datetime, days: int = 365) -> list[Event]:
    """The demo's events for these parameters, oldest first (deterministic)."""
    return Planner(members=members, seed=seed, end=end, days=days).events()


def build_demo(
    database: Database,
    *,
    events: list[Event],
    end: datetime,
    days: int = 365,
    batch_size: int = 250,
    progress: Progress | None = None,
) -> DemoSummary:
    """Replay `events` into an empty, migrated database; returns what it built."""
    with database.write() as session:
        program, store_ids = _setup(session)
    replay = _Replay(program, store_ids)
    done = 0
    for start in range(0, len(events), batch_size):
        with database.write() as session:
            for event in events[start : start + batch_size]:
                replay.apply(session, event)
                done += 1
                if progress is not None:
                    progress(done, len(events), event)
    with database.write() as session:
        expire_due(session, as_of=end)
    with database.read() as session:
        return summarise(session, program, start=end - timedelta(days=days), end=end)


def summarise(
    session: Session, program: ProgramPolicies, *, start: datetime, end: datetime
) -> DemoSummary:
    """Count what the demo programme holds."""

    def points(entry_type: str) -> int:
        return int(
            session.scalar(
                select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
                    JournalEntry.entry_type == entry_type
                )
            )
            or 0
        )

    def count(*criteria: ColumnElement[bool]) -> int:
        return int(session.scalar(select(func.count()).select_from(Purchase).where(*criteria)) or 0)

    member_ids = session.scalars(
        select(Member.id).where(Member.program_id == program.program_id)
    ).all()
    pending = sum(
        ledger.balance(session, member_id=member_id, policy=program.ledger, as_of=end).pending
        for member_id in member_ids
    )
    return DemoSummary(
        program_id=program.program_id,
        stores=len(STORES),
        members=len(member_ids),
        purchases=count(),
        returns=count(Purchase.status != "completed"),
        ec_orders=count(Purchase.channel == "ec"),
        pending_points=pending,
        points_earned=points("earn"),
        points_redeemed=-points("redeem"),
        points_expired=-points("expire"),
        expired_lots=int(
            session.scalar(
                select(func.count()).select_from(Lot).where(Lot.expire_entry_id.is_not(None))
            )
            or 0
        ),
        start=start,
        end=end,
    )

"""The cost of a purchase commit in SQL statements, pinned so that a regression shows.

A plain receipt (no campaigns, no ranks) is seven statements: lock the member's account with the
member, programme and store read in the same statement, insert the purchase (a taken receipt
inserts nothing), read the open lots, reserve the journal entry's id, insert the journal entry,
insert its lot, publish the event. On PostgreSQL they go out in three round trips (then COMMIT):
the lock; the purchase, lots and id; the entry, lot and event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from kizuna.db import pipeline
from kizuna.db.prepared import Call
from kizuna.ledger import service as ledger
from kizuna.outbox.models import OutboxEvent
from kizuna.outbox.service import publish_calls
from kizuna.partners.service import policies
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.rules.domain import BreakdownRow, PurchaseLine
from tests import factories as f

T0 = f.T0
TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT")


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements `session` sends inside the block (transaction control left out)."""
    seen: list[str] = []
    engine = session.get_bind().engine

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _shop(session: Session):  # type: ignore[no-untyped-def]
    program = f.program(session)
    store = f.store(session, f.partner(session, program))
    member = f.member(session, program)
    ledger.earn(
        session,
        member_id=member.id,
        rows=[BreakdownRow("base", "opening", 500)],
        policy=policies(session, program.id).ledger,
        occurred_at=T0,
        as_of=T0,
    )
    return program, store, member


def _buy(session: Session, store, member, receipt: str, redeem: int = 0):  # type: ignore[no-untyped-def]
    request = PurchaseRequest(
        member_id=member.id,
        store_id=store.id,
        receipt_no=receipt,
        occurred_at=T0,
        lines=[PurchaseLine(sku="A", amount=1200)],
        redeem_points=redeem,
    )
    return purchases.commit_purchase(session, request=request, as_of=T0)


def test_plain_purchase_commit_is_seven_statements(session):
    # given a programme without campaigns or ranks, and a member with one lot
    _, store, member = _shop(session)
    _buy(session, store, member, "WARM")
    # when a receipt without redemption is committed
    with statements(session) as sent:
        _buy(session, store, member, "R1")
    # then it took seven statements
    assert len(sent) == 7, "\n".join(sent)


def test_purchase_with_redemption_from_one_lot_is_ten_statements(session):
    # given a member whose points sit in one lot
    _, store, member = _shop(session)
    # when a receipt paid partly with points is committed
    with statements(session) as sent:
        _buy(session, store, member, "R1", redeem=50)
    # then redeem entry, allocation and lot update are the three more (both entries' ids are
    # reserved in one statement); both events go in one executemany
    assert len(sent) == 10, "\n".join(sent)


@pytest.mark.postgres_only
@pytest.mark.parametrize("redeem", [0, 50])
def test_a_purchase_commit_is_three_round_trips_to_the_server(session, monkeypatch, redeem):
    # given a programme without campaigns or ranks on PostgreSQL, and a member with one lot
    _, store, member = _shop(session)
    _buy(session, store, member, "WARM")
    trips: list[int] = []
    execute = pipeline.execute

    def counted(pipeline_session, batches, **options):  # type: ignore[no-untyped-def]
        trips.append(len(batches))
        return execute(pipeline_session, batches, **options)

    monkeypatch.setattr(pipeline, "execute", counted)
    # when a receipt is committed, with or without a redemption
    _buy(session, store, member, "R1", redeem=redeem)
    # then its statements went out in three round trips
    assert len(trips) == 3, trips


def test_balance_returned_by_a_commit_is_the_balance_read_back(session):
    # given a member with points
    program, store, member = _shop(session)
    # when receipts earn and redeem
    _buy(session, store, member, "R1")
    result = _buy(session, store, member, "R2", redeem=120)
    # then the balance the commit computed from its own reads and writes is the stored one
    stored = ledger.balance(
        session, member_id=member.id, policy=policies(session, program.id).ledger, as_of=T0
    )
    assert result.balance == stored
    assert result.balance.available == 500 + 12 - 120 + 10


def _event_call(event_type: str, purchase_id: int) -> Call:
    return publish_calls([(event_type, {"purchase_id": purchase_id})], as_of=T0, member_id=None)[0]


@pytest.mark.parametrize("ranked", [False, True])
def test_the_callers_last_statements_go_with_the_commit(fresh_database, ranked):
    # given a member with points, in a programme without ranks (the result is known before the
    # writes) or with ranks (the rank is evaluated after them)
    with fresh_database.write() as session:
        program, store, member = _shop(session)
        if ranked:
            f.ranks(session, program)
    seen: list[purchases.PurchaseResult] = []

    def then(result: purchases.PurchaseResult) -> list[Call]:
        seen.append(result)
        return [_event_call(f"test.then_{ranked}", result.purchase_id)]

    # when a receipt is committed with the caller's last statement and the COMMIT
    with fresh_database.write() as session:
        request = PurchaseRequest(
            member_id=member.id,
            store_id=store.id,
            receipt_no=f"THEN-{ranked}",
            occurred_at=T0,
            lines=[PurchaseLine(sku="A", amount=1200)],
            redeem_points=100,
        )
        result = purchases.commit_purchase(
            session, request=request, as_of=T0, then=then, commit=True
        )
    # then the caller saw the result it returned, its statement was written with the receipt,
    # and the balance it was told is the stored one
    assert seen == [result]
    with fresh_database.read() as session:
        events = session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.event_type == f"test.then_{ranked}")
        ).all()
        assert events == [{"purchase_id": result.purchase_id}]
        stored = ledger.balance(
            session, member_id=member.id, policy=policies(session, program.id).ledger, as_of=T0
        )
    assert result.balance == stored

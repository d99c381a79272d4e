"""Idempotency keys around ledger postings: a retry replays, a different request under the same
key is refused, a business error is replayed, and a crash half-way leaves nothing behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from kizuna.core.errors import KizunaError
from kizuna.db.idempotency import IdempotencyKey, run_idempotent, run_idempotent_write
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.outbox.models import OutboxEvent
from kizuna.outbox.service import publish
from tests.factories import T0
from tests.integration import ledger_support as s


def posting(session, shop, member, points, calls=None):
    """The work of a POST /points request: redeem (negative) or earn (positive) `points`."""

    def action():
        if calls is not None:
            calls.append(points)
        if points < 0:
            posted = s.redeem(session, shop, member, -points, T0)
        else:
            posted = s.earn(session, shop, member, points, T0)
        return 201, {"entry_id": posted.entry_id, "amount": posted.amount}

    return action


def entries(session, member):
    return session.scalar(
        select(func.count()).select_from(JournalEntry).where(JournalEntry.member_id == member)
    )


def run(session, action, request, *, key="key-1", client="pos-1", as_of=T0):
    return run_idempotent(
        session, client=client, key=key, request=request, action=action, as_of=as_of
    )


def test_a_retry_returns_the_first_response_without_posting_again(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    calls: list[int] = []
    request = {"member_id": member, "points": 100}

    first = run(session, posting(session, shop, member, 100, calls), request)
    again = run(session, posting(session, shop, member, 100, calls), request)

    assert (first.status, first.replayed) == (201, False)
    assert (again.status, again.body, again.replayed) == (201, first.body, True)
    assert calls == [100]
    assert entries(session, member) == 1
    assert s.available(session, shop, member, T0) == 100


def test_the_same_key_with_a_different_request_is_a_conflict(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    run(session, posting(session, shop, member, 100), {"member_id": member, "points": 100})

    with pytest.raises(KizunaError) as refused:
        run(session, posting(session, shop, member, 200), {"member_id": member, "points": 200})

    assert (refused.value.code, refused.value.status) == ("idempotency_conflict", 422)
    assert entries(session, member) == 1


def test_keys_belong_to_one_client(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    request = {"member_id": member, "points": 10}
    run(session, posting(session, shop, member, 10), request, client="pos-1")
    other = run(session, posting(session, shop, member, 10), request, client="ec-1")
    assert not other.replayed
    assert entries(session, member) == 2


def test_a_business_error_is_stored_and_replayed_and_changes_nothing(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    s.earn(session, shop, member, 50, T0)
    calls: list[int] = []
    request = {"member_id": member, "points": -80}

    first = run(session, posting(session, shop, member, -80, calls), request)
    s.earn(session, shop, member, 50, T0)  # now there would be enough
    again = run(session, posting(session, shop, member, -80, calls), request)

    assert (first.status, first.body["code"], first.body["available"]) == (
        409,
        "insufficient_points",
        50,
    )
    assert (again.status, again.body, again.replayed) == (409, first.body, True)
    assert calls == [-80]
    assert entries(session, member) == 2  # the two earns
    assert s.available(session, shop, member, T0) == 100


def test_a_key_past_its_retention_runs_the_request_again(session):
    shop = s.shop(session)
    member = s.member(session, shop)
    request = {"member_id": member, "points": 10}
    run(session, posting(session, shop, member, 10), request)
    later = run(session, posting(session, shop, member, 10), request, as_of=T0 + timedelta(days=8))
    assert not later.replayed
    assert entries(session, member) == 2


class CrashError(RuntimeError):
    """The process dies in the middle of a posting."""


@pytest.mark.parametrize("fatal_statement", [2, 3, 4])
def test_a_crash_in_the_middle_of_a_posting_leaves_no_entry_lot_or_key(
    fresh_database, fatal_statement
):
    with fresh_database.write() as session:
        shop = s.shop(session)
        member = s.member(session, shop)
        s.earn(session, shop, member, 100, T0)
    statements = {"armed": False, "count": 0}

    def crash(conn, cursor, statement, parameters, context, executemany):
        if statements["armed"]:
            statements["count"] += 1
            if statements["count"] == fatal_statement:
                statements["armed"] = False
                raise CrashError(f"killed before statement {fatal_statement}: {statement[:40]}")

    def action():
        statements["armed"] = True
        posted = s.redeem(session, shop, member, 30, T0)
        s.earn(session, shop, member, 12, T0)
        return 201, {"entry_id": posted.entry_id}

    key = f"crash-{fatal_statement}"
    request = {"member_id": member, "redeem": 30, "earn": 12}
    event.listen(fresh_database.engine, "before_cursor_execute", crash)
    try:
        with pytest.raises(CrashError), fresh_database.write() as session:
            run(session, action, request, key=key)
    finally:
        event.remove(fresh_database.engine, "before_cursor_execute", crash)
    assert statements["count"] == fatal_statement

    with fresh_database.read() as session:
        assert entries(session, member) == 1
        assert [lot.remaining for lot in s.lots_of(session, member)] == [100]
        assert session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key)) is None
        assert (
            session.scalar(select(func.count()).select_from(Lot).where(Lot.member_id == member))
            == 1
        )

    # The client retries with the same key: the work happens once, in full.
    with fresh_database.write() as session:
        retried = run(session, action, request, key=key)
    with fresh_database.read() as session:
        assert not retried.replayed
        assert entries(session, member) == 3
        assert s.available(session, shop, member, T0) == 82


def test_an_action_that_leaves_the_key_check_to_the_end_is_undone_on_a_replay(fresh_database):
    # given an idempotent write whose action ignores the key check it is handed
    def action(session, checks):  # type: ignore[no-untyped-def]
        publish(session, event_type="test.once", payload={}, as_of=T0)
        return 201, {"done": True}

    def write_once():  # type: ignore[no-untyped-def]
        return run_idempotent_write(
            fresh_database.write,
            client="c",
            key="k-late",
            request={"n": 1},
            action=action,
            as_of=T0,
        )

    # when it runs twice under one key
    first, second = write_once(), write_once()
    # then the second's work was rolled back and the first outcome replayed
    assert not first.replayed
    assert second.replayed
    assert second.body == {"done": True}
    with fresh_database.read() as session:
        published = session.scalars(
            select(OutboxEvent.id).where(OutboxEvent.event_type == "test.once")
        ).all()
    assert len(published) == 1

"""Writers racing for one member: each thread has its own connection and transaction and commits.

PostgreSQL serialises a member's writes with a row lock on the point account; SQLite with
`Database.write()`'s writer lock. Either way, 32 terminals redeeming at once succeed exactly as
far as the balance goes, and 32 earns at once lose nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.ledger import expiry, reconcile, reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.models import JournalEntry, Lot
from tests.factories import T0
from tests.integration import ledger_support as s

THREADS = 32
DAY = timedelta(days=1)


@pytest.fixture
def racers(fresh_database):
    """A second handle on the module's database with a connection for every thread."""
    db = Database(fresh_database.url, pool_size=THREADS + 2, max_overflow=0)
    yield db
    db.dispose()


def race(db: Database, work: Callable[[object], object], threads: int = THREADS) -> Counter[str]:
    """Run `work(session)` in `threads` transactions started at the same instant; tally outcomes."""
    start = threading.Barrier(threads)
    outcomes: Counter[str] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        try:
            with db.write() as session:
                work(session)
            outcome = "ok"
        except KizunaError as refused:
            outcome = refused.code
        except BaseException as crash:  # any other failure fails the test below
            with lock:
                failures.append(crash)
            return
        with lock:
            outcomes[outcome] += 1

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not failures, failures
    return outcomes


def a_member_with(db: Database, points: int) -> tuple[s.Shop, int]:
    with db.write() as session:
        shop = s.shop(session)
        member = s.member(session, shop)
        s.earn(session, shop, member, points, T0)
    return shop, member


def test_32_terminals_redeeming_at_once_succeed_exactly_as_far_as_the_balance_goes(racers):
    # Runs on both engines: row locks on PostgreSQL, the serialised writer on SQLite.
    shop, member = a_member_with(racers, 1000)

    outcomes = race(racers, lambda session: s.redeem(session, shop, member, 70, T0 + DAY))

    assert outcomes == {"ok": 1000 // 70, "insufficient_points": THREADS - 1000 // 70}
    with racers.read() as session:
        assert s.available(session, shop, member, T0 + DAY) == 1000 % 70
        assert all(lot.remaining >= 0 for lot in s.lots_of(session, member))
        assert reconcile.check(session, [member]) == []


@pytest.mark.postgres_only
def test_32_earns_at_once_lose_no_update_and_repay_debt_exactly_once(racers):
    shop, member = a_member_with(racers, 100)
    with racers.write() as session:
        s.redeem(session, shop, member, 100, T0)
        earned = s.entries_of(session, member, "earn")[0]
        reversal.reverse(session, entry_id=earned.id, policy=shop.policy, as_of=T0)  # debt 100

    outcomes = race(racers, lambda session: s.earn(session, shop, member, 10, T0 + DAY))

    assert outcomes == {"ok": THREADS}
    with racers.read() as session:
        view = ledger.balance(session, member_id=member, policy=shop.policy, as_of=T0 + DAY)
        assert (view.available, view.debt) == (THREADS * 10 - 100, 0)
        assert reconcile.check(session, [member]) == []


@pytest.mark.postgres_only
def test_expiry_workers_share_the_due_lots_while_members_keep_redeeming(racers):
    due_lots = 0
    with racers.write() as session:
        shop = s.shop(session)
        members = [s.member(session, shop) for _ in range(8)]
        for member in members:
            for day in range(25):
                s.earn(session, shop, member, 3, T0 + day * DAY)  # due by T0 + 60 days
                due_lots += 1
            s.earn(session, shop, member, 100, T0 + 50 * DAY)  # still live
    run_at = T0 + 60 * DAY
    jobs = iter(range(THREADS))

    def work(session) -> None:
        n = next(jobs)
        if n < 4:  # four expiry workers in small batches, so that they really interleave
            expiry.expire_due(session, as_of=run_at, batch_size=7)
        else:
            s.redeem(session, shop, members[n % len(members)], 5, run_at)

    outcomes = race(racers, work)

    assert outcomes == {"ok": THREADS}
    with racers.read() as session:
        written_off = session.execute(
            select(func.count(), func.sum(Lot.expired_points)).where(
                Lot.member_id.in_(members), Lot.expire_entry_id.is_not(None)
            )
        ).one()
        booked = session.scalar(
            select(func.sum(JournalEntry.amount)).where(
                JournalEntry.entry_type == "expire", JournalEntry.member_id.in_(members)
            )
        )
        assert tuple(written_off) == (due_lots, due_lots * 3)  # every due lot, exactly once
        assert booked == -due_lots * 3
        left = session.scalar(select(func.sum(Lot.remaining)).where(Lot.member_id.in_(members)))
        assert left == 8 * 100 - (THREADS - 4) * 5
        assert reconcile.check(session, members) == []

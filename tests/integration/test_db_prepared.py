"""`Prepared` runs a Core statement on the driver's cursor with the same bind processing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kizuna.db.database import Database
from kizuna.db.prepared import Call, Prepared, run_and_commit, run_together
from kizuna.ledger.models import Lot
from kizuna.outbox.models import OutboxEvent

EVENTS = OutboxEvent.__table__
KEYS = ("event_type", "payload", "partner_id", "member_id", "created_at")
INSERT = Prepared(insert(EVENTS).returning(EVENTS.c.id), KEYS)  # type: ignore[arg-type]


def test_a_prepared_insert_stores_what_the_orm_reads_back(session: Session):
    # given an aware datetime in another zone and a JSON payload with Japanese text
    created = datetime(2026, 4, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=9)))
    payload = {"label": "ポイント", "points": [1, 2]}
    # when it is inserted through the prepared statement
    event_id = INSERT.scalar(
        session,
        {
            "event_type": "test.prepared",
            "payload": payload,
            "partner_id": None,
            "member_id": None,
            "created_at": created,
        },
    )
    # then the ORM reads back the same instant in UTC and the same JSON
    stored = session.get(OutboxEvent, event_id)
    assert stored is not None
    assert stored.created_at == created.astimezone(UTC)
    assert stored.created_at.tzinfo is not None
    assert stored.payload == payload


def test_listeners_see_prepared_statements(session: Session):
    # given a statement listener on the engine
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = session.get_bind().engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        INSERT.scalar(
            session,
            {
                "event_type": "test.listened",
                "payload": {},
                "partner_id": None,
                "member_id": None,
                "created_at": datetime.now(UTC),
            },
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # then it saw the INSERT
    assert [s for s in seen if s.lstrip().upper().startswith("INSERT INTO OUTBOX")]


def test_a_parameter_left_to_a_python_column_default_is_refused(session: Session):
    # given a lot insert that leaves out `expired_points`, which SQLAlchemy fills from a default
    lots = Lot.__table__
    keys = [c.key for c in lots.columns if c.key not in ("id", "expired_points")]
    partial = Prepared(insert(lots), keys)  # type: ignore[arg-type]
    # when it runs, it names the parameter instead of silently inserting without it
    with pytest.raises(ValueError, match="expired_points"):
        partial.execute(session, dict.fromkeys(keys))


def test_a_driver_error_surfaces_as_sqlalchemys_exception(session: Session):
    # given a lot insert that breaks a CHECK constraint (remaining above amount)
    lots = Lot.__table__
    keys = [c.key for c in lots.columns if c.key != "id"]
    statement = Prepared(insert(lots), keys)  # type: ignore[arg-type]
    row = dict.fromkeys(keys)
    row.update(amount=1, remaining=5, expired_points=0)
    # when it runs, the error is SQLAlchemy's IntegrityError, as through Connection.execute
    with pytest.raises(IntegrityError), session.begin_nested():
        statement.execute(session, row)


def _outbox_row(event_type: str) -> dict[str, object]:
    return {
        "event_type": event_type,
        "payload": {"n": 1},
        "partner_id": None,
        "member_id": None,
        "created_at": datetime.now(UTC),
    }


def test_statements_prepared_before_a_rollback_still_run_after_it(database: Database):
    # given a connection that has run the prepared insert in a transaction it then rolled back,
    # after many other statements (psycopg would have prepared them itself, and deallocated every
    # prepared statement of the session on that rollback)
    with database.engine.connect() as connection, Session(bind=connection) as session:
        for _ in range(10):
            session.execute(select(OutboxEvent.id).limit(1)).all()
        INSERT.scalar(session, _outbox_row("test.rolled_back"))
        session.rollback()
        # when the same statement runs again on that connection
        event_id = INSERT.scalar(session, _outbox_row("test.after_rollback"))
        session.commit()
    # then it ran, and only the second insert was kept
    with database.read() as session:
        kinds = session.scalars(
            select(OutboxEvent.event_type).where(OutboxEvent.event_type.like("test.%roll%"))
        ).all()
        assert kinds == ["test.after_rollback"]
        assert session.get(OutboxEvent, event_id) is not None


def test_a_failing_statement_in_a_set_stops_the_set_and_names_its_error(database: Database):
    # given a set of three statements whose second breaks a CHECK constraint
    lots = Lot.__table__
    keys = [c.key for c in lots.columns if c.key != "id"]
    bad_lot = Prepared(insert(lots), keys)  # type: ignore[arg-type]
    row = dict.fromkeys(keys)
    row.update(amount=1, remaining=5, expired_points=0)
    calls = [
        Call(INSERT, _outbox_row("test.first_of_set")),
        Call(bad_lot, row),
        Call(INSERT, _outbox_row("test.third_of_set")),
    ]
    # when they run together, the error is SQLAlchemy's IntegrityError and the transaction is
    # rolled back by its owner
    with pytest.raises(IntegrityError), database.write() as session:
        run_together(session, calls)
    # then nothing of the set was kept, and the connection serves the next transaction
    with database.write() as session:
        run_together(session, [Call(INSERT, _outbox_row("test.after_failed_set"))])
    with database.read() as session:
        kinds = session.scalars(
            select(OutboxEvent.event_type).where(OutboxEvent.event_type.like("test.%_set"))
        ).all()
        assert kinds == ["test.after_failed_set"]


def test_many_rows_of_a_returning_statement_come_back_in_order(session: Session):
    # given three rows for one prepared insert
    rows = [_outbox_row(f"test.many_{n}") for n in range(3)]
    # when they run as one call with many rows and the inserted events are read back
    run_together(session, [Call(INSERT, rows, many=True)])
    kinds = session.scalars(
        select(OutboxEvent.event_type)
        .where(OutboxEvent.event_type.like("test.many_%"))
        .order_by(OutboxEvent.id)
    ).all()
    # then each row was inserted once, in order
    assert kinds == ["test.many_0", "test.many_1", "test.many_2"]


def _kinds(database: Database, pattern: str) -> list[str]:
    with database.read() as session:
        return list(
            session.scalars(
                select(OutboxEvent.event_type)
                .where(OutboxEvent.event_type.like(pattern))
                .order_by(OutboxEvent.id)
            )
        )


def test_run_and_commit_commits_the_transaction_with_its_last_statements(database: Database):
    # given a write transaction with an earlier insert
    with database.write() as session:
        INSERT.scalar(session, _outbox_row("test.commit_earlier"))
        # when the last insert runs with the commit
        run_and_commit(session, [Call(INSERT, _outbox_row("test.commit_last"))])
        if database.dialect == "postgresql":
            # then on PostgreSQL both are committed already, in that round trip
            assert _kinds(database, "test.commit_%") == ["test.commit_earlier", "test.commit_last"]
    # and the transaction's owner ends it without error, both kept
    assert _kinds(database, "test.commit_%") == ["test.commit_earlier", "test.commit_last"]


def test_a_failing_last_statement_commits_nothing(database: Database):
    # given a write transaction with an earlier insert, and a last statement that breaks a CHECK
    lots = Lot.__table__
    keys = [c.key for c in lots.columns if c.key != "id"]
    bad_lot = Prepared(insert(lots), keys)  # type: ignore[arg-type]
    row = dict.fromkeys(keys)
    row.update(amount=1, remaining=5, expired_points=0)

    def write() -> None:
        with database.write() as session:
            INSERT.scalar(session, _outbox_row("test.uncommitted_earlier"))
            run_and_commit(session, [Call(bad_lot, row)])

    # when it runs with the commit, the error is raised and the owner rolls back
    with pytest.raises(IntegrityError):
        write()
    # then nothing was committed
    assert _kinds(database, "test.uncommitted_%") == []

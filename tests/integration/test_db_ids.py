"""`db.bulk.allocate_ids` reserves ids that rows written next can carry, on both engines."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from kizuna.db.base import Base
from kizuna.db.bulk import allocate_ids, id_reservation, reserved_ids
from kizuna.db.prepared import run_together
from kizuna.outbox.models import OutboxEvent
from tests import factories as f

ID_TABLES = sorted(
    name
    for name, table in Base.metadata.tables.items()
    if "id" in table.c and table.c.id.primary_key and table.c.id.autoincrement is not False
)


@pytest.mark.parametrize("name", ID_TABLES)
def test_every_id_column_can_be_reserved(session: Session, name: str):
    # given a table with an `id` primary key
    table = cast(Table, Base.metadata.tables[name])
    # when three ids are reserved, then three more
    first = allocate_ids(session, table, 3)
    # then they are consecutive and ascending (on PostgreSQL from the column's own sequence)
    assert first == list(range(first[0], first[0] + 3))
    if session.get_bind().dialect.name == "postgresql":
        (sequence,) = session.execute(select(func.pg_get_serial_sequence(name, "id"))).one()
        assert sequence == f"public.{name}_id_seq"


def test_reserved_ids_are_taken_by_rows_and_not_handed_out_again(session: Session):
    # given ids reserved for two outbox events, run together with nothing else
    events = cast(Table, OutboxEvent.__table__)
    (rows,) = run_together(session, [id_reservation(session, events, 2)])
    reserved = reserved_ids(session, rows, 2)
    # when rows are written with them and more ids are reserved
    session.execute(
        events.insert(),
        [
            {"id": event_id, "event_type": "test.reserved", "payload": {}, "created_at": f.T0}
            for event_id in reserved
        ],
    )
    later = allocate_ids(session, events, 1)
    # then the later id follows them
    assert later[0] > max(reserved)

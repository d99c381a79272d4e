"""Writing many rows at once, for the paths that load thousands of rows in one transaction (a
legacy-card import, opening balances, an offline batch).

`allocate_ids` (or `id_reservation`, run with other statements) reserves the ids first, so that
rows referencing each other can be built in Python (a purchase's journal entries use it too);
`write_rows` then loads each table in one statement: a binary `COPY … FROM STDIN` on
PostgreSQL (the server parses no text: no timestamps to read, no escapes), one `executemany` of
an insert on SQLite. Only the given columns are written; the others get their server defaults,
not the models' Python-side ones. Datetimes must be aware. A JSON column takes Python values, or
`EncodedJson` when the caller has already encoded the text (an offline batch encodes each
receipt's breakdown once, cheaper than the generic encoder).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Table, bindparam, func, insert, select, text
from sqlalchemy.orm import Session

from kizuna.db.prepared import Call, Prepared, run_together


class EncodedJson(str):
    """The text of a JSON value, written to a JSON column as it is."""

    __slots__ = ()


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """`count` new ids of `table`'s `id`, ascending, reserved for rows the caller will write.

    PostgreSQL takes them from the column's sequence (safe beside other writers). SQLite has no
    sequence: the ids follow the largest one in the table, which is safe because a write
    transaction there holds the database's only write lock (`Database.write`).
    """
    if count <= 0:
        return []
    call = id_reservation(session, table, count)
    return reserved_ids(session, run_together(session, [call])[0], count)


_RESERVATIONS: dict[tuple[str, str], Prepared] = {}


def id_reservation(session: Session, table: Table, count: int) -> Call:
    """`allocate_ids` as a call to run together with others (`db.prepared.run_together`); its
    rows go to `reserved_ids`. The rows must be written before the next reservation of the same
    table in the transaction (on SQLite the next one counts from the largest id written)."""
    dialect = session.get_bind().dialect.name
    statement = _RESERVATIONS.get((dialect, table.name))
    if statement is None:
        if dialect == "postgresql":
            # `<table>_id_seq`: the sequence of every `id` column of the schema (tested)
            nextval = func.nextval(f"{table.name}_id_seq")
            chosen = select(nextval).select_from(func.generate_series(1, bindparam("count")))
        else:
            chosen = select(func.coalesce(func.max(table.c.id), 0) + 0 * bindparam("count"))
        statement = _RESERVATIONS[(dialect, table.name)] = Prepared(chosen, ("count",))
    return Call(statement, {"count": count})


def reserved_ids(session: Session, rows: Sequence[tuple[Any, ...]], count: int) -> list[int]:
    """The ids an `id_reservation` of `count` reserved, ascending."""
    if session.get_bind().dialect.name == "postgresql":
        return sorted(int(row[0]) for row in rows)
    start = int(rows[0][0])
    return list(range(start + 1, start + count + 1))


def write_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert `rows` (values in the order of `columns`) into `table` in the caller's transaction
    (see the module's docs)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        names = list(columns)
        params = [
            {
                name: json.loads(value) if isinstance(value, EncodedJson) else value
                for name, value in zip(names, row, strict=True)
            }
            for row in rows
        ]
        if params:
            connection.execute(insert(table), params)
        return
    types = _column_types(connection, table.name)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    set_json_dumps(_json_text, context=cursor)
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with cursor, cursor.copy(statement) as copy:
        copy.set_types([types[name] for name in columns])
        for row in rows:
            copy.write_row(row)


def _json_text(value: Any) -> str:
    return value if isinstance(value, EncodedJson) else json.dumps(value)


_COLUMN_TYPES = text(
    "SELECT attname, atttypid::int FROM pg_attribute"
    " WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
)


def _column_types(connection: Connection, table: str) -> dict[str, int]:
    """The type oids of a table's columns (binary COPY sends no type names), cached on the
    database connection."""
    cache: dict[str, dict[str, int]] = connection.info.setdefault("kizuna_copy_types", {})
    if table not in cache:
        cache[table] = {
            name: oid for name, oid in connection.execute(_COLUMN_TYPES, {"table": table})
        }
    return cache[table]

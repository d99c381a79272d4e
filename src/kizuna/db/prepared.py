"""Hot-path statements run without SQLAlchemy's execution machinery, compiled once per engine.

A purchase runs the same few INSERTs and UPDATEs for every receipt. Through SQLAlchemy's
`Connection.execute` each costs about twice the CPU that psycopg alone spends on it (execution
context, result set-up, caching keys); for a statement whose SQL never changes that work buys
nothing. `Prepared` compiles a Core statement once per dialect and keeps its bind processors (UTC
datetimes, JSON). `run_together` sends a set of them: on PostgreSQL as named prepared statements
in one libpq pipeline (`db.pipeline`), on SQLite on the driver's cursor. Listeners of
`before_cursor_execute` still see every statement, so statement counts stay observable, and a
driver error surfaces as the same SQLAlchemy exception it would through `execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Insert
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from kizuna.db import pipeline


@dataclass(frozen=True)
class _Compiled:
    sql: str
    keys: tuple[str, ...]  # the parameters in the order a positional driver takes them
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    # Per result column, what `Result` would apply to its values (None: nothing); empty when no
    # column needs any.
    results: tuple[Callable[[Any], Any] | None, ...]
    fixed: dict[str, Any]  # values of the statement's own constants
    returns_rows: bool

    def processed(self, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.results:
            return [tuple(row) for row in rows]
        return [
            tuple(
                value if process is None or value is None else process(value)
                for value, process in zip(row, self.results, strict=True)
            )
            for row in rows
        ]

    def values(self, params: dict[str, Any]) -> Any:
        if self.fixed:
            params = {**self.fixed, **params}
        values = [
            value if process is None else process(value)
            for value, process in zip(
                (params[key] for key in self.keys), self.processors, strict=True
            )
        ]
        return values if self.positional else dict(zip(self.keys, values, strict=True))


class Prepared:
    """A Core statement whose parameters are exactly `keys`, run without SQLAlchemy's execution
    machinery."""

    def __init__(self, statement: ClauseElement, keys: Sequence[str]) -> None:
        if isinstance(statement, Insert) and not statement._returning:
            # No implicit `RETURNING id`: nothing reads it, and an executemany cannot.
            statement = statement.inline()
        self.statement = statement
        self.keys = tuple(keys)
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            built = cast(
                SQLCompiler,
                self.statement.compile(dialect=dialect, column_keys=list(self.keys)),
            )
            if built.positional:
                keys = tuple(built.positiontup or ())
            else:
                keys = tuple(built.bind_names.values())
            defaulted = {column.key for column in (*built.insert_prefetch, *built.update_prefetch)}
            fixed: dict[str, Any] = {}
            for bind, name in built.bind_names.items():
                if name in self.keys:
                    continue
                if name in defaulted or bind.required:
                    # a column default SQLAlchemy fills in per execution: pass it explicitly
                    raise ValueError(f"parameters not given for ['{name}']")
                fixed[name] = bind.effective_value  # a constant of the statement (`> 0`)
            processors = built._bind_processors  # the processors `execute()` would apply
            if any(not callable(processors.get(key, len)) for key in keys):
                raise ValueError("expanding (tuple) parameters are not supported")
            results = tuple(
                column.type._cached_result_processor(dialect, None)
                for column in built._result_columns
            )
            compiled = _Compiled(
                sql=built.string,
                keys=keys,
                processors=tuple(cast(Any, processors.get(key)) for key in keys),
                positional=built.positional,
                results=results if any(results) else (),
                fixed=fixed,
                returns_rows=bool(built._result_columns),
            )
            self._by_dialect[dialect.name] = compiled
        return compiled

    def execute(self, session: Session, params: dict[str, Any]) -> None:
        """Run once, for its effect."""
        run_together(session, [Call(self, params)])

    def scalar(self, session: Session, params: dict[str, Any]) -> Any:
        """Run once and return the first column of the first row, or None."""
        rows = run_together(session, [Call(self, params)])[0]
        return rows[0][0] if rows else None

    def rows(self, session: Session, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run once and return every row as a tuple, its values processed as `Result` would
        (UTC datetimes, booleans on SQLite)."""
        return run_together(session, [Call(self, params)])[0]

    def executemany(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Run once per row of parameters."""
        run_together(session, [Call(self, rows, many=True)])


@dataclass(frozen=True)
class Call:
    """One run of a prepared statement: its parameters, or a list of them with `many`."""

    prepared: Prepared
    params: Any
    many: bool = False


@dataclass(frozen=True)
class Check:
    """A statement to run with others, whose rows `verify` checks (raising to refuse): an access
    check that need not cost a round trip of its own."""

    call: Call
    verify: Callable[[list[tuple[Any, ...]]], None]

    def run(self, session: Session) -> None:
        """Run alone and verify."""
        run_checks(session, [self])


def run_checks(session: Session, checks: Sequence[Check]) -> None:
    """Run `checks` together, in one round trip, and verify each in order."""
    if not checks:
        return
    results = run_together(session, [check.call for check in checks])
    for check, rows in zip(checks, results, strict=True):
        check.verify(rows)


def run_together(session: Session, calls: Sequence[Call]) -> list[list[tuple[Any, ...]]]:
    """Run `calls` in order and return each one's rows ([] for a statement without any).

    On PostgreSQL they go out in one round trip as named prepared statements (`db.pipeline`), and
    so does the BEGIN of a transaction with its first statement: every round trip is a wait, and
    on a busy machine a context switch, in each of them.
    """
    connection: Connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _run_in_pipeline(connection, calls)
    return _run_on_cursors(connection, calls)


def run_and_commit(session: Session, calls: Sequence[Call]) -> list[list[tuple[Any, ...]]]:
    """Run `calls` as the last statements of the session's transaction, and commit it.

    On PostgreSQL the COMMIT goes out in the same round trip; the transaction's owner then ends
    it as usual (`Database.write`), its COMMIT finding nothing left to do. Nothing may run or fail
    after this in the transaction: it is committed. Elsewhere the owner's COMMIT is the commit.
    """
    session.flush()  # pending ORM changes belong to the transaction being committed
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _run_in_pipeline(connection, calls, commit=True)
    return _run_on_cursors(connection, calls)


# Statements run on PostgreSQL are compiled with `$n` placeholders, the protocol's own: they are
# prepared under their own names (`db.pipeline`), not through psycopg's query conversion.
_POSTGRESQL = psycopg_dialect.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
_PIPELINE_SESSION = "kizuna_pipeline"


def _run_in_pipeline(
    connection: Connection, calls: Sequence[Call], *, commit: bool = False
) -> list[list[tuple[Any, ...]]]:
    compiled = [call.prepared._compiled(_POSTGRESQL) for call in calls]
    batches: list[tuple[str, list[Any]]] = []
    for call, statement in zip(calls, compiled, strict=True):
        rows = call.params if call.many else [call.params]
        values = [statement.values(row) for row in rows]
        notify_listeners(
            connection, statement.sql, values if call.many else values[0], many=call.many
        )
        batches.append((statement.sql, values))
    fairy = connection.connection
    session = fairy.info.get(_PIPELINE_SESSION)
    if session is None:  # the first use of this database connection
        session = fairy.info[_PIPELINE_SESSION] = pipeline.Session(
            cast(Any, fairy.dbapi_connection)
        )
    try:
        results = pipeline.execute(session, batches, commit=commit)
    except connection.dialect.loaded_dbapi.Error as error:
        sql, values = batches[0]
        connection._handle_dbapi_exception(error, sql, values, None, None)
    return [
        statement.processed(rows) if statement.returns_rows and not call.many else []
        for rows, statement, call in zip(results, compiled, calls, strict=True)
    ]


def _run_on_cursors(connection: Connection, calls: Sequence[Call]) -> list[list[tuple[Any, ...]]]:
    dialect = connection.dialect
    dbapi_connection: Any = connection.connection.dbapi_connection
    compiled = [call.prepared._compiled(dialect) for call in calls]
    cursors: list[Any] = []
    sql, values = "", None
    try:
        for call, statement in zip(calls, compiled, strict=True):
            sql = statement.sql
            values = (
                [statement.values(row) for row in call.params]
                if call.many
                else statement.values(call.params)
            )
            cursor = dbapi_connection.cursor()
            cursors.append(cursor)
            notify_listeners(connection, sql, values, many=call.many)
            if call.many:
                cursor.executemany(sql, values)
            else:
                cursor.execute(sql, values)
        return [
            statement.processed(cursor.fetchall())
            if statement.returns_rows and not call.many
            else []
            for cursor, statement, call in zip(cursors, compiled, calls, strict=True)
        ]
    except dialect.loaded_dbapi.Error as error:
        # What `Connection.execute` does with a driver error: wrap it as SQLAlchemy's
        # (IntegrityError, DataError…, which callers and the API's handlers catch) and
        # invalidate the connection if the server is gone.
        connection._handle_dbapi_exception(error, sql, values, None, None)
    finally:
        # An unread RETURNING left open keeps SQLite's statement running: its COMMIT would fail.
        for cursor in cursors:
            cursor.close()


def notify_listeners(connection: Connection, sql: str, values: Any, *, many: bool) -> None:
    """What `Connection.execute` tells `before_cursor_execute` listeners (there is no cursor)."""
    listeners = connection.dispatch.before_cursor_execute
    if not listeners:  # the usual case: asking is cheaper than an empty loop per statement
        return
    for listener in listeners:
        listener(connection, None, sql, values, None, many)

"""Named prepared statements sent to PostgreSQL in one pipeline, on libpq directly.

psycopg's cursors spend more CPU per statement than the server does on the short statements of
a purchase: a cursor object, query conversion, prepared-statement bookkeeping and, in pipeline
mode, queues of Python generators per statement. The hot path needs none of that. Here each
statement is prepared once per connection under a name of ours, parameters are dumped as text by
psycopg's compiled transformer and typed by the server from the statement's casts, and a whole set
of statements — with the transaction's BEGIN when one is due — is sent as one pipeline and read
back in one wait.

psycopg's own automatic preparing is off on Kizuna's connections (`db.database`): after a
rollback it deallocates every prepared statement of the session, ours included.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from psycopg import Connection, errors, pq
from psycopg.abc import AdaptContext, Buffer
from psycopg.abc import Transformer as TransformerType
from psycopg.adapt import PyFormat, Transformer
from psycopg.waiting import Ready, Wait

_IDLE = pq.TransactionStatus.IDLE
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_FAILED = pq.ExecStatus.FATAL_ERROR
_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_BEGIN, _PREPARE, _RUN, _COMMIT = range(4)

Rows = list[tuple[Any, ...]]
Batch = tuple[str, Sequence[Sequence[Any]]]  # SQL with `$n` placeholders, rows of parameters


@dataclass
class Session:
    """What one connection keeps between pipelines: the statements it has prepared and the
    transformer that caches its dumpers and loaders."""

    connection: Connection[Any]
    names: dict[str, bytes] = field(default_factory=dict)
    transformer: TransformerType | None = None


def execute(session: Session, batches: Sequence[Batch], *, commit: bool = False) -> list[Rows]:
    """Run each batch's statement once per row of parameters, in order, in the connection's
    transaction (begun here when none is open); returns each batch's rows. With `commit` the
    transaction's COMMIT follows them in the same round trip.

    A statement that fails raises psycopg's error for it and the statements after it (the COMMIT
    too) do not run; the transaction is then aborted, as after any failed statement.
    """
    connection = session.connection
    if session.transformer is None:
        session.transformer = Transformer(cast(AdaptContext, connection))
    # Dumped before anything is sent: a value that cannot be dumped leaves the connection as is.
    dumped = [[_dump(session.transformer, row) for row in rows] for _, rows in batches]
    pgconn = connection.pgconn
    pgconn.enter_pipeline_mode()
    try:
        expected, preparing = _send(session, batches, dumped)
        if commit and not connection.autocommit:
            pgconn.send_query_params(b"COMMIT", None)
            expected.append((_COMMIT, None))
        pgconn.pipeline_sync()
        results = connection.wait(_exchange(pgconn))
    finally:
        pgconn.exit_pipeline_mode()
    return _read(session, len(batches), expected, preparing, results)


def _dump(transformer: TransformerType, row: Sequence[Any]) -> list[Buffer | None]:
    if not row:
        return []
    return list(transformer.dump_sequence(row, _text_formats(len(row))))


_TEXT_FORMATS: dict[int, list[PyFormat]] = {}


def _text_formats(count: int) -> list[PyFormat]:
    formats = _TEXT_FORMATS.get(count)
    if formats is None:
        formats = _TEXT_FORMATS[count] = [PyFormat.TEXT] * count
    return formats


def _begin_statement(connection: Connection[Any]) -> bytes:
    """What psycopg itself sends to open a transaction on this connection."""
    parts = [b"BEGIN"]
    if connection.isolation_level is not None:
        parts += [b"ISOLATION LEVEL", connection.isolation_level.name.replace("_", " ").encode()]
    if connection.read_only is not None:
        parts.append(b"READ ONLY" if connection.read_only else b"READ WRITE")
    if connection.deferrable is not None:
        parts.append(b"DEFERRABLE" if connection.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def _send(
    session: Session, batches: Sequence[Batch], dumped: list[list[list[Buffer | None]]]
) -> tuple[list[tuple[int, Any]], dict[str, bytes]]:
    """Queue the statements; returns what each result will answer — (_BEGIN, None),
    (_PREPARE, sql) or (_RUN, batch number) — and the names of statements prepared in it."""
    connection = session.connection
    pgconn = connection.pgconn
    expected: list[tuple[int, Any]] = []
    if not connection.autocommit and pgconn.transaction_status == _IDLE:
        pgconn.send_query_params(_begin_statement(connection), None)
        expected.append((_BEGIN, None))
    preparing: dict[str, bytes] = {}
    for number, ((sql, _), rows) in enumerate(zip(batches, dumped, strict=True)):
        name = session.names.get(sql) or preparing.get(sql)
        if name is None:
            name = preparing[sql] = b"kizuna_%d" % (len(session.names) + len(preparing) + 1)
            pgconn.send_prepare(name, sql.encode(), None)
            expected.append((_PREPARE, sql))
        for values in rows:
            pgconn.send_query_prepared(name, values, None, 0)
            expected.append((_RUN, number))
    return expected, preparing


def _exchange(pgconn: Any) -> Generator[Wait, Ready | int, list[Any]]:
    """Send what is queued, then read one result per statement up to the pipeline's sync."""
    while pgconn.flush():
        if (yield Wait.RW) & Ready.R:
            pgconn.consume_input()
    results: list[Any] = []
    last = None
    while True:
        while pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            results.append(last)
            last = None
        elif result.status == _SYNC:
            return results
        else:
            last = result


def _read(
    session: Session,
    count: int,
    expected: list[tuple[int, Any]],
    preparing: dict[str, bytes],
    results: list[Any],
) -> list[Rows]:
    rows: list[Rows] = [[] for _ in range(count)]
    failure = None
    transformer = session.transformer
    assert transformer is not None
    for (kind, key), result in zip(expected, results, strict=True):
        if result.status == _ABORTED:
            continue
        if result.status == _FAILED:
            failure = failure or result
        elif kind == _PREPARE:
            # A prepared statement belongs to the session: it outlives a failed transaction.
            session.names[key] = preparing[key]
        elif kind == _RUN and result.ntuples:
            transformer.set_pgresult(result)
            rows[key] += transformer.load_rows(0, result.ntuples, tuple)
    if failure is not None:
        raise errors.error_from_result(failure, encoding=session.connection.info.encoding)
    return rows

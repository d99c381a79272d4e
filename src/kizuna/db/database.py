"""Engines, sessions and the one rule about writers.

All writes for one member are serialised. PostgreSQL does it with a short row lock on the member's
account (`lock_for_update`); SQLite has no row locks, so every write transaction there starts with
`BEGIN IMMEDIATE` behind an in-process lock — SQLite's own busy waiting is unfair and lets a writer
starve for seconds, while a Python lock queues writers in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BEGIN = "kizuna_sqlite_begin"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the URL came in."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and explicit transaction control."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    # psycopg's automatic preparing deallocates all of a session's prepared statements after a
    # rollback, the hot path's own (`db.pipeline`) included: it is off.
    kwargs["connect_args"] = {"prepare_threshold": None, **kwargs.get("connect_args", {})}
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


# A connection that has just been used is alive; pinging it on every checkout (SQLAlchemy's
# `pool_pre_ping`) cost a round trip per transaction, a tenth of a purchase's time. Only a
# connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["kizuna_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("kizuna_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()  # leave no transaction open behind the ping
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError() from error


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own BEGIN handling is off (isolation_level=None) so that we emit BEGIN ourselves:
    # the documented workaround that makes SAVEPOINT and BEGIN IMMEDIATE work.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    """True when the bound engine is SQLite."""
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "sqlite"


class Database:
    """The process's connection to Kizuna's database: a read path and a serialised write path."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = threading.Lock() if is_sqlite(self.engine) else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that may write; commits on success, rolls back on any exception."""
        with self._writer or nullcontext(), self.sessions() as session, session.begin():
            if self._writer is not None:
                # Must be the first use of the connection: the options decide how BEGIN is issued.
                session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (WAL readers never wait for the writer on SQLite)."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

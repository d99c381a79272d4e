"""A pooled connection the server has dropped is replaced before a transaction uses it.

The pool pings only connections idle for a while (a ping per checkout cost a round trip per
purchase); such a connection, killed while idle, must not surface as an error.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kizuna.db import database as db_module
from kizuna.db.database import Database


def test_a_connection_killed_while_idle_is_replaced_on_checkout(fresh_database, monkeypatch):
    if fresh_database.dialect != "postgresql":
        pytest.skip("a SQLite file has no server connection to lose")
    # given a pooled connection whose backend the server has terminated while it sat idle
    db = Database(fresh_database.url, pool_size=1, max_overflow=0)
    try:
        with db.read() as session:
            pid = session.scalar(text("SELECT pg_backend_pid()"))
        with fresh_database.write() as other:
            assert other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)
        # when the next transaction checks the connection out
        with db.write() as session:
            new_pid = session.scalar(text("SELECT pg_backend_pid()"))
        # then it runs on a fresh connection instead of failing
        assert new_pid != pid
    finally:
        db.dispose()

"""The audit log on a real database: append-only, hash-chained, tampering detected."""

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kizuna.security import audit
from tests import factories as f

T = f.T0


def _write_three(session):
    for n in range(3):
        audit.record(
            session,
            actor="staff:hana",
            action="member.view",
            target=f"member:{n}",
            details={"fields": ["phone"], "n": n},
            as_of=T + timedelta(seconds=n),
        )


def _drop_guard(session):
    """What a database owner bent on hiding something could do first."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
    else:
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_delete"))


def test_recorded_entries_chain_and_verify(session):
    _write_three(session)
    result = audit.verify(session)
    assert result.ok
    assert result.entries >= 3


def test_database_refuses_to_update_or_delete_audit_entries(session):
    _write_three(session)
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text("UPDATE audit_log SET actor = 'x'"))
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text("DELETE FROM audit_log"))


def test_verify_fails_after_a_row_is_altered_in_the_database(session):
    _write_three(session)
    _drop_guard(session)
    session.execute(text("UPDATE audit_log SET target = 'member:42' WHERE target = 'member:1'"))
    result = audit.verify(session)
    assert not result.ok
    assert "altered" in {p.problem for p in result.problems}


def test_verify_fails_after_a_row_is_deleted_in_the_database(session):
    _write_three(session)
    _drop_guard(session)
    session.execute(text("DELETE FROM audit_log WHERE target = 'member:1'"))
    assert {"missing", "broken_link"} <= {p.problem for p in audit.verify(session).problems}


def test_verify_fails_after_the_last_row_is_deleted(session):
    _write_three(session)
    _drop_guard(session)
    session.execute(text("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"))
    assert [p.problem for p in audit.verify(session).problems] == ["head_mismatch"]


def test_entries_filter_by_actor_action_and_period(session):
    _write_three(session)
    audit.record(session, actor="staff:ken", action="points.adjust", target="member:1", as_of=T)
    found = audit.entries(
        session, filters=audit.AuditFilter(actor="staff:hana", since=T + timedelta(seconds=1))
    )
    assert [e.target for e in found] == ["member:2", "member:1"]
    by_action = audit.entries(session, filters=audit.AuditFilter(action="points."))
    assert [e.actor for e in by_action] == ["staff:ken"]

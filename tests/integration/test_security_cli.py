"""`kizuna staff` and `kizuna audit` against a real database."""

import re

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kizuna.cli.main import app
from kizuna.core.clock import utcnow
from kizuna.core.settings import get_settings
from kizuna.security import service as security
from kizuna.security.service import LoginStatus


@pytest.fixture
def kizuna(fresh_database, monkeypatch):
    monkeypatch.setenv("KIZUNA_DATABASE_URL", fresh_database.url)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


def test_created_staff_logs_in_with_the_printed_one_time_password(kizuna, fresh_database):
    result = kizuna("staff", "create", "mori", "--role", "auditor", "--name", "森")
    assert result.exit_code == 0, result.output
    password = re.search(r"one-time password: (\S+)", result.output).group(1)
    with fresh_database.write() as session:
        outcome = security.authenticate(session, username="mori", password=password, as_of=utcnow())
    assert outcome.status is LoginStatus.OK
    assert outcome.user.must_change_password
    assert "mori" in kizuna("staff", "list").output


def test_store_staff_without_a_store_is_refused(kizuna):
    result = kizuna("staff", "create", "kana", "--role", "store_staff")
    assert result.exit_code == 1
    assert "invalid_role_scope" in result.output


def test_audit_verify_passes_then_fails_once_a_row_is_altered(kizuna, fresh_database):
    kizuna("staff", "create", "ueda", "--role", "marketer")
    assert kizuna("audit", "verify").exit_code == 0
    with fresh_database.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1"))
    result = kizuna("audit", "verify")
    assert result.exit_code == 1
    assert "entry 1: altered" in result.output

"""Staff administration and the audit log viewer in the console."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from kizuna.api.app import create_app
from kizuna.core.settings import Settings
from kizuna.security import service as security
from kizuna.security.domain import MAX_FAILED_LOGINS
from tests import factories as f


@pytest.fixture(scope="module")
def app(fresh_database):
    return create_app(Settings(database_url=fresh_database.url), database=fresh_database)


@pytest.fixture(scope="module")
def world(app):
    with app.state.database.write() as session:
        store = f.store(session, f.partner(session, f.program(session)))
        return {
            "store_id": store.id,
            "admin": f.staff(session, role="admin").username,
            "auditor": f.staff(session, role="auditor").username,
        }


def test_admin_adds_store_staff_who_must_change_the_one_time_password(app, world):
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/staff")
    created = admin.post(
        "/console/staff",
        data={
            "csrf_token": f.csrf_of(page.text),
            "username": "tanaka",
            "display_name": "田中",
            "role": "store_staff",
            "store_id": world["store_id"],
        },
    )
    password = re.search(r'<p class="big">([^<]+)</p>', created.text).group(1)
    clerk = f.console_client(app, "tanaka", password)
    assert clerk.get("/console/members", follow_redirects=False).headers["location"] == (
        "/console/account?must=1"
    )


def test_admin_cannot_create_an_owner(app, world):
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/staff")
    assert '<option value="owner">' not in page.text
    refused = admin.post(
        "/console/staff",
        data={
            "csrf_token": f.csrf_of(page.text),
            "username": "boss",
            "display_name": "Boss",
            "role": "owner",
        },
    )
    assert refused.status_code == 403


def test_admin_unlocks_a_locked_account(app, world):
    with app.state.database.write() as session:
        user = f.staff(session, role="marketer")
        username, staff_id = user.username, user.id
    outsider = TestClient(app, base_url="https://console.example")
    for _ in range(MAX_FAILED_LOGINS):
        f.console_login(outsider, username, "not the password")
    assert f.console_login(outsider, username).status_code == 423
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/staff")
    assert "ロック中" in page.text
    admin.post(f"/console/staff/{staff_id}/unlock", data={"csrf_token": f.csrf_of(page.text)})
    assert f.console_login(outsider, username).status_code == 303


def test_deactivated_user_is_logged_out_at_once(app, world):
    with app.state.database.write() as session:
        user = f.staff(session, role="support")
    victim = f.console_client(app, user.username)
    assert victim.get("/console/dashboard").status_code == 200
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/staff")
    admin.post(
        f"/console/staff/{user.id}",
        data={"csrf_token": f.csrf_of(page.text), "role": "support"},
    )
    assert victim.get("/console/dashboard", follow_redirects=False).status_code == 303
    with app.state.database.read() as session:
        assert not security.get_staff(session, user.id).active


def test_auditor_reads_staff_and_audit_log_but_changes_nothing(app, world):
    auditor = f.console_client(app, world["auditor"])
    staff = auditor.get("/console/staff")
    assert staff.status_code == 200
    assert "スタッフの追加" not in staff.text
    log = auditor.get("/console/audit", params={"action": "staff.create"})
    assert "staff.create" in log.text
    assert "auth.login" not in log.text
    refused = auditor.post(
        "/console/staff",
        data={
            "csrf_token": f.csrf_of(staff.text),
            "username": "x1",
            "display_name": "x",
            "role": "support",
        },
    )
    assert refused.status_code == 403


def test_audit_viewer_verifies_the_chain_and_shows_tampering(app, world):
    auditor = f.console_client(app, world["auditor"])
    assert "監査ログは改ざんされていません" in auditor.get("/console/audit?verify=1").text
    with app.state.database.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            session.execute(text("DROP TRIGGER audit_log_no_delete"))
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    damaged = auditor.get("/console/audit?verify=1")
    assert "不整合があります" in damaged.text
    assert "欠番(削除)" in damaged.text

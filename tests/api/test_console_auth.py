"""Console log-in over HTTP: cookies, CSRF, lock-out, TOTP, language, security headers."""

from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from kizuna.core.clock import utcnow
from kizuna.security import service as security
from kizuna.security.domain import MAX_FAILED_LOGINS
from tests import factories as f


@pytest.fixture
def client(app):
    with TestClient(app, base_url="https://console.example") as c:
        yield c


def _staff(database, **kwargs):
    with database.write() as session:
        return f.staff(session, **kwargs).username


def test_login_page_is_japanese_by_default_and_english_on_request(client):
    page = client.get("/console/login")
    assert "ログイン" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    client.get("/console/lang/en?next=/console/login")
    assert "Log in" in client.get("/console/login").text


def test_successful_login_sets_a_secure_httponly_samesite_session_cookie(app, client):
    username = _staff(app.state.database, role="marketer")
    response = f.console_login(client, username)
    assert response.status_code == 303
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("kizuna_session=")
    )
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "SameSite=strict" in cookie
    dashboard = client.get("/console/dashboard")
    assert dashboard.status_code == 200
    assert "ダッシュボード" in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store"


def test_session_cookie_drops_secure_only_for_plain_http_on_loopback(app):
    username = _staff(app.state.database)
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        response = f.console_login(local, username)
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("kizuna_session=")
    )
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie


def test_pages_redirect_to_login_without_a_session(client):
    response = client.get("/console/dashboard", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/dashboard"


def test_login_form_without_its_csrf_token_is_refused(app, client):
    username = _staff(app.state.database)
    client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"username": username, "password": f.STAFF_PASSWORD, "csrf_token": "forged"},
    )
    assert response.status_code == 403
    assert "kizuna_session" not in client.cookies


def test_post_without_csrf_token_is_refused_and_changes_nothing(app, client):
    username = _staff(app.state.database)
    f.console_login(client, username)
    response = client.post(
        "/console/account/password",
        data={"current": f.STAFF_PASSWORD, "new": "another long passphrase"},
    )
    assert response.status_code == 403
    assert "リクエストを受け付けられません" in response.text
    with app.state.database.read() as session:
        user = security.find_staff(session, username)
        assert security._verify(user.password_hash, f.STAFF_PASSWORD)


def test_post_from_another_origin_is_refused_even_with_the_token(app, client):
    username = _staff(app.state.database)
    f.console_login(client, username)
    token = f.csrf_of(client.get("/console/account").text)
    response = client.post(
        "/console/logout",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_repeated_wrong_passwords_lock_the_account(app, client):
    username = _staff(app.state.database)
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert f.console_login(client, username, "wrong password!").status_code == 401
    locked = f.console_login(client, username, "wrong password!")
    assert locked.status_code == 423
    assert "ロック" in locked.text
    assert f.console_login(client, username).status_code == 423


def test_totp_account_needs_the_code_before_any_page_opens(app, client):
    username = _staff(app.state.database, role="admin")
    secret = security.new_totp_secret()
    with app.state.database.write() as session:
        user = security.find_staff(session, username)
        earlier = utcnow() - timedelta(minutes=2)
        security.enable_totp(
            session,
            staff_id=user.id,
            secret=secret,
            code=pyotp.TOTP(secret).at(earlier),
            as_of=earlier,
        )
    response = f.console_login(client, username)
    assert response.headers["location"].startswith("/console/login/totp")
    assert client.get("/console/dashboard", follow_redirects=False).headers["location"] == (
        "/console/login/totp"
    )
    page = client.get("/console/login/totp")
    wrong = client.post(
        "/console/login/totp", data={"code": "000000", "csrf_token": f.csrf_of(page.text)}
    )
    assert wrong.status_code == 401
    right = client.post(
        "/console/login/totp",
        data={"code": pyotp.TOTP(secret).now(), "csrf_token": f.csrf_of(page.text)},
        follow_redirects=False,
    )
    assert right.status_code == 303
    assert client.get("/console/dashboard").status_code == 200


def test_logout_ends_the_session_on_the_server(app, client):
    username = _staff(app.state.database)
    f.console_login(client, username)
    stolen = client.cookies.get("kizuna_session")
    token = f.csrf_of(client.get("/console/account").text)
    client.post("/console/logout", data={"csrf_token": token})
    client.cookies.set("kizuna_session", stolen, domain="console.example")
    assert client.get("/console/account", follow_redirects=False).status_code == 303


def test_reset_password_forces_a_change_before_anything_else(app, client):
    username = _staff(app.state.database, role="support")
    with app.state.database.write() as session:
        user = security.find_staff(session, username)
        temporary = security.reset_password(
            session, actor=security.system_actor(), staff_id=user.id, as_of=utcnow()
        )
    f.console_login(client, username, temporary)
    response = client.get("/console/dashboard", follow_redirects=False)
    assert response.headers["location"] == "/console/account?must=1"
    page = client.get("/console/account?must=1")
    client.post(
        "/console/account/password",
        data={
            "current": temporary,
            "new": "my own new passphrase",
            "csrf_token": f.csrf_of(page.text),
        },
    )
    assert client.get("/console/dashboard").status_code == 200


def test_next_parameter_never_leads_off_the_console(app, client):
    username = _staff(app.state.database)
    response = f.console_login(client, username, next="https://evil.example/")
    assert response.headers["location"] == "/console/"

"""Console log-in per network address: after too many failures from one address in a while, its
further attempts are refused with a clear message (Japanese or English) and no password check,
while other addresses log in as usual. The per-account lock-out stays as it was."""

from fastapi.testclient import TestClient

from kizuna.security import service as security
from kizuna.security.domain import MAX_FAILED_LOGINS, MAX_FAILED_LOGINS_PER_ADDRESS
from tests import factories as f


def _browser(app, address: str) -> TestClient:
    return TestClient(app, base_url="https://console.example", client=(address, 50000))


def _accounts(app, count: int) -> list[str]:
    with app.state.database.write() as session:
        return [f.staff(session, role="support").username for _ in range(count)]


def _account(app, username: str):
    with app.state.database.read() as session:
        user = security.find_staff(session, username)
        assert user is not None
        return user.failed_logins, user.last_login_at


def test_an_address_with_too_many_failures_is_refused_without_any_password_check(app):
    # Spread over accounts (and names that exist nowhere) so that no account locks by itself.
    per_account = MAX_FAILED_LOGINS - 1
    accounts = _accounts(app, MAX_FAILED_LOGINS_PER_ADDRESS // per_account + 1)
    guesser = _browser(app, "203.0.113.7")
    tried = [name for name in accounts for _ in range(per_account)]
    tried += ["nobody"] * (MAX_FAILED_LOGINS_PER_ADDRESS - len(tried))
    answers = [
        f.console_login(guesser, name, "wrong password 123").status_code
        for name in tried[:MAX_FAILED_LOGINS_PER_ADDRESS]
    ]
    (fresh,) = _accounts(app, 1)

    refused = f.console_login(guesser, fresh)  # the right password, from the same address
    wrong = f.console_login(guesser, fresh, "wrong password 123")
    guesser.get("/console/lang/en?next=/console/login")
    in_english = f.console_login(guesser, fresh)
    elsewhere = f.console_login(_browser(app, "198.51.100.20"), fresh)

    assert set(answers) == {401}
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "ログイン失敗が多すぎる" in refused.text
    assert "kizuna_session" not in refused.headers.get("set-cookie", "")
    # Not checked, so not counted against the account either.
    assert wrong.status_code == 429
    assert "Too many failed log-ins from this address" in in_english.text
    assert elsewhere.status_code == 303
    assert _account(app, fresh)[0] == 0
    assert _account(app, fresh)[1] is not None  # logged in from the other address only


def test_the_second_factor_step_is_refused_too_once_the_address_is_throttled(app):
    guesser = _browser(app, "203.0.113.8")
    for _ in range(MAX_FAILED_LOGINS_PER_ADDRESS):
        assert f.console_login(guesser, "nobody", "wrong password 123").status_code == 401
    page = guesser.get("/console/login")

    code = guesser.post(
        "/console/login/totp", data={"code": "123456", "csrf_token": f.csrf_of(page.text)}
    )

    assert code.status_code == 429
    assert "ログイン失敗が多すぎる" in code.text


def test_failures_below_the_limit_do_not_stop_the_right_password(app):
    (user,) = _accounts(app, 1)
    browser = _browser(app, "203.0.113.9")
    for _ in range(MAX_FAILED_LOGINS_PER_ADDRESS - 1):
        assert f.console_login(browser, "nobody", "wrong password 123").status_code == 401

    assert f.console_login(browser, user).status_code == 303

"""Log-in with password, then TOTP when the account has it; log-out; the language switch.

Before a session exists the log-in form is protected by a double-submit token: a random value in
a SameSite=Strict cookie that the form must repeat, so another site cannot post it. Besides the
per-account lock-out, an address with too many failed log-ins in a while (`LoginThrottle`) is
refused with 429 before any password or code is checked.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from kizuna.console.auth import (
    CONSOLE,
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_COOKIE_PATH,
    DatabaseDep,
    cookie_secure,
    safe_next,
)
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.security import service as security
from kizuna.security.domain import SESSION_MAX, LoginThrottle
from kizuna.security.service import LoginStatus

router = APIRouter()


def _set_cookie(request: Request, response: Response, name: str, value: str, *, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(SESSION_MAX.total_seconds()),
        path=path,
        secure=cookie_secure(request),
        httponly=True,
        samesite="strict",
    )


def _login_page(
    request: Request, *, error: str = "", status_code: int = 200, template: str = "login.html"
) -> Response:
    """A log-in step's page, with the double-submit token in a cookie and in the form."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        template,
        login_csrf=token,
        next=safe_next(request.query_params.get("next") or None, ""),
        error=error,
        status_code=status_code,
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, path=f"{CONSOLE}/login")
    return response


def _login_csrf_ok(request: Request, supplied: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and secrets.compare_digest(expected, supplied)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _throttled(request: Request, template: str = "login.html") -> Response | None:
    """The refusal of an address that failed too often lately, else None (it may try)."""
    throttle: LoginThrottle = request.app.state.login_throttle
    wait = throttle.retry_after(_address(request), time.monotonic())
    if wait <= 0:
        return None
    response = _login_page(request, error="login.throttled", status_code=429, template=template)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _count_failure(request: Request) -> None:
    throttle: LoginThrottle = request.app.state.login_throttle
    throttle.failed(_address(request), time.monotonic())


@router.get("/login")
def login_form(request: Request) -> Response:
    """The log-in page."""
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    db: DatabaseDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the password; open a session, or a half-open one that waits for the TOTP code."""
    if not _login_csrf_ok(request, csrf_token):
        return _login_page(request, error="error.csrf.body", status_code=403)
    if (refused := _throttled(request)) is not None:
        return refused
    now = utcnow()
    with db.write() as session:
        outcome = security.authenticate(session, username=username, password=password, as_of=now)
        token = ""
        if outcome.user is not None:
            token, _ = security.start_session(
                session,
                user=outcome.user,
                as_of=now,
                second_factor_pending=outcome.status is LoginStatus.TOTP_REQUIRED,
            )
    if outcome.status in (LoginStatus.LOCKED, LoginStatus.INVALID):
        _count_failure(request)
    if outcome.status is LoginStatus.LOCKED:
        return _login_page(request, error="login.locked", status_code=423)
    if outcome.status is LoginStatus.INVALID:
        return _login_page(request, error="login.invalid", status_code=401)
    target = safe_next(next)
    if outcome.status is LoginStatus.TOTP_REQUIRED:
        target = f"{CONSOLE}/login/totp?next={target}"
    response = redirect(target)
    _set_cookie(request, response, SESSION_COOKIE, token, path=SESSION_COOKIE_PATH)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{CONSOLE}/login")
    return response


def _pending(request: Request, db: DatabaseDep) -> tuple[str, int] | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    with db.read() as session:
        active = security.resolve_session(session, token=token, as_of=utcnow()) if token else None
    if active is None or not active.row.second_factor_pending:
        return None
    return token, active.row.id


@router.get("/login/totp")
def totp_form(request: Request, db: DatabaseDep) -> Response:
    """The second step: the code from the authenticator app."""
    if _pending(request, db) is None:
        return redirect(f"{CONSOLE}/login")
    return _login_page_totp(request)


def _login_page_totp(request: Request, *, error: str = "", status_code: int = 200) -> Response:
    return _login_page(request, error=error, status_code=status_code, template="login_totp.html")


@router.post("/login/totp")
def totp(
    request: Request,
    db: DatabaseDep,
    code: Annotated[str, Form(max_length=12)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the TOTP code; a right one opens the session, wrong ones count towards lock-out."""
    if not _login_csrf_ok(request, csrf_token):
        return _login_page_totp(request, error="error.csrf.body", status_code=403)
    if (refused := _throttled(request, "login_totp.html")) is not None:
        return refused
    pending = _pending(request, db)
    if pending is None:
        return redirect(f"{CONSOLE}/login")
    _, session_id = pending
    with db.write() as session:
        row = security.get_session(session, session_id)
        outcome = security.verify_second_factor(
            session, staff_session=row, code=code, as_of=utcnow()
        )
    if outcome.status is not LoginStatus.OK:
        _count_failure(request)
    if outcome.status is LoginStatus.LOCKED:
        return _login_page(request, error="login.locked", status_code=423)
    if outcome.status is not LoginStatus.OK:
        return _login_page_totp(request, error="login.totp.invalid", status_code=401)
    response = redirect(safe_next(next))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{CONSOLE}/login")
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str) -> Response:
    """Switch the console between Japanese and English (a preference, kept in a cookie)."""
    response = redirect(safe_next(request.query_params.get("next")))
    response.set_cookie(
        LANG_COOKIE,
        "en" if code == "en" else "ja",
        max_age=365 * 86400,
        path=CONSOLE,
        secure=cookie_secure(request),
        httponly=True,
        samesite="lax",
    )
    return response

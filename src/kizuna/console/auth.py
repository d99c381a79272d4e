"""Who is asking, and may they: the console's session cookie, CSRF tokens and permission checks.

A route states the one permission it needs with `require(Permission.X)`; the dependency finds the
staff user from the server-side session behind the cookie, refuses the request if their role
lacks the permission (per `security.domain.ROLE_PERMISSIONS`), and checks the CSRF token of every
unsafe request (form field `csrf_token` or header `X-CSRF-Token`). The admin API admits staff
sessions through the same check (`authorise`, called by `api.deps.StaffOrScope`), so one table
governs both. The marker `permission` on the dependency lets the test that walks every route find
what each route demands.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from kizuna.core.clock import utcnow
from kizuna.db.database import Database
from kizuna.security import service as security
from kizuna.security.domain import Permission
from kizuna.security.service import Staff

SESSION_COOKIE = "kizuna_session"
# The session serves the console and the admin API under /v1, so its cookie goes to every path.
SESSION_COOKIE_PATH = "/"
LOGIN_CSRF_COOKIE = "kizuna_login_csrf"
LANG_COOKIE = "kizuna_lang"
CONSOLE = "/console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A session's last use is written at most this often: most console requests stay read-only.
TOUCH_EVERY = timedelta(minutes=1)


class LoginRequired(Exception):
    """No live session: the browser goes to the log-in page (the API answers 401)."""

    def __init__(self, next_url: str = "", *, second_factor: bool = False) -> None:
        super().__init__("login required")
        self.next_url = next_url
        self.second_factor = second_factor


class AccessDenied(Exception):
    """The user's role lacks the permission (403), or the CSRF token is wrong (403 too)."""

    def __init__(self, reason: str, permission: Permission | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permission = permission


class PasswordChangeRequired(Exception):
    """An administrator reset this user's password: nothing opens until they choose their own."""


def database(request: Request) -> Database:
    """The application's database (put on `app.state.database` by the app factory)."""
    db: Database = request.app.state.database
    return db


DatabaseDep = Annotated[Database, Depends(database)]


def cookie_secure(request: Request) -> bool:
    """Whether cookies get the Secure flag: always, except plain http to this very machine.

    `kizuna demo` serves http://127.0.0.1:8000 with no certificate, and a browser never sends a
    Secure cookie back over plain http, so the demo could not log in. Loopback traffic never
    leaves the machine, which is the one case where dropping the flag exposes nothing.
    """
    if request.url.scheme == "https":
        return True
    host = request.url.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def language(request: Request) -> str:
    """The console language: the cookie's choice, Japanese by default."""
    return "en" if request.cookies.get(LANG_COOKIE) == "en" else "ja"


def safe_next(url: str | None, default: str = f"{CONSOLE}/") -> str:
    """A local console path to return to after log-in, never another site (open redirect)."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith(CONSOLE) or "\\" in url:
        return default
    return url


def login_url(next_url: str = "") -> str:
    """The log-in page, remembering where to go afterwards."""
    return f"{CONSOLE}/login" + (f"?next={quote(next_url, safe='/')}" if next_url else "")


@dataclass(frozen=True)
class Viewer:
    """The staff user behind a request, with their session's CSRF token and language."""

    staff: Staff
    session_id: int
    csrf_token: str
    lang: str

    def can(self, permission: Permission | str) -> bool:
        """True when the user's role holds `permission` (templates ask this to show links)."""
        return self.staff.can(Permission(permission))


def _resolve(request: Request) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise LoginRequired(here)
    db = database(request)
    now = utcnow()
    with db.read() as session:
        active = security.resolve_session(session, token=token, as_of=now)
    if active is None:
        raise LoginRequired(here)
    if active.row.second_factor_pending:
        raise LoginRequired(here, second_factor=True)
    if now - active.row.last_seen_at >= TOUCH_EVERY:
        with db.write() as session:
            security.touch_session(session, session_id=active.row.id, as_of=now)
    return Viewer(active.staff, active.row.id, active.row.csrf_token, language(request))


async def _check_csrf(request: Request, expected: str) -> None:
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.url.netloc:
        raise AccessDenied("csrf")
    supplied = request.headers.get("x-csrf-token")
    if supplied is None and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        value = form.get("csrf_token")
        supplied = value if isinstance(value, str) else None
    if not supplied or not secrets.compare_digest(supplied, expected):
        raise AccessDenied("csrf")


async def authorise(request: Request, permission: Permission) -> Viewer:
    """The staff user behind the request's session if their role holds `permission`; refuses a
    missing session, a pending password change, the role, or (unsafe methods) the CSRF token."""
    viewer = await run_in_threadpool(_resolve, request)
    if viewer.staff.must_change_password and permission is not Permission.SELF:
        raise PasswordChangeRequired()
    if not viewer.staff.can(permission):
        raise AccessDenied("forbidden", permission)
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, viewer.csrf_token)
    return viewer


def require(permission: Permission) -> Callable[[Request], Awaitable[Viewer]]:
    """A dependency admitting only staff whose role holds `permission` (and checking CSRF)."""

    async def dependency(request: Request) -> Viewer:
        return await authorise(request, permission)

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the route matrix test
    dependency.__name__ = f"require_{permission.value.replace(':', '_')}"
    return dependency


def permission_of(dependency: Any) -> Permission | None:
    """The permission a dependency demands (one made by `require`, or the admin API's
    `StaffOrScope`), else None."""
    found = getattr(dependency, "permission", None)
    return found if isinstance(found, Permission) else None

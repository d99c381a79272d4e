"""The console's router (mounted at /console) and the handlers that turn refusals into pages."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response

from kizuna.api.problems import problem_response
from kizuna.console.auth import (
    CONSOLE,
    AccessDenied,
    LoginRequired,
    PasswordChangeRequired,
    login_url,
)
from kizuna.console.pages import STATIC, redirect, render
from kizuna.console.views import (
    account,
    adjustments,
    admin,
    campaigns,
    clients,
    dashboard,
    login,
    members,
    merge,
    ranks,
)
from kizuna.security.domain import LoginThrottle
from kizuna.security.errors import ErrorCode

router = APIRouter(prefix=CONSOLE, include_in_schema=False)
for area in (
    login,
    account,
    dashboard,
    members,
    adjustments,
    merge,
    campaigns,
    ranks,
    clients,
    admin,
):
    router.include_router(area.router)


@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """Kizuna's own CSS, scripts and the vendored chart library: no CDN, ever."""
    target = (STATIC / path).resolve()
    if not target.is_file() or STATIC.resolve() not in target.parents:
        return Response(status_code=404)
    return FileResponse(target, headers={"Cache-Control": "public, max-age=3600"})


def _is_console(request: Request) -> bool:
    return request.url.path.startswith(CONSOLE)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if not _is_console(request):
        return problem_response(401, ErrorCode.NOT_AUTHENTICATED, "log in first")
    if exc.second_factor:
        return redirect(f"{CONSOLE}/login/totp")
    return redirect(login_url(exc.next_url if request.method == "GET" else ""))


async def _access_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AccessDenied)
    code = ErrorCode.CSRF_FAILED if exc.reason == "csrf" else ErrorCode.FORBIDDEN
    if not _is_console(request):
        return problem_response(403, code, "not allowed")
    key = "error.csrf" if exc.reason == "csrf" else "error.forbidden"
    return render(request, "error.html", status_code=403, key=key)


async def _password_change(request: Request, exc: Exception) -> Response:
    if not _is_console(request):
        return problem_response(
            403, ErrorCode.PASSWORD_CHANGE_REQUIRED, "change your password in the console"
        )
    return redirect(f"{CONSOLE}/account?must=1")


def install(app: FastAPI) -> None:
    """Mount the console on `app`: its routes, the handlers of its refusals, and the log-in
    throttle of this process."""
    app.include_router(router)
    app.state.login_throttle = LoginThrottle()
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(AccessDenied, _access_denied)
    app.add_exception_handler(PasswordChangeRequired, _password_change)

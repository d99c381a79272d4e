"""The user's own account: log out, change the password, turn on two-step verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from kizuna.console.auth import (
    CONSOLE,
    SESSION_COOKIE,
    SESSION_COOKIE_PATH,
    DatabaseDep,
    Viewer,
    require,
)
from kizuna.console.pages import redirect, render
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.security import service as security
from kizuna.security.domain import Permission

router = APIRouter()
Self = Annotated[Viewer, Depends(require(Permission.SELF))]


@router.post("/logout")
def logout(request: Request, db: DatabaseDep, viewer: Self) -> Response:
    """End this session on the server and forget the cookie."""
    with db.write() as session:
        security.end_session(session, token=request.cookies.get(SESSION_COOKIE, ""), as_of=utcnow())
    response = redirect(f"{CONSOLE}/login")
    response.delete_cookie(SESSION_COOKIE, path=SESSION_COOKIE_PATH)
    return response


def _page(
    request: Request, db: DatabaseDep, viewer: Viewer, *, message: str = "", error: str = ""
) -> Response:
    with db.read() as session:
        user = security.get_staff(session, viewer.staff.id)
        totp_on = user.totp_secret is not None
    secret = "" if totp_on else security.new_totp_secret()
    return render(
        request,
        "account.html",
        viewer=viewer,
        totp_on=totp_on,
        totp_secret=secret,
        totp_uri=security.totp_uri(secret=secret, username=viewer.staff.username) if secret else "",
        message=message,
        error=error,
        status_code=422 if error else 200,
    )


@router.get("/account")
def account(request: Request, db: DatabaseDep, viewer: Self) -> Response:
    """The account page."""
    return _page(request, db, viewer)


@router.post("/account/password")
def change_password(
    request: Request,
    db: DatabaseDep,
    viewer: Self,
    current: Annotated[str, Form(max_length=200)],
    new: Annotated[str, Form(max_length=200)],
) -> Response:
    """Change one's own password."""
    try:
        with db.write() as session:
            security.change_password(
                session, staff_id=viewer.staff.id, current=current, new=new, as_of=utcnow()
            )
    except KizunaError as refused:
        return _page(
            request,
            db,
            viewer,
            error=refused.message if refused.code == "weak_password" else refused.code,
        )
    return redirect(f"{CONSOLE}/account?done=password")


@router.post("/account/totp")
def enable_totp(
    request: Request,
    db: DatabaseDep,
    viewer: Self,
    secret: Annotated[str, Form(max_length=64)],
    code: Annotated[str, Form(max_length=12)],
) -> Response:
    """Turn on TOTP once the user proves their app makes the right codes."""
    try:
        with db.write() as session:
            security.enable_totp(
                session, staff_id=viewer.staff.id, secret=secret, code=code, as_of=utcnow()
            )
    except KizunaError as refused:
        return _page(request, db, viewer, error=refused.code)
    return redirect(f"{CONSOLE}/account?done=totp")

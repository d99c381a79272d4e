"""Rendering console pages: Jinja2 templates, the words of the chosen language, safe headers.

Every page is served with a strict Content-Security-Policy (scripts and styles only from Kizuna
itself, no inline code), no caching (pages may show personal data), and no framing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from kizuna.console.auth import CONSOLE, Viewer, language
from kizuna.console.i18n import MESSAGES, translate

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _tz(request: Request) -> ZoneInfo:
    settings = getattr(request.app.state, "settings", None)
    return ZoneInfo(getattr(settings, "timezone", "Asia/Tokyo"))


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Page `template` for `viewer` (None on the log-in pages) in their language."""
    lang = viewer.lang if viewer else language(request)
    tz = _tz(request)

    def t(key: str, **values: Any) -> str:
        return translate(key, lang, **values)

    def local(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(tz).strftime(fmt) if moment else ""

    response = templates.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "lang": lang,
            "t": t,
            "local": local,
            "console": CONSOLE,
            "known": MESSAGES,
            "csrf_token": viewer.csrf_token if viewer else context.pop("login_csrf", ""),
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(url: str) -> RedirectResponse:
    """See other: the answer to a successful form post (so a reload does not post again)."""
    return RedirectResponse(url, status_code=303)

"""Every route of the application × every role, checked against the one permission table.

Each route is classified by what guards it: a staff permission (`console.auth.require`), an API
key (`api.deps.current_client`), or nothing (the short public list below). A route that is none
of these fails the test, so a new route cannot slip in unguarded. Then each role, logged in with
a real session, calls each route: a staff route answers 403 exactly when the role lacks the
route's permission in `security.domain.ROLE_PERMISSIONS`; an API route refuses every staff
session without a key (401); public routes open for everyone.
"""

import re

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from kizuna.api.deps import current_client
from kizuna.console.auth import permission_of
from kizuna.security.domain import ROLE_PERMISSIONS, Role
from tests import factories as f

PUBLIC = {
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/docs-assets",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/console/login",
    "/console/login/totp",
    "/console/lang/{code}",
    "/console/static/{path:path}",
}
# Ends the session it is called with, so it runs last.
LAST = "/console/logout"
# Ids that exist nowhere: an allowed call finds nothing (404) and changes nothing.
PATH_VALUES = {"path:path": "console.css", "code": "en"}
MISSING_ID = "999999"


def _calls(dependant):
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def classify(route):
    """('staff', permission), ('api', None) or ('public', None) for a route."""
    calls = list(_calls(route.dependant)) if getattr(route, "dependant", None) else []
    permissions = {p for p in map(permission_of, calls) if p is not None}
    if len(permissions) > 1:
        raise AssertionError(f"{route.path} demands several permissions: {permissions}")
    if permissions:
        return "staff", permissions.pop()
    if current_client in calls:
        return "api", None
    if route.path in PUBLIC:
        return "public", None
    raise AssertionError(f"{route.path} is guarded by nothing the matrix knows")


def endpoints(app):
    """(method, path template, concrete url, kind, permission) for every route, logout last."""
    rows = []
    for route in routing.iter_route_contexts(app.routes):
        kind, permission = classify(route)
        url = re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m.group(1), MISSING_ID), route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            rows.append((method, route.path, url, kind, permission))
    return sorted(rows, key=lambda row: row[1] == LAST)


@pytest.fixture(scope="module")
def staff_by_role(app):
    with app.state.database.write() as session:
        program = f.program(session)
        partner = f.partner(session, program)
        store = f.store(session, partner)
        return {
            role: f.staff(session, role=role.value, store=store, partner=partner).username
            for role in Role
        }


def test_every_route_is_guarded_by_a_permission_an_api_key_or_is_public(app):
    rows = endpoints(app)
    assert {kind for *_, kind, _ in rows} == {"staff", "api", "public"}
    console = [row for row in rows if row[1].startswith("/console")]
    assert all(kind in ("staff", "public") for *_, kind, _ in console)


@pytest.mark.parametrize("role", list(Role))
def test_role_gets_exactly_what_the_permission_table_grants(app, staff_by_role, role):
    client = TestClient(app, base_url="https://console.example")
    assert f.console_login(client, staff_by_role[role]).status_code == 303
    token = f.csrf_of(client.get("/console/account").text)
    wrong = []
    for method, path, url, kind, permission in endpoints(app):
        response = client.request(
            method,
            url,
            data={"csrf_token": token} if method != "GET" else None,
            headers={"X-CSRF-Token": token},
            follow_redirects=False,
        )
        # (log-out's answer is a redirect to the log-in page: that is it working.)
        to_login = (
            response.is_redirect
            and "/console/login" in response.headers["location"]
            and path != LAST
        )
        if kind == "staff":
            allowed = permission in ROLE_PERMISSIONS[role]
            refused = response.status_code == 403
            if allowed == refused or to_login:
                wrong.append((method, path, permission, response.status_code))
        elif kind == "api":
            if response.status_code != 401:
                wrong.append((method, path, "api key", response.status_code))
        elif response.status_code in (401, 403):
            wrong.append((method, path, "public", response.status_code))
    assert wrong == []

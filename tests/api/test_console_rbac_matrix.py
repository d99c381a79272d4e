"""Every route of the application × every role, checked against the one permission table.

Each route is classified by what guards it:
- a console route: a staff permission (`console.auth.require`);
- an admin API route: `api.deps.StaffOrScope`, a staff permission *or* an API key scope;
- POS and app traffic: an API key only (`api.deps.RequireScope`, `current_client`), and then it
  must be listed in `KEY_ONLY` below, so that a new API route is either opened to staff with a
  permission or named here on purpose;
- public: the short list below.
A route that is none of these fails the test, so a new route cannot slip in unguarded. Then each
role, logged in with a real session, calls each route: a console or admin API route answers 403
exactly when the role lacks the route's permission in `security.domain.ROLE_PERMISSIONS`; a
key-only route refuses every staff session (401); public routes open for everyone. API keys are
walked too: an admin API route admits a key exactly when it holds the route's scope.
"""

import re
import uuid

import pytest
from fastapi import FastAPI, routing
from fastapi.testclient import TestClient

from kizuna.api.deps import MembersReader, RequireScope, StaffOrScope, current_client
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind, Scope
from kizuna.console.auth import permission_of
from kizuna.core.clock import utcnow
from kizuna.security.domain import ROLE_PERMISSIONS, Permission, Role
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
M = "/v1/members/{member_id}"
# POS, EC and app traffic (SPEC §9): API keys only, by design; a staff session gets 401 here.
KEY_ONLY = {
    # members as the till and the app see them
    ("POST", "/v1/members"),
    ("GET", "/v1/members/lookup"),
    ("POST", "/v1/members/identify"),
    ("GET", M),
    ("GET", f"{M}/balance"),
    ("GET", f"{M}/journal"),
    ("GET", f"{M}/lots"),
    ("GET", f"{M}/rank"),
    ("POST", f"{M}/qr-token"),
    ("GET", f"{M}/profile"),
    ("PATCH", f"{M}/profile"),
    ("GET", f"{M}/identifiers"),
    ("POST", f"{M}/identifiers"),
    ("DELETE", f"{M}/identifiers/{{identifier_id}}"),
    ("GET", f"{M}/cards"),
    ("POST", f"{M}/cards"),
    ("POST", f"{M}/cards/{{card_id}}/activate"),
    ("POST", f"{M}/cards/{{card_id}}/block"),
    ("POST", f"{M}/cards/{{card_id}}/reissue"),
    ("GET", f"{M}/consents"),
    ("POST", f"{M}/consents"),
    ("POST", f"{M}/withdraw"),
    ("POST", f"{M}/events"),
    # purchases and the offline till's upload
    ("GET", "/v1/purchases"),
    ("POST", "/v1/purchases/quote"),
    ("POST", "/v1/purchases"),
    ("POST", "/v1/purchases/ec"),
    ("POST", "/v1/purchases/confirm"),
    ("POST", "/v1/purchases/returns"),
    ("POST", "/v1/batches"),
}
# Ends the session it is called with, so it runs last.
LAST = "/console/logout"
# Ids that exist nowhere: an allowed call finds nothing (404) and changes nothing. Unsafe calls
# carry no Idempotency-Key and no JSON body, so an allowed API call stops at validation (422).
PATH_VALUES = {"path:path": "console.css", "code": "en"}
MISSING_ID = "999999"


def _calls(dependant):
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _methods(route):
    return sorted((getattr(route, "methods", None) or set()) - {"HEAD"})


def classify(route):
    """(kind, permission, scope) of a route; kind is console, admin-api, key or public."""
    calls = list(_calls(route.dependant)) if getattr(route, "dependant", None) else []
    permissions = {p for p in map(permission_of, calls) if p is not None}
    if len(permissions) > 1:
        raise AssertionError(f"{route.path} demands several permissions: {permissions}")
    gates = [call for call in calls if isinstance(call, StaffOrScope)]
    if gates:
        return "admin-api", permissions.pop(), gates[0].scope
    if permissions:
        if not route.path.startswith("/console"):
            raise AssertionError(f"{route.path}: a console-only gate outside the console")
        return "console", permissions.pop(), None
    if any(call is current_client or isinstance(call, RequireScope) for call in calls):
        unlisted = {(method, route.path) for method in _methods(route)} - KEY_ONLY
        if unlisted:
            raise AssertionError(
                f"{sorted(unlisted)} admit only an API key: admit staff with "
                "StaffOrScope(Permission.X, Scope.Y), or list them in KEY_ONLY as POS/app traffic"
            )
        return "key", None, None
    if route.path in PUBLIC:
        return "public", None, None
    raise AssertionError(f"{route.path} is guarded by nothing the matrix knows")


def endpoints(app):
    """(method, path template, concrete url, kind, permission, scope) per route, logout last."""
    rows = []
    for route in routing.iter_route_contexts(app.routes):
        kind, permission, scope = classify(route)
        url = re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m.group(1), MISSING_ID), route.path)
        for method in _methods(route):
            rows.append((method, route.path, url, kind, permission, scope))
    return sorted(rows, key=lambda row: row[1] == LAST)


@pytest.fixture(scope="module")
def place(app):
    with app.state.database.write() as session:
        program = f.program(session)
        partner = f.partner(session, program)
        store = f.store(session, partner)
        staff = {
            role: f.staff(session, role=role.value, store=store, partner=partner).username
            for role in Role
        }
        return {"partner_id": partner.id, "staff": staff}


def test_every_route_is_a_console_or_admin_route_with_a_permission_or_key_only_or_public(app):
    rows = endpoints(app)
    kinds = {row[3] for row in rows}
    assert kinds == {"console", "admin-api", "key", "public"}
    assert {(method, path) for method, path, _, kind, *_ in rows if kind == "key"} == KEY_ONLY
    admin = {(method, path) for method, path, _, kind, *_ in rows if kind == "admin-api"}
    # The admin areas of the API all admit staff (by their role) as well as keys.
    for prefix in ("/v1/campaigns", "/v1/ranks", "/v1/adjustments", "/v1/webhooks"):
        assert any(path.startswith(prefix) for _, path in admin), prefix
    assert ("POST", f"{M}/adjustments") in admin
    assert ("POST", f"{M}/merge") in admin
    assert ("GET", "/v1/batches/{batch_id}") in admin
    # Every permission a route demands is one the table knows, and the table grants every one
    # of them to someone.
    demanded = {row[4] for row in rows if row[4] is not None}
    assert demanded <= set(Permission)
    assert all(any(p in granted for granted in ROLE_PERMISSIONS.values()) for p in demanded)


def test_a_new_route_without_a_known_gate_fails_the_matrix():
    extra = FastAPI()

    @extra.get("/v1/reports")
    def reports(client: MembersReader) -> None:
        """A new admin route that forgot to admit staff with a permission."""

    @extra.get("/v1/open")
    def open_() -> None:
        """A new route with no gate at all."""

    for path in ("/v1/reports", "/v1/open"):
        route = next(r for r in extra.routes if getattr(r, "path", "") == path)
        with pytest.raises(AssertionError):
            classify(route)


@pytest.mark.parametrize("role", list(Role))
def test_role_gets_exactly_what_the_permission_table_grants(app, place, role):
    client = TestClient(app, base_url="https://console.example")
    assert f.console_login(client, place["staff"][role]).status_code == 303
    token = f.csrf_of(client.get("/console/account").text)
    wrong = []
    for method, path, url, kind, permission, _ in endpoints(app):
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
        if kind == "console":
            allowed = permission in ROLE_PERMISSIONS[role]
            refused = response.status_code == 403
            if allowed == refused or to_login:
                wrong.append((method, path, permission, response.status_code))
        elif kind == "admin-api":
            allowed = permission in ROLE_PERMISSIONS[role]
            if allowed:
                ok = response.status_code not in (401, 403)
            else:
                ok = response.status_code == 403 and response.json()["type"] == "forbidden"
            if not ok:
                wrong.append((method, path, permission, response.status_code))
        elif kind == "key":
            if response.status_code != 401:
                wrong.append((method, path, "api key", response.status_code))
        elif response.status_code in (401, 403):
            wrong.append((method, path, "public", response.status_code))
    assert wrong == []


def test_api_keys_pass_admin_routes_exactly_with_the_route_scope(app, place):
    rows = [row for row in endpoints(app) if row[3] == "admin-api"]
    keys = {}
    with app.state.database.write() as session:
        for scope in {row[5] for row in rows}:
            for holds in (True, False):
                _, keys[scope, holds] = clients.create_client(
                    session,
                    partner_id=place["partner_id"],
                    kind=ClientKind.PARTNER,
                    name=f"matrix {scope} {holds}",
                    scopes=[scope] if holds else [s for s in Scope if s != scope],
                    rate_per_minute=100_000,
                    as_of=utcnow(),
                )
    http = TestClient(app)
    wrong = []
    for method, path, url, _, _, scope in rows:
        for holds in (True, False):
            response = http.request(
                method,
                url,
                headers={"Authorization": f"Bearer {keys[scope, holds]}"},
                follow_redirects=False,
            )
            ok = (
                response.status_code not in (401, 403)
                if holds
                else response.status_code == 403 and response.json()["type"] == "forbidden"
            )
            if not ok:
                wrong.append((method, path, scope, holds, response.status_code))
    assert wrong == []
    # And no credential at all is a 401.
    anonymous = [
        (method, path)
        for method, path, url, *_ in rows
        if http.request(method, url, headers={"Idempotency-Key": uuid.uuid4().hex}).status_code
        != 401
    ]
    assert anonymous == []

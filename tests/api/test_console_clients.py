"""API clients and webhooks managed from the console: keys shown once, rotation, revocation,
endpoints; partner managers see only their own partner."""

import re

import pytest
from fastapi.testclient import TestClient

from tests import factories as f


@pytest.fixture(scope="module")
def world(app):
    with app.state.database.write() as session:
        program = f.program(session)
        mine, other = f.partner(session, program), f.partner(session, program)
        store = f.store(session, mine)
        member = f.member(session, program)
        return {
            "mine": mine.id,
            "other": other.id,
            "store": store.id,
            "member": member.id,
            "admin": f.staff(session, role="admin").username,
            "manager": f.staff(session, role="partner_manager", partner=mine).username,
        }


def _key(html):
    return re.search(r'<code class="secret">([^<]+)</code>', html).group(1)


def _api_status(app, key, member_id):
    with TestClient(app) as api:
        return api.get(
            f"/v1/members/{member_id}", headers={"Authorization": f"Bearer {key}"}
        ).status_code


def test_admin_issues_rotates_and_revokes_a_key(app, world):
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/clients")
    created = admin.post(
        "/console/clients",
        data={
            "csrf_token": f.csrf_of(page.text),
            "name": "レジ1",
            "partner_id": world["mine"],
            "store_id": world["store"],
            "kind": "store",
            "scopes": ["members:read", "purchases:write"],
        },
    )
    first = _key(created.text)
    assert _api_status(app, first, world["member"]) == 200
    client_id = re.search(r'href="/console/clients/(\d+)">レジ1', created.text).group(1)
    detail = admin.get(f"/console/clients/{client_id}")
    rotated = admin.post(
        f"/console/clients/{client_id}/rotate", data={"csrf_token": f.csrf_of(detail.text)}
    )
    second = _key(rotated.text)
    assert _api_status(app, first, world["member"]) == 401
    assert _api_status(app, second, world["member"]) == 200
    hooked = admin.post(
        f"/console/clients/{client_id}/endpoints",
        data={
            "csrf_token": f.csrf_of(detail.text),
            "url": "https://hooks.example.jp/kizuna",
            "event_types": ["points.earned", "member.created"],
        },
    )
    assert _key(hooked.text).startswith("whsec_")
    assert "https://hooks.example.jp/kizuna" in hooked.text
    admin.post(f"/console/clients/{client_id}/revoke", data={"csrf_token": f.csrf_of(detail.text)})
    assert _api_status(app, second, world["member"]) == 401


def test_partner_manager_sees_only_their_partner_and_cannot_issue_keys(app, world):
    admin = f.console_client(app, world["admin"])
    page = admin.get("/console/clients")
    for partner, name in ((world["mine"], "自社EC"), (world["other"], "他社アプリ")):
        admin.post(
            "/console/clients",
            data={
                "csrf_token": f.csrf_of(page.text),
                "name": name,
                "partner_id": partner,
                "kind": "ec",
            },
        )
    manager = f.console_client(app, world["manager"])
    listing = manager.get("/console/clients")
    assert "自社EC" in listing.text
    assert "他社アプリ" not in listing.text
    assert "クライアントの追加" not in listing.text
    other_id = re.search(
        r'href="/console/clients/(\d+)">他社アプリ', admin.get("/console/clients").text
    ).group(1)
    assert manager.get(f"/console/clients/{other_id}").status_code == 404
    refused = manager.post(
        "/console/clients",
        data={
            "csrf_token": f.csrf_of(listing.text),
            "name": "x",
            "partner_id": world["mine"],
            "kind": "ec",
        },
    )
    assert refused.status_code == 403

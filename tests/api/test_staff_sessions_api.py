"""The admin API through a staff user's console session: the role decides (one permission table
with the console), unsafe calls need the session's CSRF token, store staff and partner managers
stay within their scope, every action is audited as in the console, and API keys behave exactly
as before."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from kizuna.core.clock import utcnow
from kizuna.members import service as members
from kizuna.security import audit
from kizuna.security import service as security
from kizuna.security.models import AuditEntry
from tests import factories as f


class Staff:
    """A staff user's browser-like client: session cookie plus the page's CSRF token."""

    def __init__(self, app, username: str) -> None:
        self.username = username
        self.http = f.console_client(app, username)
        page = self.http.get("/console/account").text
        self.token = f.csrf_of(page)
        assert f'<meta name="csrf-token" content="{self.token}">' in page

    def get(self, path: str, **headers: str):
        return self.http.get(path, headers=headers)

    def send(self, method: str, path: str, body=None, *, csrf: str | None = "", **headers: str):
        sent = {"Idempotency-Key": uuid.uuid4().hex, **headers}
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf or self.token
        return self.http.request(method, path, json=body, headers=sent)

    def post(self, path: str, body=None, **kwargs):
        return self.send("POST", path, body, **kwargs)


def _staff(world, role: str, **scope) -> Staff:
    with world.database.write() as session:
        username = f.staff(session, role=role, **scope).username
    return Staff(world.http.app, username)


def _member(world, store) -> int:
    with world.database.write() as session:
        return members.create_member(
            session, program_id=world.program.id, joined_at=utcnow(), join_store_id=store.id
        ).id


def _entries(world, actor: str) -> list[AuditEntry]:
    with world.database.read() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.seq)
            )
        )


def _chain_ok(world) -> bool:
    with world.database.read() as session:
        return audit.verify(session).ok


def _campaign(code: str) -> dict:
    now = utcnow()
    return {
        "code": code,
        "definition": {
            "name": "週末ポイント2倍",
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
            "action": {"type": "multiply", "times": 2},
        },
    }


def _program(world) -> dict[str, str]:
    return {"Kizuna-Program": str(world.program.id)}


# --- the role decides ---------------------------------------------------------------------------


def test_marketer_manages_campaigns_through_the_api_and_each_change_is_audited(world):
    marketer = _staff(world, "marketer")

    created = marketer.post("/v1/campaigns", _campaign("API-1"), **_program(world))
    campaign_id = created.json()["id"]
    activated = marketer.post(f"/v1/campaigns/{campaign_id}/activate", **_program(world))
    listed = marketer.get("/v1/campaigns", **_program(world))

    assert created.status_code == 201, created.text
    assert created.json()["versions"][0]["created_by"] == f"staff:{marketer.username}"
    assert activated.json()["status"] == "active"
    assert [c["code"] for c in listed.json()] == ["API-1"]
    entries = _entries(world, f"staff:{marketer.username}")
    assert [(e.action, e.target) for e in entries if e.action.startswith("campaign.")] == [
        ("campaign.create", f"campaign:{campaign_id}"),
        ("campaign.activate", f"campaign:{campaign_id}"),
    ]
    assert all(e.details["via"] == "api" for e in entries if e.action.startswith("campaign."))
    assert _chain_ok(world)


def test_a_role_without_the_permission_gets_a_403_problem_and_nothing_changes(world):
    store_staff = _staff(world, "store_staff", store=world.store_a)
    auditor = _staff(world, "auditor")

    refused = store_staff.post("/v1/campaigns", _campaign("NOPE"), **_program(world))
    read = auditor.get("/v1/campaigns", **_program(world))
    write = auditor.post("/v1/campaigns", _campaign("NOPE"), **_program(world))

    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "forbidden"
    assert read.status_code == 200
    assert read.json() == []
    assert (write.status_code, write.json()["type"]) == (403, "forbidden")


def test_unsafe_call_through_a_session_without_the_csrf_token_is_refused(world):
    marketer = _staff(world, "marketer")

    missing = marketer.post("/v1/campaigns", _campaign("CSRF-1"), csrf=None, **_program(world))
    wrong = marketer.post("/v1/campaigns", _campaign("CSRF-2"), csrf="forged", **_program(world))
    other_site = marketer.post(
        "/v1/campaigns", _campaign("CSRF-3"), Origin="https://evil.example", **_program(world)
    )

    for refused in (missing, wrong, other_site):
        assert refused.status_code == 403
        assert refused.json()["type"] == "csrf_failed"
    assert marketer.get("/v1/campaigns", **_program(world)).json() == []


def test_no_key_and_no_session_is_401_and_an_ended_session_too(world):
    anonymous = TestClient(world.http.app, base_url="https://console.example")
    marketer = _staff(world, "marketer")
    marketer.http.post("/console/logout", data={"csrf_token": marketer.token})
    anonymous.cookies.set("kizuna_session", "made-up", domain="console.example")

    nothing = TestClient(world.http.app).get("/v1/campaigns")
    made_up = anonymous.get("/v1/campaigns")
    logged_out = marketer.http.get("/v1/campaigns")

    assert (nothing.status_code, nothing.json()["type"]) == (401, "unauthenticated")
    assert (made_up.status_code, made_up.json()["type"]) == (401, "not_authenticated")
    assert logged_out.status_code == 401


def test_the_session_cookie_is_sent_to_the_api_and_stays_secure_httponly_strict(world):
    with world.database.write() as session:
        username = f.staff(session, role="marketer").username
    browser = TestClient(world.http.app, base_url="https://console.example")

    response = f.console_login(browser, username)

    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("kizuna_session=")
    )
    assert "Path=/;" in cookie
    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=strict"))


def test_a_staff_user_who_must_change_their_password_is_refused_by_the_api(world):
    with world.database.write() as session:
        username = security.create_staff(
            session,
            username=f"reset-{uuid.uuid4().hex[:8]}",
            display_name="Reset",
            role="admin",
            password=f.STAFF_PASSWORD,
            actor="test",
            as_of=utcnow(),
            must_change_password=True,
        ).username
    browser = TestClient(world.http.app, base_url="https://console.example")
    f.console_login(browser, username)

    refused = browser.get("/v1/campaigns", headers=_program(world))

    assert (refused.status_code, refused.json()["type"]) == (403, "password_change_required")


def test_api_keys_are_unchanged_and_decide_alone_when_sent(world):
    manager = world.caller(world.partner_a, scopes=["campaigns:manage"])
    store_staff = _staff(world, "store_staff", store=world.store_a)
    key = {"Authorization": f"Bearer {manager.key}", "Idempotency-Key": uuid.uuid4().hex}

    # A key needs no CSRF token, and a session beside it neither adds nor takes away anything.
    by_key = store_staff.http.post("/v1/campaigns", json=_campaign("KEY-1"), headers=key)
    lacking = world.a.post("/v1/campaigns", _campaign("KEY-2"))

    assert by_key.status_code == 201, by_key.text
    assert by_key.json()["versions"][0]["created_by"] == f"client:{manager.client_id}"
    assert (lacking.status_code, lacking.json()["scope"]) == (403, "campaigns:manage")
    # Clients' actions are not staff actions: nothing is written to the staff audit log.
    with world.database.read() as session:
        assert (
            session.scalars(
                select(AuditEntry).where(AuditEntry.target == f"campaign:{by_key.json()['id']}")
            ).first()
            is None
        )


def test_unrestricted_staff_name_the_programme_when_there_are_several(world):
    admin = _staff(world, "admin")
    partner_manager = _staff(world, "partner_manager", partner=world.partner_a)

    unnamed = admin.get("/v1/campaigns")
    unknown = admin.get("/v1/campaigns", **{"Kizuna-Program": "987654321"})
    named = admin.get("/v1/campaigns", **_program(world))
    # A partner manager always acts in their partner's programme.
    own = partner_manager.get("/v1/campaigns")

    assert (unnamed.status_code, unnamed.json()["type"]) == (422, "program_required")
    assert (unknown.status_code, unknown.json()["type"]) == (404, "program_not_found")
    assert named.status_code == 200
    assert own.status_code == 200


# --- scopes: store staff and partner managers ------------------------------------------------


def test_store_staff_adjust_only_their_store_members_and_it_is_audited(world):
    store_staff = _staff(world, "store_staff", store=world.store_a)
    ours, theirs = _member(world, world.store_a), _member(world, world.store_b)
    body = {"points": 300, "reason_code": "goodwill", "operator": "counter"}

    posted = store_staff.post(f"/v1/members/{ours}/adjustments", body)
    hidden = store_staff.post(f"/v1/members/{theirs}/adjustments", body)

    assert posted.status_code == 201, posted.text
    assert posted.json()["balance"]["available"] == 300
    assert (hidden.status_code, hidden.json()["type"]) == (404, "member_not_found")
    (entry,) = [
        e
        for e in _entries(world, f"staff:{store_staff.username}")
        if e.action == "points.adjust_request"
    ]
    assert entry.target == f"member:{ours}"
    assert entry.details["points"] == 300
    assert entry.details["status"] == "posted"
    assert _chain_ok(world)


def test_large_adjustment_waits_for_a_second_staff_member_through_the_api(world):
    maker, checker = _staff(world, "support"), _staff(world, "support")
    store_staff = _staff(world, "store_staff", store=world.store_a)
    member_id = _member(world, world.store_a)

    asked = maker.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": 50_000, "reason_code": "compensation", "operator": "-"},
    ).json()
    path = f"/v1/adjustments/{asked['request_id']}/approve"
    own = maker.post(path, {"operator": "-"})
    not_allowed = store_staff.post(path, {"operator": "-"})
    approved = checker.post(path, {"operator": "-"})

    assert asked["status"] == "pending"
    assert (own.status_code, own.json()["type"]) == (403, "self_approval")
    assert (not_allowed.status_code, not_allowed.json()["type"]) == (403, "forbidden")
    assert approved.status_code == 200, approved.text
    assert approved.json()["balance"]["available"] == 50_000
    (entry,) = [
        e
        for e in _entries(world, f"staff:{checker.username}")
        if e.action == "points.adjust_approve"
    ]
    assert entry.details["requested_by"] == f"staff:{maker.username}"
    assert entry.details["entry_id"] == approved.json()["entry_id"]
    assert _chain_ok(world)


def test_partner_manager_reads_only_their_partners_webhooks_and_cannot_change_them(world):
    manager = _staff(world, "partner_manager", partner=world.partner_a)
    admin = _staff(world, "admin")
    endpoint = {"url": "https://hooks.example/kizuna", "event_types": ["*"]}

    created = admin.post(f"/v1/webhooks/endpoints?client_id={world.a.client_id}", endpoint)
    own = manager.get(f"/v1/webhooks/endpoints?client_id={world.a.client_id}")
    other = manager.get(f"/v1/webhooks/endpoints?client_id={world.b.client_id}")
    unnamed = manager.get("/v1/webhooks/endpoints")
    change = manager.post(f"/v1/webhooks/endpoints?client_id={world.a.client_id}", endpoint)

    assert created.status_code == 201, created.text
    # The client sees, with its key, what staff registered for it.
    assert [e["id"] for e in world.a.get("/v1/webhooks/endpoints").json()] == [created.json()["id"]]
    assert [e["id"] for e in own.json()] == [created.json()["id"]]
    assert (other.status_code, other.json()["type"]) == (404, "client_not_found")
    assert (unnamed.status_code, unnamed.json()["type"]) == (422, "client_required")
    assert (change.status_code, change.json()["type"]) == (403, "forbidden")
    (entry,) = [e for e in _entries(world, f"staff:{admin.username}") if e.action.startswith("web")]
    assert (entry.action, entry.target) == ("webhook.create", f"client:{world.a.client_id}")
    # A key naming another client's webhooks finds nothing.
    assert world.a.get(f"/v1/webhooks/endpoints?client_id={world.b.client_id}").status_code == 404


def test_partner_manager_reads_only_their_partners_batches(world):
    member_id = _member(world, world.store_a)
    row = {
        "store_id": world.store_a.id,
        "receipt_no": "STAFF-B-1",
        "member_id": member_id,
        "occurred_at": "2026-11-20T10:00:00+09:00",
        "lines": [{"sku": "A", "amount": 1000}],
    }
    uploaded = world.a.post(
        "/v1/batches",
        content=json.dumps(row).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    batch_id = uploaded.json()["id"]
    ours = _staff(world, "partner_manager", partner=world.partner_a)
    theirs = _staff(world, "partner_manager", partner=world.partner_b)
    store_staff = _staff(world, "store_staff", store=world.store_a)

    assert uploaded.status_code == 202, uploaded.text
    assert ours.get(f"/v1/batches/{batch_id}").json()["total_rows"] == 1
    assert [r["line_no"] for r in ours.get(f"/v1/batches/{batch_id}/rows").json()] == [1]
    assert theirs.get(f"/v1/batches/{batch_id}").json()["type"] == "batch_not_found"
    assert store_staff.get(f"/v1/batches/{batch_id}").status_code == 403
    # Uploading stays the till's: a staff session cannot.
    assert ours.post("/v1/batches").status_code == 401


def test_support_merges_two_members_through_the_api_as_in_the_console(world):
    support = _staff(world, "support")
    survivor, merged = _member(world, world.store_a), _member(world, world.store_a)

    candidates = support.get("/v1/merge-candidates", **_program(world))
    done = support.post(f"/v1/members/{survivor}/merge", {"merged_id": merged})

    assert candidates.status_code == 200
    assert done.status_code == 200, done.text
    (entry,) = [
        e for e in _entries(world, f"staff:{support.username}") if e.action == "member.merge"
    ]
    assert entry.details["merged_id"] == merged
    assert _chain_ok(world)

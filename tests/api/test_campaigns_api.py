"""Campaigns and ranks over HTTP: CRUD with versions, earning at the till, simulation, scopes."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from kizuna.core.clock import utcnow
from kizuna.rules.models import CampaignGrant

MANAGER_SCOPES = ["campaigns:manage", "members:read", "purchases:write"]


def _definition(**overrides):
    now = utcnow()
    return {
        "name": "週末ポイント2倍",
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "action": {"type": "multiply", "times": 2},
        **overrides,
    }


def _buy(caller, world, member_id, amount=3000):
    response = caller.post(
        "/v1/purchases",
        {
            "member_id": member_id,
            "store_id": world.store_a.id,
            "receipt_no": uuid.uuid4().hex[:12],
            "lines": [{"sku": "A", "amount": amount}],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_campaign_lifecycle_versions_and_earning_at_the_till(world):
    manager = world.caller(world.partner_a, scopes=MANAGER_SCOPES)
    member_id = world.member()
    created = manager.post(
        "/v1/campaigns", {"code": f"W{uuid.uuid4().hex[:6]}", "definition": _definition()}
    )
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert (campaign["status"], campaign["version"]) == ("draft", 1)
    assert [row["rule"] for row in _buy(manager, world, member_id)["breakdown"]] == ["base"]

    activated = manager.post(f"/v1/campaigns/{campaign['id']}/activate")
    assert activated.json()["status"] == "active"
    earned = _buy(manager, world, member_id)
    assert [(row["rule"], row["points"]) for row in earned["breakdown"]] == [
        ("base", 30),
        (f"campaign:{campaign['code']}", 30),
    ]

    edited = manager.http.put(
        f"/v1/campaigns/{campaign['id']}",
        json={"definition": _definition(action={"type": "fixed", "points": 7})},
        headers=manager.headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert edited.status_code == 200, edited.text
    versions = edited.json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["effective_to"] == versions[1]["effective_from"]
    assert _buy(manager, world, member_id)["breakdown"][-1]["points"] == 7

    ended = manager.post(f"/v1/campaigns/{campaign['id']}/end")
    assert ended.json()["status"] == "ended"
    assert len(_buy(manager, world, member_id)["breakdown"]) == 1


def test_an_invalid_condition_is_refused_naming_the_bad_node(world):
    manager = world.caller(world.partner_a, scopes=MANAGER_SCOPES)
    bad = _definition(condition={"all": [{"field": "event.amount", "op": "gte", "value": "3000"}]})
    response = manager.post("/v1/campaigns", {"code": "BAD1", "definition": bad})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("invalid_campaign")
    assert problem["path"] == "$.condition.all[0].value"


def test_simulation_reports_cost_and_reach_and_writes_nothing(world):
    manager = world.caller(world.partner_a, scopes=MANAGER_SCOPES)
    members = [world.member() for _ in range(3)]
    for member_id in members[:2]:
        _buy(manager, world, member_id, amount=5000)
    draft = manager.post(
        "/v1/campaigns",
        {"code": f"S{uuid.uuid4().hex[:6]}", "definition": _definition(per_member_cap=30)},
    ).json()
    with world.database.read() as session:
        grants = session.scalar(select(func.count()).select_from(CampaignGrant))
    now = utcnow()
    response = manager.post(
        f"/v1/campaigns/{draft['id']}/simulate",
        {
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(minutes=1)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["purchases"], result["members_reached"]) == (2, 2)
    assert (result["points"], result["points_over_limits"]) == (60, 40)  # 50 each, capped at 30
    with world.database.read() as session:
        assert session.scalar(select(func.count()).select_from(CampaignGrant)) == grants


def test_campaigns_need_the_campaigns_manage_scope(world):
    response = world.a.post("/v1/campaigns", {"code": "NOPE", "definition": _definition()})
    assert response.status_code == 403
    assert world.a.get("/v1/campaigns").status_code == 403


def test_ranks_configured_over_http_show_a_members_progress(world):
    manager = world.caller(world.partner_a, scopes=MANAGER_SCOPES)
    tiers = [
        {"code": "regular", "name": "レギュラー", "threshold": 0},
        {"code": "silver", "name": "シルバー", "threshold": 10000, "earn_multiplier_pct": 150},
    ]
    configured = manager.http.put(
        "/v1/ranks",
        json={"metric": "spend", "window": "rolling_12m", "tiers": tiers},
        headers=manager.headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert configured.status_code == 200, configured.text
    member_id = world.member()
    _buy(manager, world, member_id, amount=4000)
    shown = manager.get(f"/v1/members/{member_id}/rank").json()
    assert (
        shown["tier"]["code"],
        shown["value"],
        shown["next_tier"]["code"],
        shown["remaining"],
    ) == (
        "regular",
        4000,
        "silver",
        6000,
    )
    _buy(manager, world, member_id, amount=7000)
    shown = manager.get(f"/v1/members/{member_id}/rank").json()
    assert shown["tier"]["code"] == "silver"
    assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in shown["history"]] == [
        ("regular", "silver", "upgrade")
    ]

"""Members through HTTP: sign-up, lookup, balance, journal pages, lots and the QR token."""

from __future__ import annotations

from datetime import timedelta

from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.members.merge import merge_members


def test_sign_up_with_a_phone_then_look_the_member_up_by_it(world):
    created = world.a.post(
        "/v1/members", {"identifiers": [{"type": "phone", "value": "+819011112222"}]}
    )
    assert created.status_code == 201, created.text
    member_id = created.json()["id"]

    found = world.a.get("/v1/members/lookup", params={"type": "phone", "value": "+819011112222"})

    assert found.status_code == 200
    assert found.json()["id"] == member_id
    assert world.a.get(f"/v1/members/{member_id}").json()["status"] == "active"


def test_taken_identifier_is_a_conflict_problem(world):
    body = {"identifiers": [{"type": "line", "value": "U-taken-1"}]}
    assert world.a.post("/v1/members", body).status_code == 201

    again = world.a.post("/v1/members", body)

    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["type"] == "identifier_taken"


def test_validation_error_names_the_field(world):
    response = world.a.post("/v1/members", {"identifiers": [{"type": "phone"}]})

    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "validation_error"
    assert "body.identifiers.0.value" in [error["field"] for error in problem["errors"]]


def test_balance_and_lots_show_the_members_points(world):
    member_id = world.member(points=500)

    balance = world.a.get(f"/v1/members/{member_id}/balance").json()
    lots = world.a.get(f"/v1/members/{member_id}/lots").json()

    assert (balance["available"], balance["pending"], balance["debt"]) == (500, 0, 0)
    assert [(lot["remaining"], lot["state"]) for lot in lots] == [(500, "available")]


def test_journal_pages_with_a_cursor_and_filters_by_type(world):
    member_id = world.member()
    for n in range(5):
        receipt = {
            "member_id": member_id,
            "store_id": world.store_a.id,
            "receipt_no": f"J-{n}",
            "lines": [{"sku": "A", "amount": 1000}],
        }
        assert world.a.post("/v1/purchases", receipt).status_code == 201
    world.a.post(
        "/v1/purchases",
        {
            "member_id": member_id,
            "store_id": world.store_a.id,
            "receipt_no": "J-R",
            "lines": [{"sku": "A", "amount": 1000}],
            "redeem_points": 10,
        },
    )

    first = world.a.get(f"/v1/members/{member_id}/journal", params={"limit": 4}).json()
    second = world.a.get(
        f"/v1/members/{member_id}/journal", params={"limit": 4, "cursor": first["next_cursor"]}
    ).json()
    redeems = world.a.get(f"/v1/members/{member_id}/journal", params={"type": "redeem"}).json()

    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(ids) == 7
    assert ids == sorted(ids, reverse=True)
    assert second["next_cursor"] is None
    assert [(e["type"], e["amount"]) for e in redeems["items"]] == [("redeem", -10)]


def test_journal_filters_by_period(world):
    member_id = world.member(points=100)
    now = utcnow()

    inside = world.a.get(
        f"/v1/members/{member_id}/journal",
        params={
            "from": (now - timedelta(hours=1)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        },
    ).json()
    before = world.a.get(
        f"/v1/members/{member_id}/journal", params={"to": (now - timedelta(hours=1)).isoformat()}
    ).json()

    assert len(inside["items"]) == 1
    assert before["items"] == []


def test_qr_token_identifies_the_member_once(world):
    member_id = world.member()
    app = world.caller(world.partner_a, kind=ClientKind.APP)
    issued = app.post(f"/v1/members/{member_id}/qr-token")
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]

    first = world.a.post("/v1/members/identify", {"token": token})
    second = world.a.post("/v1/members/identify", {"token": token})

    assert first.status_code == 200
    assert first.json()["id"] == member_id
    assert second.status_code == 404
    assert second.json()["type"] == "qr_token_invalid"


def test_a_new_qr_token_retires_the_previous_one(world):
    member_id = world.member()
    app = world.caller(world.partner_a, kind=ClientKind.APP)
    old = app.post(f"/v1/members/{member_id}/qr-token").json()["token"]
    new = app.post(f"/v1/members/{member_id}/qr-token").json()["token"]

    assert world.a.post("/v1/members/identify", {"token": old}).status_code == 404
    assert world.a.post("/v1/members/identify", {"token": new}).status_code == 200


def test_journal_of_a_survivor_includes_the_merged_members_history(world):
    survivor, merged = world.member(points=10), world.member(points=20)
    with world.database.write() as session:
        merge_members(
            session, survivor_id=survivor, merged_id=merged, actor="staff:1", as_of=utcnow()
        )

    journal = world.a.get(f"/v1/members/{survivor}/journal").json()["items"]
    old = world.a.get(f"/v1/members/{merged}").json()

    assert 10 in [entry["amount"] for entry in journal]
    assert 20 in [entry["amount"] for entry in journal]
    assert (old["status"], old["merged_into_id"]) == ("merged", survivor)

"""Purchases through HTTP: quote, commit with redemption, returns, EC pending and confirmation."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from kizuna.core.clock import utcnow


def receipt(world, member_id, receipt_no, amount=1000, **extra):
    return {
        "member_id": member_id,
        "store_id": world.store_a.id,
        "receipt_no": receipt_no,
        "lines": [{"sku": "A", "amount": amount}],
        **extra,
    }


def test_quote_shows_the_earn_breakdown_and_writes_nothing(world):
    member_id = world.member()

    quote = world.a.post("/v1/purchases/quote", receipt(world, member_id, "Q-1", 2500))

    assert quote.status_code == 200, quote.text
    assert quote.json()["earned"] == 25
    assert [row["rule"] for row in quote.json()["breakdown"]] == ["base"]
    assert world.a.get(f"/v1/members/{member_id}/balance").json()["available"] == 0


def test_commit_redeems_and_earns_in_one_call(world):
    member_id = world.member(points=300)

    response = world.a.post(
        "/v1/purchases", receipt(world, member_id, "C-1", 5000, redeem_points=200)
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["redeemed"], body["earned"]) == (200, 48)
    assert body["balance"]["available"] == 300 - 200 + 48


def test_redeeming_more_than_available_is_refused_and_changes_nothing(world):
    member_id = world.member(points=100)

    response = world.a.post(
        "/v1/purchases", receipt(world, member_id, "C-2", 5000, redeem_points=101)
    )

    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_points"
    assert world.a.get(f"/v1/members/{member_id}/balance").json()["available"] == 100


def test_partial_then_full_return_takes_back_the_earn_and_restores_points(world):
    member_id = world.member(points=100)
    body = receipt(world, member_id, "R-1", redeem_points=100)
    body["lines"] = [{"sku": "A", "amount": 3000, "quantity": 3}]
    assert world.a.post("/v1/purchases", body).status_code == 201

    partial = world.a.post(
        "/v1/purchases/returns",
        {
            "store_id": world.store_a.id,
            "receipt_no": "R-1",
            "lines": [{"line_no": 0, "quantity": 1}],
        },
    )
    full = world.a.post(
        "/v1/purchases/returns", {"store_id": world.store_a.id, "receipt_no": "R-1"}
    )
    again = world.a.post(
        "/v1/purchases/returns", {"store_id": world.store_a.id, "receipt_no": "R-1"}
    )

    assert partial.status_code == 200, partial.text
    assert partial.json()["status"] == "partially_returned"
    assert full.json()["status"] == "returned"
    assert full.json()["balance"]["available"] == 100
    assert again.status_code == 409
    assert again.json()["type"] == "return_exceeds_purchase"


def test_ec_points_stay_pending_until_confirmed(world):
    member_id = world.member()
    body = receipt(world, member_id, "EC-1", 10000)
    body["available_at"] = (utcnow() + timedelta(days=14)).isoformat()

    committed = world.a.post("/v1/purchases/ec", body)
    pending = world.a.get(f"/v1/members/{member_id}/balance").json()
    confirmed = world.a.post(
        "/v1/purchases/confirm", {"store_id": world.store_a.id, "receipt_no": "EC-1"}
    )
    after = world.a.get(f"/v1/members/{member_id}/balance").json()

    assert committed.status_code == 201, committed.text
    assert committed.json()["pending"] is True
    assert (pending["pending"], pending["available"]) == (100, 0)
    assert confirmed.json()["points_confirmed"] == 100
    assert (after["pending"], after["available"]) == (0, 100)


def test_confirming_an_order_without_pending_points_is_a_conflict(world):
    member_id = world.member()
    world.a.post("/v1/purchases", receipt(world, member_id, "EC-2"))

    response = world.a.post(
        "/v1/purchases/confirm", {"store_id": world.store_a.id, "receipt_no": "EC-2"}
    )

    assert response.status_code == 409
    assert response.json()["type"] == "not_pending"


def test_receipt_lookup_shows_what_was_returned_and_restored(world):
    member_id = world.member(points=100)
    body = receipt(world, member_id, "G-1", redeem_points=60)
    body["lines"] = [{"sku": "A", "amount": 3000, "quantity": 3}]
    world.a.post("/v1/purchases", body)
    world.a.post(
        "/v1/purchases/returns",
        {
            "store_id": world.store_a.id,
            "receipt_no": "G-1",
            "lines": [{"line_no": 0, "quantity": 1}],
            "restore_points": 50,
        },
    )

    found = world.a.get("/v1/purchases", params={"store_id": world.store_a.id, "receipt_no": "G-1"})
    missing = world.a.get(
        "/v1/purchases", params={"store_id": world.store_a.id, "receipt_no": "G-404"}
    )
    elsewhere = world.b.get(
        "/v1/purchases", params={"store_id": world.store_a.id, "receipt_no": "G-1"}
    )

    assert found.status_code == 200, found.text
    detail = found.json()
    assert (detail["status"], detail["returned_quantities"]) == ("partially_returned", [1])
    assert (detail["refunded_amount"], detail["points_restored"]) == (1000, 50)
    assert missing.status_code == elsewhere.status_code == 404


def test_an_app_started_again_still_commits_receipts(world):
    # given the app's lifespan run to its end once more (a test client started and closed)
    member_id = world.member()
    with TestClient(world.http.app):
        pass
    # when a till commits a receipt through the app, still serving
    response = world.a.post("/v1/purchases", receipt(world, member_id, "AGAIN-1"))
    # then the commit ran on the app's commit threads
    assert response.status_code == 201, response.text

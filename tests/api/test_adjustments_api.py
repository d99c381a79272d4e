"""Staff adjustments over HTTP: scope-protected, posted at once when small, maker–checker above
the programme's threshold."""

from __future__ import annotations


def test_small_adjustment_posts_at_once(world):
    member_id = world.member()

    response = world.a.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": 300, "reason_code": "goodwill", "operator": "staff-1"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "posted"
    assert response.json()["balance"]["available"] == 300


def test_large_adjustment_waits_for_a_second_person(world):
    member_id = world.member()
    asked = world.a.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": 50_000, "reason_code": "compensation", "operator": "maker"},
    ).json()

    own = world.a.post(f"/v1/adjustments/{asked['request_id']}/approve", {"operator": "maker"})
    other = world.a.post(f"/v1/adjustments/{asked['request_id']}/approve", {"operator": "checker"})

    assert asked["status"] == "pending"
    assert asked["balance"]["available"] == 0
    assert own.status_code == 403
    assert own.json()["type"] == "self_approval"
    assert other.status_code == 200
    assert other.json()["balance"]["available"] == 50_000


def test_rejected_adjustment_posts_nothing(world):
    member_id = world.member()
    asked = world.a.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": 20_000, "reason_code": "correction", "operator": "maker"},
    ).json()

    rejected = world.a.post(f"/v1/adjustments/{asked['request_id']}/reject", {"operator": "boss"})

    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["balance"]["available"] == 0


def test_adjusting_needs_the_points_adjust_scope(world):
    member_id = world.member()
    till = world.caller(world.partner_a)  # default partner scopes: no points:adjust

    response = till.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": 10, "reason_code": "goodwill", "operator": "x"},
    )

    assert response.status_code == 403
    assert response.json()["scope"] == "points:adjust"


def test_taking_more_than_the_member_has_is_refused(world):
    member_id = world.member(points=5)

    response = world.a.post(
        f"/v1/members/{member_id}/adjustments",
        {"points": -6, "reason_code": "correction", "operator": "staff-1"},
    )

    assert response.status_code == 409
    assert response.json()["type"] == "insufficient_points"

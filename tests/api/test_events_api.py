"""Member events over HTTP: recorded, and earning nothing unless a campaign covers them."""

from __future__ import annotations

from sqlalchemy import select

from kizuna.activity.models import MemberEvent


def test_visit_is_recorded_and_earns_nothing_without_a_campaign(world):
    member_id = world.member()

    response = world.a.post(
        f"/v1/members/{member_id}/events", {"type": "visit", "store_id": world.store_a.id}
    )

    assert response.status_code == 201, response.text
    assert response.json()["earned"] == 0
    with world.database.read() as session:
        recorded = session.scalars(
            select(MemberEvent.event_type).where(MemberEvent.member_id == member_id)
        ).all()
    assert recorded == ["visit"]


def test_custom_event_types_need_the_custom_prefix(world):
    member_id = world.member()

    ok = world.a.post(f"/v1/members/{member_id}/events", {"type": "custom.survey_done"})
    bad = world.a.post(f"/v1/members/{member_id}/events", {"type": "teleport"})

    assert ok.status_code == 201
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.type"


def test_event_at_another_partners_store_is_refused(world):
    member_id = world.member()

    response = world.a.post(
        f"/v1/members/{member_id}/events", {"type": "visit", "store_id": world.store_b.id}
    )

    assert response.status_code == 404

"""Identity through HTTP: profile, identifiers, cards at the till, consents, merge, withdrawal."""

from __future__ import annotations


def _sign_up(world, **identifiers):
    body = {"identifiers": [{"type": k, "value": v} for k, v in identifiers.items()]}
    created = world.a.post("/v1/members", body)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_profile_is_normalised_and_a_variant_phone_finds_the_member(world):
    member_id = _sign_up(world, phone="090-3333-4444")
    patched = world.a.http.patch(
        f"/v1/members/{member_id}/profile",
        json={"name_kana": "ｽｽﾞｷ ｲﾁﾛｳ", "email": "Ichiro@Example.JP", "birth_date": "1979-02-03"},
        headers=world.a.headers | {"Idempotency-Key": "profile-1"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name_kana"] == "スズキイチロウ"
    assert patched.json()["email"] == "ichiro@example.jp"
    found = world.a.get("/v1/members/lookup", params={"type": "phone", "value": "+81 90 3333 4444"})
    assert found.json()["id"] == member_id
    profile = world.a.get(f"/v1/members/{member_id}/profile").json()
    assert profile["phone"] == "+819033334444"


def test_an_invalid_phone_is_a_problem_naming_the_field_not_the_value(world):
    member_id = _sign_up(world, line="U-identity-1")
    response = world.a.post(
        f"/v1/members/{member_id}/identifiers", {"type": "phone", "value": "12-34"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "invalid_identifier"
    assert "12-34" not in response.text


def test_a_lost_card_is_reissued_and_the_old_one_is_refused_at_the_till(world):
    member_id = _sign_up(world, line="U-identity-2")
    issued = world.a.post(f"/v1/members/{member_id}/cards", {"activate": True})
    assert issued.status_code == 201, issued.text
    old_number, old_id = issued.json()["number"], issued.json()["id"]
    assert (
        world.a.get("/v1/members/lookup", params={"type": "card", "value": old_number}).json()["id"]
        == member_id
    )

    reissued = world.a.post(f"/v1/members/{member_id}/cards/{old_id}/reissue", {"reason": "lost"})

    assert reissued.status_code == 201, reissued.text
    refused = world.a.get("/v1/members/lookup", params={"type": "card", "value": old_number})
    assert refused.status_code == 409
    assert refused.json()["type"] == "card_blocked"
    new_number = reissued.json()["number"]
    ok = world.a.get("/v1/members/lookup", params={"type": "card", "value": new_number})
    assert ok.json()["id"] == member_id
    listed = world.a.get(f"/v1/members/{member_id}/cards").json()
    assert [card["status"] for card in listed] == ["blocked", "active"]
    assert all(new_number not in card["masked_number"] for card in listed)


def test_consent_withdrawal_is_in_force_at_once(world):
    member_id = _sign_up(world, line="U-identity-3")
    body = {"channel": "email", "granted": True, "source": "app"}
    assert world.a.post(f"/v1/members/{member_id}/consents", body).status_code == 200
    world.a.post(f"/v1/members/{member_id}/consents", {**body, "granted": False})
    consents = world.a.get(f"/v1/members/{member_id}/consents").json()["consents"]
    assert {c["channel"]: c["granted"] for c in consents}["email"] is False


def test_duplicates_are_proposed_then_merged_and_the_old_phone_reaches_the_survivor(world):
    survivor = world.member(points=100)
    duplicate = world.member(points=250)
    for member_id in (survivor, duplicate):
        world.a.http.patch(
            f"/v1/members/{member_id}/profile",
            json={
                "name_kanji": "田中 一郎",
                "name_kana": "たなか いちろう",
                "birth_date": "1970-10-10",
            },
            headers=world.a.headers | {"Idempotency-Key": f"p-{member_id}"},
        )
    world.a.post(f"/v1/members/{duplicate}/identifiers", {"type": "phone", "value": "09077778888"})
    candidates = world.a.get(f"/v1/members/{survivor}/merge-candidates").json()["candidates"]
    assert [c["other_id"] for c in candidates] == [duplicate]

    merged = world.a.post(
        f"/v1/members/{survivor}/merge", {"merged_id": duplicate}, key=f"merge-{duplicate}"
    )
    replay = world.a.post(
        f"/v1/members/{survivor}/merge", {"merged_id": duplicate}, key=f"merge-{duplicate}"
    )

    assert merged.status_code == 200, merged.text
    assert merged.json()["moved"]["points"] == 250
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert world.a.get(f"/v1/members/{survivor}/balance").json()["available"] == 350
    found = world.a.get("/v1/members/lookup", params={"type": "phone", "value": "090-7777-8888"})
    assert found.json()["id"] == survivor
    assert world.a.get(f"/v1/members/{duplicate}").json()["status"] == "merged"


def test_withdrawal_forfeits_points_and_another_partners_client_cannot_touch_the_member(world):
    member_id = world.member(points=40)
    other = world.caller(world.partner_b, scopes=["members:read"])
    assert other.post(f"/v1/members/{member_id}/withdraw", {}).status_code == 403

    response = world.a.post(f"/v1/members/{member_id}/withdraw", {"reason": "requested"})

    assert response.status_code == 200, response.text
    assert response.json()["forfeited_points"] == 40
    assert world.a.get(f"/v1/members/{member_id}").json()["status"] == "withdrawn"
    again = world.a.post(f"/v1/members/{member_id}/withdraw", {})
    assert again.json()["type"] == "already_withdrawn"

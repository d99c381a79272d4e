"""Authentication, scopes, partner isolation and rate limits."""

from __future__ import annotations

from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from tests import factories as f


def test_missing_or_unknown_key_is_unauthenticated(world):
    anonymous = world.http.get("/v1/members/1")
    forged = world.http.get(
        "/v1/members/1", headers={"Authorization": "Bearer kz_000000000000_forged"}
    )

    assert anonymous.status_code == forged.status_code == 401
    assert anonymous.json()["type"] == "unauthenticated"
    assert anonymous.headers["content-type"].startswith("application/problem+json")


def test_key_is_stored_only_as_a_hash(world):
    with world.database.read() as session:
        stored = clients.get_client(session, world.a.client_id)

    assert world.a.key not in (stored.key_hash, stored.key_prefix)
    assert len(stored.key_hash) == 64


def test_rotated_key_replaces_the_old_one_and_revoked_client_is_locked_out(world):
    caller = world.caller(world.partner_a)
    with world.database.write() as session:
        new_key = clients.rotate_key(session, client_id=caller.client_id, as_of=utcnow())
    member_id = world.member()

    old = caller.get(f"/v1/members/{member_id}")
    caller.key = new_key
    new = caller.get(f"/v1/members/{member_id}")
    revoked = world.caller(world.partner_a)
    with world.database.write() as session:
        clients.revoke(session, client_id=revoked.client_id, as_of=utcnow())

    assert old.status_code == 401
    assert new.status_code == 200
    assert revoked.get(f"/v1/members/{member_id}").status_code == 401


def test_missing_scope_is_forbidden_and_names_the_scope(world):
    reader = world.caller(world.partner_a, scopes=["members:read"])
    member_id = world.member()

    response = reader.post(
        "/v1/purchases",
        {
            "member_id": member_id,
            "store_id": world.store_a.id,
            "receipt_no": "S-1",
            "lines": [{"sku": "A", "amount": 100}],
        },
    )

    assert response.status_code == 403
    assert response.json()["scope"] == "purchases:write"


def test_app_client_cannot_post_purchases_and_till_cannot_issue_qr_tokens(world):
    app = world.caller(world.partner_a, kind=ClientKind.APP)
    member_id = world.member()

    assert app.post("/v1/purchases/quote", {}).status_code == 403
    assert world.a.post(f"/v1/members/{member_id}/qr-token").status_code == 403


def test_partner_cannot_act_at_another_partners_store(world):
    member_id = world.member(points=100)
    body = {
        "member_id": member_id,
        "store_id": world.store_a.id,
        "receipt_no": "X-1",
        "lines": [{"sku": "A", "amount": 1000}],
    }
    assert world.a.post("/v1/purchases", body).status_code == 201

    commit = world.b.post("/v1/purchases", body | {"receipt_no": "X-2"})
    refund = world.b.post(
        "/v1/purchases/returns", {"store_id": world.store_a.id, "receipt_no": "X-1"}
    )

    assert commit.status_code == refund.status_code == 404
    assert commit.json()["type"] == "store_not_found"


def test_store_client_acts_only_at_its_own_store(world):
    with world.database.write() as session:
        other_store = f.store(session, world.partner_a)
    till = world.caller(world.partner_a, kind=ClientKind.STORE, store=world.store_a)
    member_id = world.member()
    body = {"member_id": member_id, "receipt_no": "T-1", "lines": [{"sku": "A", "amount": 100}]}

    own = till.post("/v1/purchases", body | {"store_id": world.store_a.id})
    other = till.post("/v1/purchases", body | {"store_id": other_store.id})

    assert own.status_code == 201
    assert other.status_code == 404


def test_partner_sees_its_own_entries_of_a_shared_member_only(world):
    member_id = world.member()
    for caller, store, receipt_no in (
        (world.a, world.store_a, "H-A"),
        (world.b, world.store_b, "H-B"),
    ):
        body = {
            "member_id": member_id,
            "store_id": store.id,
            "receipt_no": receipt_no,
            "lines": [{"sku": "A", "amount": 1000}],
        }
        assert caller.post("/v1/purchases", body).status_code == 201

    seen_by_a = world.a.get(f"/v1/members/{member_id}/journal").json()["items"]
    balance_by_b = world.b.get(f"/v1/members/{member_id}/balance").json()

    assert [entry["external_ref"] for entry in seen_by_a] == ["H-A"]
    assert balance_by_b["available"] == 20  # the balance is the member's, earned anywhere


def test_member_of_another_programme_does_not_exist_for_the_client(world):
    with world.database.write() as session:
        stranger = f.member(session, f.program(session)).id

    response = world.a.get(f"/v1/members/{stranger}")

    assert response.status_code == 404
    assert response.json()["type"] == "member_not_found"


def test_rate_limit_answers_429_with_retry_after(world):
    slow = world.caller(world.partner_a, rate_per_minute=2)
    member_id = world.member()

    statuses = [slow.get(f"/v1/members/{member_id}").status_code for _ in range(3)]
    limited = slow.get(f"/v1/members/{member_id}")

    assert statuses == [200, 200, 429]
    assert limited.json()["type"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_a_commit_for_someone_elses_member_is_not_found_before_anything_else(world):
    # given a suspended member of another programme (the lock statement finds them, with a status
    # that would be refused as 409), and a store the client does not own
    with world.database.write() as session:
        stranger = f.member(session, f.program(session))
        stranger.status = "suspended"
    body = {"store_id": world.store_a.id, "lines": [{"sku": "A", "amount": 1000}]}
    # when the client commits a receipt for them, and one for its own member at another's store
    foreign_member = world.a.post(
        "/v1/purchases", body | {"member_id": stranger.id, "receipt_no": "F-1"}
    )
    foreign_store = world.a.post(
        "/v1/purchases",
        body | {"member_id": world.member(), "store_id": world.store_b.id, "receipt_no": "F-2"},
    )
    # then the access check answers first: not found, nothing else said about them
    assert foreign_member.status_code == 404
    assert foreign_member.json()["type"] == "member_not_found"
    assert foreign_store.status_code == 404
    assert foreign_store.json()["type"] == "store_not_found"

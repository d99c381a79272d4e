"""Idempotency over HTTP (SPEC §4): replay, conflict, validation not stored, concurrent retries."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from kizuna.db.idempotency import IdempotencyKey as StoredKey
from kizuna.db.idempotency import _advisory_key
from kizuna.ledger.models import JournalEntry
from kizuna.purchases.models import Purchase


def _purchase(world, member_id, receipt_no, redeem=0):
    return {
        "member_id": member_id,
        "store_id": world.store_a.id,
        "receipt_no": receipt_no,
        "lines": [{"sku": "A", "amount": 1000}],
        "redeem_points": redeem,
    }


def _entries(world, member_id):
    with world.database.read() as session:
        return session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.member_id == member_id)
        )


def test_same_key_same_request_replays_the_first_response(world):
    member_id = world.member()
    body = _purchase(world, member_id, "I-1")

    first = world.a.post("/v1/purchases", body, key="key-I-1")
    second = world.a.post("/v1/purchases", body, key="key-I-1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _entries(world, member_id) == 1


def test_same_key_different_request_is_an_idempotency_conflict(world):
    member_id = world.member()
    world.a.post("/v1/purchases", _purchase(world, member_id, "I-2"), key="key-I-2")

    other = world.a.post("/v1/purchases", _purchase(world, member_id, "I-2b"), key="key-I-2")

    assert other.status_code == 422
    assert other.json()["type"] == "idempotency_conflict"
    assert _entries(world, member_id) == 1


def test_business_error_is_stored_and_replayed(world):
    member_id = world.member(points=10)
    body = _purchase(world, member_id, "I-3", redeem=50)

    first = world.a.post("/v1/purchases", body, key="key-I-3")
    world.member()  # time passes; the member could have earned meanwhile, the answer stays
    second = world.a.post("/v1/purchases", body, key="key-I-3")

    assert first.status_code == second.status_code == 409
    assert second.json() == first.json()
    assert second.json()["type"] == "insufficient_points"
    assert second.headers["Idempotent-Replayed"] == "true"


def test_a_refused_commit_leaves_nothing_but_its_stored_answer(world):
    member_id = world.member(points=10)
    entries = _entries(world, member_id)
    body = _purchase(world, member_id, "I-4", redeem=50)

    refused = world.a.post("/v1/purchases", body, key="key-I-4")

    assert refused.status_code == 409
    assert _entries(world, member_id) == entries  # no earn, no redemption
    with world.database.read() as session:
        assert session.scalar(select(Purchase.id).where(Purchase.receipt_no == "I-4")) is None
    # The receipt itself was not recorded: the till can post it again, paying less with points.
    retried = world.a.post("/v1/purchases", {**body, "redeem_points": 10}, key="key-I-4b")
    assert retried.status_code == 201
    assert retried.json()["redeemed"] == 10


def test_a_refused_return_is_stored_and_replayed_and_changes_nothing(world):
    member_id = world.member(points=10)
    world.a.post("/v1/purchases", _purchase(world, member_id, "I-5", redeem=10), key="key-I-5")
    entries = _entries(world, member_id)
    too_many = {"store_id": world.store_a.id, "receipt_no": "I-5", "restore_points": 11}

    first = world.a.post("/v1/purchases/returns", too_many, key="key-I-5r")
    second = world.a.post("/v1/purchases/returns", too_many, key="key-I-5r")

    assert first.status_code == second.status_code == 400
    assert first.json()["type"] == "invalid_return"
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _entries(world, member_id) == entries


def test_validation_error_is_not_stored_so_the_key_can_be_reused(world):
    member_id = world.member()
    bad = _purchase(world, member_id, "I-4")
    bad["lines"] = []

    refused = world.a.post("/v1/purchases", bad, key="key-I-4")
    accepted = world.a.post("/v1/purchases", _purchase(world, member_id, "I-4"), key="key-I-4")

    assert refused.status_code == 422
    assert refused.json()["type"] == "validation_error"
    assert accepted.status_code == 201


def test_mutating_call_without_a_key_is_refused_naming_the_header(world):
    member_id = world.member()
    response = world.http.post(
        "/v1/purchases", json=_purchase(world, member_id, "I-5"), headers=world.a.headers
    )

    assert response.status_code == 422
    assert "header.Idempotency-Key" in response.json()["detail"]


def test_keys_belong_to_the_client(world):
    member_id = world.member()
    world.a.post("/v1/purchases", _purchase(world, member_id, "I-6"), key="shared-key")

    other_client = world.caller(world.partner_a)
    response = other_client.post(
        "/v1/purchases", _purchase(world, member_id, "I-6b"), key="shared-key"
    )

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_concurrent_retries_with_one_key_post_once(world):
    member_id = world.member(points=100)
    body = _purchase(world, member_id, "I-7", redeem=100)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(lambda _: world.a.post("/v1/purchases", body, key="key-I-7"), range(6))
        )

    statuses = sorted(r.status_code for r in responses)
    winners = [r.json() for r in responses if r.status_code == 201]
    assert set(statuses) <= {201, 409}
    assert winners
    assert all(w == winners[0] for w in winners)
    for response in responses:
        if response.status_code == 409:
            assert response.json()["type"] == "idempotency_in_progress"
            assert response.headers["Retry-After"] == "1"
    with world.database.read() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Purchase).where(Purchase.member_id == member_id)
            )
            == 1
        )
    assert _entries(world, member_id) == 3  # opening earn, one redeem, one earn


@pytest.mark.postgres_only
def test_retry_while_the_first_attempt_runs_is_409_with_retry_after(world):
    member_id = world.member()
    with world.database.write() as session:
        # The first attempt holds the key's lock for as long as its transaction runs.
        session.execute(
            select(func.pg_advisory_xact_lock(_advisory_key(str(world.a.client_id), "key-I-8")))
        )
        retry = world.a.post("/v1/purchases", _purchase(world, member_id, "I-8"), key="key-I-8")

    assert retry.status_code == 409
    assert retry.json()["type"] == "idempotency_in_progress"
    assert retry.headers["Retry-After"] == "1"
    assert _entries(world, member_id) == 0


def test_a_key_past_its_retention_is_forgotten_and_the_request_runs_again(world):
    # given a purchase whose key has passed its retention
    member_id = world.member()
    body = _purchase(world, member_id, "I-9")
    first = world.a.post("/v1/purchases", body, key="key-I-9")
    with world.database.write() as session:
        session.execute(
            update(StoredKey)
            .where(StoredKey.key == "key-I-9")
            .values(expires_at=StoredKey.created_at)
        )
    # when the same request comes again under that key
    again = world.a.post("/v1/purchases", body, key="key-I-9")
    # then it runs as a new request (the receipt is taken now) and that refusal is what the key
    # replays from then on
    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["type"] == "duplicate_receipt"
    assert "Idempotent-Replayed" not in again.headers
    replayed = world.a.post("/v1/purchases", body, key="key-I-9")
    assert replayed.json() == again.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert _entries(world, member_id) == 1

"""Webhooks delivered to a real HTTP server started by the test: signatures, retries with back-off,
isolation, manual redelivery, disjoint claims, and a worker killed mid-delivery losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from kizuna.core.clock import utcnow
from kizuna.outbox.models import OutboxEvent
from kizuna.outbox.service import publish
from kizuna.webhooks import service as webhooks
from kizuna.webhooks.domain import backoff, verify
from kizuna.webhooks.models import WebhookDelivery
from kizuna.webhooks.sender import Sender
from tests import factories as f
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def sender(world) -> Iterator[Sender]:
    running = Sender(world.database, lease=timedelta(seconds=10))
    yield running
    running.close()


def subscribe(caller, url, *types):
    response = caller.post("/v1/webhooks/endpoints", {"url": url, "event_types": list(types)})
    assert response.status_code == 201, response.text
    return response.json()


def buy(world, caller, store, member_id, receipt_no):
    body = {
        "member_id": member_id,
        "store_id": store.id,
        "receipt_no": receipt_no,
        "lines": [{"sku": "A", "amount": 1000}],
    }
    assert caller.post("/v1/purchases", body).status_code == 201


def test_delivery_carries_a_signature_that_verifies(world, receiver, sender):
    endpoint = subscribe(world.a, receiver.url, "points.earned")
    buy(world, world.a, world.store_a, world.member(), "W-1")

    sender.run_once(utcnow())

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify(endpoint["secret"], headers["Kizuna-Signature"], body, int(time.time()))
    assert not verify("whsec_wrong", headers["Kizuna-Signature"], body, int(time.time()))
    event = json.loads(body)
    assert (event["type"], event["data"]["receipt_no"]) == ("points.earned", "W-1")
    assert headers["Kizuna-Event-Id"] == str(event["id"])


def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(world, receiver, sender):
    receiver.fail_first = 2
    subscribe(world.a, receiver.url, "points.earned")
    buy(world, world.a, world.store_a, world.member(), "W-2")
    t = utcnow()

    sender.run_once(t)
    sender.run_once(t + timedelta(seconds=1))  # not due yet: back-off
    sender.run_once(t + backoff(1) + timedelta(seconds=1))
    sender.run_once(t + backoff(1) + backoff(2) + timedelta(seconds=2))

    assert len(receiver.requests) == 3
    assert len({e["id"] for e in receiver.events()}) == 1
    deliveries = world.a.get("/v1/webhooks/deliveries").json()
    assert [d["status"] for d in deliveries] == ["delivered"]
    detail = world.a.get(f"/v1/webhooks/deliveries/{deliveries[0]['id']}").json()
    assert [a["status_code"] for a in detail["log"]] == [500, 500, 200]


def test_partner_receives_only_its_own_events(world, receiver, sender):
    subscribe(world.b, receiver.url, "*")
    buy(world, world.a, world.store_a, world.member(), "W-3")
    buy(world, world.b, world.store_b, world.member(), "W-4")

    sender.run_once(utcnow())

    assert [e["data"]["receipt_no"] for e in receiver.events()] == ["W-4"]
    assert world.a.get("/v1/webhooks/deliveries").json() == []


def test_manual_redelivery_sends_the_event_again(world, receiver, sender):
    subscribe(world.a, receiver.url, "member.created")
    world.a.post("/v1/members", {"identifiers": []})
    sender.run_once(utcnow())
    delivery = world.a.get("/v1/webhooks/deliveries").json()[0]

    again = world.a.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver")
    sender.run_once(utcnow() + timedelta(seconds=1))

    assert again.status_code == 200
    assert [e["type"] for e in receiver.events()] == ["member.created", "member.created"]


def test_two_workers_never_claim_the_same_delivery(world, receiver):
    subscribe(world.a, receiver.url, "points.earned")
    for n in range(12):
        buy(world, world.a, world.store_a, world.member(), f"W-5-{n}")
    as_of = utcnow()
    with world.database.write() as session:
        webhooks.fan_out(session, as_of=as_of)

    def claim(_: int) -> set[int]:
        with world.database.write() as session:
            claims = webhooks.claim_due(
                session, as_of=as_of, lease=timedelta(minutes=5), limit=1000
            )
            time.sleep(0.2)  # hold the claim while the other worker tries
            return {c.delivery_id for c in claims}

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(claim, range(2))

    mine = {d["id"] for d in world.a.get("/v1/webhooks/deliveries", params={"limit": 100}).json()}
    assert len(mine) == 12
    assert not first & second
    assert mine <= first | second


def test_worker_killed_mid_delivery_loses_nothing(world, receiver, sender):
    receiver.hang_first = True
    subscribe(world.a, receiver.url, "member.created")
    created = world.a.post("/v1/members", {"identifiers": []}).json()
    env = os.environ | {"KIZUNA_DATABASE_URL": world.database.url, "KIZUNA_LOG_JSON": "true"}
    # `kizuna worker`, entered without importing every other command of the CLI (faster start).
    command = [sys.executable, "-c", "from kizuna.cli.worker import worker; worker("]
    command[-1] += "only=['webhooks.deliver'], lease_seconds=2, once=False, list_jobs=False)"

    worker = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        assert receiver.arrived.wait(90), "the worker never started delivering"
        worker.send_signal(signal.SIGKILL)  # mid-delivery: the receiver has not answered yet
        worker.wait(10)
    finally:
        worker.kill()
    receiver.release.set()
    assert _status(world, created["id"]) == "pending"
    # The restarted worker (here in-process) finds the delivery again once the lease is over.
    deadline = time.monotonic() + 30
    while _status(world, created["id"]) != "delivered" and time.monotonic() < deadline:
        sender.run_once(utcnow())
        time.sleep(0.2)

    assert _status(world, created["id"]) == "delivered"
    delivered = [e for e in receiver.events() if e["data"]["member_id"] == created["id"]]
    assert len(delivered) == 2  # the interrupted attempt, then the redelivery


def _status(world, member_id: int) -> str | None:
    with world.database.read() as session:
        return session.scalar(
            select(WebhookDelivery.status)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(OutboxEvent.event_type == "member.created", OutboxEvent.member_id == member_id)
        )


def test_events_published_in_a_rolled_back_transaction_are_never_sent(world, receiver, sender):
    subscribe(world.a, receiver.url, "*")

    def failing_change() -> None:
        with world.database.write() as session:
            publish(
                session,
                event_type="points.earned",
                payload={"receipt_no": "ghost"},
                as_of=utcnow(),
                partner_id=world.partner_a.id,
            )
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()

    sender.run_once(utcnow())

    assert receiver.requests == []


def test_a_backlog_of_other_events_is_fanned_out_in_one_round(world, receiver, sender):
    subscribe(world.a, receiver.url, "points.earned")
    with world.database.write() as session:
        for n in range(600):
            publish(
                session,
                event_type="event.recorded",
                payload={"n": n},
                as_of=utcnow(),
                partner_id=world.partner_b.id,
            )
    buy(world, world.a, world.store_a, world.member(), "W-6")

    sender.run_once(utcnow())

    assert [e["data"]["receipt_no"] for e in receiver.events()] == ["W-6"]


def test_events_of_no_partner_go_to_the_operator_only(world, receiver, sender):
    with world.database.write() as session:
        operator = f.partner(session, world.program, operator=True)
    operator_client = world.caller(operator)
    subscribe(operator_client, receiver.url, "points.expired")
    partner_receiver = Receiver()
    subscribe(world.a, partner_receiver.url, "points.expired")
    member_id = world.member()
    with world.database.write() as session:
        publish(
            session,
            event_type="points.expired",
            payload={"member_id": member_id, "points": 5},
            as_of=utcnow(),
            member_id=member_id,
        )

    sender.run_once(utcnow())
    partner_receiver.close()

    assert [e["data"]["member_id"] for e in receiver.events()] == [member_id]
    assert partner_receiver.requests == []

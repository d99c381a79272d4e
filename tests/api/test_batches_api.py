"""Offline POS batches over HTTP: NDJSON and CSV, each row exactly once, re-upload posts nothing
twice, bad rows get their own errors without stopping the others; batch.completed is published."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from kizuna.batches import service as batches
from kizuna.batches.domain import BatchFormat
from kizuna.clients import service as clients
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.jobs.catalog import process_batches
from kizuna.jobs.registry import JobContext
from kizuna.outbox.models import OutboxEvent
from kizuna.purchases.models import Purchase


def ndjson(rows) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def row(world, member_id, receipt_no, amount=1000, **extra):
    return {
        "store_id": world.store_a.id,
        "receipt_no": receipt_no,
        "member_id": member_id,
        "occurred_at": "2026-11-20T10:00:00+09:00",
        "lines": [{"sku": "A", "amount": amount}],
        **extra,
    }


def upload(caller, content: bytes, media: str = "application/x-ndjson", key: str | None = None):
    return caller.post("/v1/batches", content=content, headers={"Content-Type": media}, key=key)


def purchases_of(world, member_id) -> int:
    with world.database.read() as session:
        return session.scalar(
            select(func.count()).select_from(Purchase).where(Purchase.member_id == member_id)
        )


def test_ndjson_batch_posts_every_row_and_reports_each(world):
    member_id = world.member()
    content = ndjson([row(world, member_id, f"B-1-{n}") for n in range(3)])

    uploaded = upload(world.a, content)
    batch = world.a.get(f"/v1/batches/{uploaded.json()['id']}").json()
    rows = world.a.get(f"/v1/batches/{batch['id']}/rows").json()

    assert uploaded.status_code == 202, uploaded.text
    assert (batch["status"], batch["ok_rows"], batch["error_rows"]) == ("completed", 3, 0)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert rows[0]["result"]["earned"] == 10
    assert purchases_of(world, member_id) == 3


def test_reuploading_the_same_file_posts_nothing_twice(world):
    member_id = world.member()
    content = ndjson([row(world, member_id, f"B-2-{n}") for n in range(4)])
    upload(world.a, content)

    again = upload(world.a, content)  # a new Idempotency-Key: a new batch of the same rows
    batch = world.a.get(f"/v1/batches/{again.json()['id']}").json()

    assert (batch["duplicate_rows"], batch["ok_rows"]) == (4, 0)
    assert purchases_of(world, member_id) == 4
    balance = world.a.get(f"/v1/members/{member_id}/balance").json()
    assert balance["available"] == 40


def test_same_upload_key_replays_the_batch(world):
    member_id = world.member()
    content = ndjson([row(world, member_id, "B-3")])

    first = upload(world.a, content, key="batch-key-3")
    second = upload(world.a, content, key="batch-key-3")

    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


def test_bad_rows_get_their_own_errors_and_do_not_stop_the_others(world):
    member_id = world.member(points=50)
    content = b"\n".join(
        [
            json.dumps(row(world, member_id, "B-4-ok-1")).encode(),
            b"{not json",
            json.dumps(row(world, member_id, "B-4-bad-amount", amount=-5)).encode(),
            json.dumps(row(world, 999_999_999, "B-4-no-member")).encode(),
            json.dumps(
                row(world, member_id, "B-4-other-store") | {"store_id": world.store_b.id}
            ).encode(),
            json.dumps(row(world, member_id, "B-4-ok-2")).encode(),
        ]
    )

    batch_id = upload(world.a, content).json()["id"]
    batch = world.a.get(f"/v1/batches/{batch_id}").json()
    errors = world.a.get(f"/v1/batches/{batch_id}/rows", params={"status": "error"}).json()

    assert (batch["ok_rows"], batch["error_rows"]) == (2, 4)
    assert [(e["line_no"], e["result"]["code"]) for e in errors] == [
        (2, "malformed_row"),
        (3, "malformed_row"),
        (4, "member_not_found"),
        (5, "store_not_found"),
    ]
    assert purchases_of(world, member_id) == 2


def test_offline_rows_may_not_redeem_points(world):
    member_id = world.member(points=100)
    content = ndjson([{**row(world, member_id, "B-5"), "redeem_points": 10}])

    batch_id = upload(world.a, content).json()["id"]
    rows = world.a.get(f"/v1/batches/{batch_id}/rows").json()

    # A batch row has no redeem field at all: the purchase posts, earning only.
    assert rows[0]["status"] == "ok"
    assert world.a.get(f"/v1/members/{member_id}/balance").json()["available"] == 110


def test_csv_batch_with_one_line_per_receipt(world):
    member_id = world.member()
    csv_text = (
        "store_id,receipt_no,member_id,occurred_at,sku,amount,quantity\n"
        f"{world.store_a.id},B-6-1,{member_id},2026-11-20T10:00:00+09:00,A,2000,2\n"
        f"{world.store_a.id},B-6-2,{member_id},2026-11-20T11:00:00+09:00,B,abc,1\n"
    )

    batch_id = upload(world.a, csv_text.encode(), media="text/csv").json()["id"]
    rows = world.a.get(f"/v1/batches/{batch_id}/rows").json()

    assert [r["status"] for r in rows] == ["ok", "error"]
    assert "amount" in rows[1]["result"]["message"]


def test_completed_batch_publishes_batch_completed(world):
    member_id = world.member()
    batch_id = upload(world.a, ndjson([row(world, member_id, "B-7")])).json()["id"]

    with world.database.read() as session:
        payloads = session.scalars(
            select(OutboxEvent.payload).where(
                OutboxEvent.event_type == "batch.completed",
                OutboxEvent.partner_id == world.partner_a.id,
            )
        ).all()

    assert [p["batch_id"] for p in payloads] == [batch_id]
    assert payloads[0]["ok_rows"] == 1


def test_unknown_media_type_is_refused(world):
    response = upload(world.a, b"x", media="application/pdf")

    assert response.status_code == 415
    assert response.json()["type"] == "unsupported_format"


def test_another_partner_cannot_read_a_batch(world):
    batch_id = upload(world.a, ndjson([row(world, world.member(), "B-8")])).json()["id"]

    assert world.b.get(f"/v1/batches/{batch_id}").status_code == 404


def test_worker_job_completes_a_batch_left_unprocessed(world):
    member_id = world.member()
    content = ndjson([row(world, member_id, f"B-9-{n}") for n in range(5)])
    with world.database.write() as session:
        client = clients.get_client(session, world.a.client_id)
        batch = batches.create_batch(
            session,
            client=clients.identity_of(session, client),
            content=content,
            fmt=BatchFormat.NDJSON,
            as_of=utcnow(),
        )

    done = process_batches(JobContext(database=world.database, settings=Settings(), as_of=utcnow()))

    assert done >= 5
    status = world.a.get(f"/v1/batches/{batch.id}").json()
    assert (status["status"], status["ok_rows"]) == ("completed", 5)
    assert purchases_of(world, member_id) == 5


def test_rows_with_text_no_database_stores_are_their_own_errors(world):
    member_id = world.member()
    good = json.dumps(row(world, member_id, "B-10-ok")).encode()
    content = b"\n".join(
        [
            good,
            json.dumps(row(world, member_id, "B-10-\u0000")).encode(),  # a NUL escape
            json.dumps(row(world, member_id, "B-10-\ud800")).encode(),  # half a surrogate pair
            good.replace(b"B-10-ok", b"B-10-\x00"),  # a NUL byte
            good.replace(b"B-10-ok", b"B-10-\xff"),  # not UTF-8
            json.dumps(row(world, member_id, "B-10-寿司")).encode(),
        ]
    )

    batch_id = upload(world.a, content).json()["id"]
    rows = world.a.get(f"/v1/batches/{batch_id}/rows").json()

    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "error", "ok"]
    assert {r["result"]["code"] for r in rows if r["status"] == "error"} == {"malformed_row"}
    assert purchases_of(world, member_id) == 2

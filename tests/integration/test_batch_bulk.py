"""An offline batch posted a chunk at a time — most rows as a set (`purchases.bulk`), the rest one
by one — leaves exactly what posting the same receipts one by one with `commit_purchase` leaves:
purchases, journal, lots, allocations, debt, balances, campaign grants, budgets and caps, ranks and
outbox events. Two fresh databases of the same engine get the same world (campaigns with a budget,
a cap, once-per-period, per-item, a profile condition, a history condition and an exclusive one;
ranks; members who redeemed before, members in debt, a withdrawn member); one posts the file as a
batch, the other posts its receipts one by one in the order the batch posted them."""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kizuna.batches import service as batches
from kizuna.batches.domain import BatchFormat, parse_row
from kizuna.batches.models import PurchaseBatch, PurchaseBatchChunk, PurchaseBatchRow
from kizuna.clients import access
from kizuna.clients import service as clients
from kizuna.clients.domain import ClientIdentity, ClientKind
from kizuna.clients.models import ApiClient
from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.ledger import reconcile
from kizuna.ledger import service as ledger
from kizuna.ledger.models import Allocation, JournalEntry, Lot, PointAccount
from kizuna.members import service as members
from kizuna.members import withdrawal
from kizuna.members.domain import Profile
from kizuna.outbox.models import OutboxEvent
from kizuna.partners import service as partners
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest
from kizuna.purchases.models import Purchase
from kizuna.rules import manage
from kizuna.rules.domain import EarnPolicy, PurchaseLine
from kizuna.rules.models import Campaign, CampaignGrant, CampaignMemberUsage
from kizuna.tiers.models import MemberRank, RankChange
from tests import factories as f
from tests.conftest import fresh_database_url

T0 = f.T0
AS_OF = T0 + timedelta(days=2)
MEMBERS = 36


@dataclass(frozen=True)
class World:
    program_id: int
    store_id: int
    other_store_id: int
    client_id: int
    member_ids: list[int]
    withdrawn_id: int


def _campaigns(session: Any, program: Any, store_id: int) -> None:
    def at(hours: float) -> str:
        return (T0 + timedelta(hours=hours)).isoformat()

    codes = iter(range(1, 100))

    def campaign(**definition: Any) -> None:
        # Codes and names of their own: they show in breakdowns, which both worlds must share.
        code = next(codes)
        data = {
            "name": f"Campaign {code}",
            "starts_at": at(-24),
            "ends_at": at(24 * 30),
            **definition,
        }
        view = manage.create_campaign(
            session,
            program_id=program.id,
            code=f"C{code}",
            definition=data,
            as_of=T0 - timedelta(days=2),
        )
        manage.activate_campaign(
            session, campaign_id=view.campaign.id, as_of=T0 - timedelta(days=1)
        )

    campaign(action={"type": "multiply", "times": 2}, budget=900)
    campaign(action={"type": "fixed", "points": 30}, per_member_cap=70)
    campaign(action={"type": "per_item", "points": 5, "categories": ["food"]})
    campaign(
        action={"type": "fixed", "points": 100},
        frequency="once",
        stores=[store_id],
        budget=700,
    )
    campaign(
        action={"type": "fixed", "points": 10},
        condition={"field": "member.gender", "op": "eq", "value": "female"},
        points_kind="limited",
        limited_days=30,
    )
    # Reads the member's history: members with a receipt in its two hours are posted one by one.
    campaign(
        action={"type": "fixed", "points": 7},
        condition={"field": "member.purchase_count", "op": "gte", "value": 2},
        starts_at=at(12),
        ends_at=at(14),
    )
    campaign(
        action={"type": "fixed", "points": 500},
        condition={"field": "event.amount", "op": "gte", "value": 9000},
        stackable=False,
        priority=10,
    )
    campaign(
        action={"type": "fixed", "points": 3},
        frequency="day",
        starts_at=at(-96),
        ends_at=at(30),
    )


def _online(session: Any, member_id: int, store_id: int, n: int, amount: int, **kw: Any) -> Any:
    at = T0 - timedelta(days=12 - n)
    return purchases.commit_purchase(
        session,
        request=PurchaseRequest(
            member_id=member_id,
            store_id=store_id,
            receipt_no=f"ON-{member_id}-{n}",
            occurred_at=at,
            lines=[PurchaseLine(sku="X", amount=amount)],
            **kw,
        ),
        as_of=at,
    )


def build_world(database: Any) -> World:
    """The same world in any fresh database: the same calls in the same order."""
    rng = random.Random(3)
    with database.write() as session:
        program = f.program(session, earn=EarnPolicy(excluded_categories=frozenset({"tobacco"})))
        partner = f.partner(session, program)
        store = f.store(session, partner)
        other_store = f.store(session, f.partner(session, program))
        f.ranks(session, program)
        _campaigns(session, program, store.id)
        client, _ = clients.create_client(
            session, partner_id=partner.id, kind=ClientKind.PARTNER, name="till", as_of=T0
        )
        member_ids = [
            members.create_member(
                session,
                program_id=program.id,
                joined_at=T0 - timedelta(days=30),
                identifiers={"app": f"APP-{program.id}-{n}"},
                profile=Profile(gender=rng.choice(["female", "male", None])),
            ).id
            for n in range(MEMBERS)
        ]
        withdrawn_id = f.member(session, program).id
        world = World(program.id, store.id, other_store.id, client.id, member_ids, withdrawn_id)
    for member_id in member_ids[:24]:
        with database.write() as session:
            # earlier receipts: some cross a rank threshold (the rank bonus then applies)
            _online(session, member_id, store.id, 0, rng.choice([3000, 12_000, 30_000]))
    for member_id in member_ids[:8]:
        with database.write() as session:
            _online(session, member_id, store.id, 1, 2000, redeem_points=20)
    for member_id in member_ids[8:14]:
        # debt: a receipt's points are spent, then the receipt is returned
        with database.write() as session:
            _online(session, member_id, store.id, 2, 5000)
            available = ledger.balance(
                session,
                member_id=member_id,
                policy=partners.policies(session, program.id).ledger,
                as_of=T0 - timedelta(days=8),
            ).available
            _online(session, member_id, store.id, 4, 10 * available, redeem_points=available)
        with database.write() as session:
            returns.return_purchase(
                session,
                store_id=store.id,
                receipt_no=f"ON-{member_id}-2",
                lines=None,
                as_of=T0 - timedelta(days=7),
            )
    with database.write() as session:
        withdrawal.withdraw(
            session, member_id=withdrawn_id, actor="test", as_of=T0 - timedelta(days=5)
        )
    return world


def batch_file(world: World, rows: int = 260) -> bytes:
    """Receipts of the last week for the world's members; a few are malformed or refused."""
    rng = random.Random(11)
    out: list[str] = []
    for n in range(rows):
        member_id = rng.choice(world.member_ids)
        row: dict[str, Any] = {
            "store_id": world.store_id,
            "receipt_no": f"OFF-{world.program_id}-{n}",
            "occurred_at": (T0 + timedelta(seconds=rng.randint(-6 * 86400, 86400))).isoformat(),
            "lines": [
                {
                    "sku": f"S{rng.randint(1, 9)}",
                    "amount": rng.choice([0, 150, 980, 2400, 4100, 9800]),
                    "quantity": rng.randint(1, 3),
                    "category": rng.choice([None, "food", "tobacco"]),
                }
                for _ in range(rng.randint(1, 3))
            ],
        }
        if n % 9 == 4:
            index = world.member_ids.index(member_id)
            row["identifier_type"], row["identifier_value"] = (
                "app",
                f"APP-{world.program_id}-{index}",
            )
        else:
            row["member_id"] = member_id
        out.append(json.dumps(row))
    refused = [
        "{not json",
        json.dumps({"store_id": world.store_id, "receipt_no": "BAD-1", "member_id": 1}),
        json.dumps(
            {**json.loads(out[0]), "receipt_no": "R-OTHER", "store_id": world.other_store_id}
        ),
        json.dumps({**json.loads(out[1]), "receipt_no": "R-NOBODY", "member_id": 999_999}),
        json.dumps({**json.loads(out[2]), "receipt_no": "R-GONE", "member_id": world.withdrawn_id}),
        json.dumps({**json.loads(out[3]), "receipt_no": f"ON-{world.member_ids[0]}-0"}),
        out[5],  # the same receipt twice in one file: posted once
        json.dumps({**json.loads(out[6]), "lines": [{"sku": "Z", "amount": 1}]}),  # key reused
    ]
    for offset, line in enumerate(refused):
        out.insert(17 * offset + 3, line)
    return "\n".join(out).encode()


def identity(database: Any, world: World) -> ClientIdentity:
    with database.read() as session:
        client = session.get(ApiClient, world.client_id)
        return clients.identity_of(session, client)


def store_batch(database: Any, world: World, content: bytes, chunk_rows: int) -> int:
    """Upload `content` as the world's till would; returns the batch's id."""
    with database.write() as session:
        return batches.create_batch(
            session,
            client=identity(database, world),
            content=content,
            fmt=BatchFormat.NDJSON,
            as_of=AS_OF,
            chunk_rows=chunk_rows,
        ).id


def post_as_batch(database: Any, world: World, content: bytes, chunk_rows: int = 40) -> int:
    batch_id = store_batch(database, world, content, chunk_rows)
    batches.process_batch(database.write, batch_id=batch_id, as_of=AS_OF, keep_days=7)
    return batch_id


def post_one_by_one(database: Any, world: World, raws: list[str], order: list[int]) -> None:
    """Each row through the services, one transaction per row, like a till online would."""
    caller = identity(database, world)
    for line in order:
        try:
            row = parse_row(raws[line])
        except KizunaError:
            continue
        try:
            with database.write() as session:
                if row.member_id is not None:
                    member_id = row.member_id
                else:
                    assert row.identifier is not None
                    kind, value = row.identifier
                    member_id = members.find_by_identifier(session, kind=kind, value=value).id
                access.member(session, caller, member_id)
                access.store(session, caller, row.store_id)
                purchases.commit_purchase(
                    session,
                    request=PurchaseRequest(
                        member_id=member_id,
                        store_id=row.store_id,
                        receipt_no=row.receipt_no,
                        occurred_at=row.occurred_at,
                        lines=row.lines,
                        offline=True,
                    ),
                    as_of=AS_OF,
                    actor=caller.actor,
                )
        except KizunaError:
            continue


def posting_order(database: Any, raws: list[str]) -> list[int]:
    """The file's lines in the order the batch posted their receipts (purchase ids), then the
    lines that posted nothing."""
    with database.read() as session:
        posted = {
            receipt: purchase_id
            for purchase_id, receipt in session.execute(select(Purchase.id, Purchase.receipt_no))
        }  # receipt numbers of a world's file are its own (they carry the programme's id)
    numbers = {}
    for line, raw in enumerate(raws):
        try:
            numbers[line] = posted.get(json.loads(raw).get("receipt_no"))
        except json.JSONDecodeError:
            numbers[line] = None
    first = sorted((n, line) for line, n in numbers.items() if n is not None)
    return [line for _, line in first] + [line for line, n in numbers.items() if n is None]


def snapshot(database: Any, world: World) -> dict[str, Any]:
    """Everything posting writes, with row ids replaced by what they stand for."""
    with database.read() as session:
        receipt_of = {p.id: (p.store_id, p.receipt_no) for p in session.scalars(select(Purchase))}
        purchases_ = {
            receipt_of[p.id]: (
                p.member_id,
                p.partner_id,
                p.channel,
                p.occurred_at,
                p.recorded_at,
                p.total_amount,
                p.lines,
                p.returned_quantities,
                p.points_used,
                p.refunded_amount,
                p.points_restored,
                p.status,
            )
            for p in session.scalars(select(Purchase))
        }
        entry_key: dict[int, tuple[int, int]] = {}
        journal: dict[int, list[Any]] = defaultdict(list)
        for e in session.scalars(select(JournalEntry).order_by(JournalEntry.id)):
            entry_key[e.id] = (e.member_id, len(journal[e.member_id]))
            journal[e.member_id].append(
                (
                    e.entry_type,
                    e.amount,
                    e.debt_change,
                    entry_key.get(e.reverses_entry_id) if e.reverses_entry_id else None,
                    e.reversed_points,
                    e.occurred_at,
                    e.recorded_at,
                    e.partner_id,
                    e.store_id,
                    e.channel,
                    e.external_ref,
                    receipt_of.get(e.purchase_id) if e.purchase_id else None,
                    e.actor,
                    e.breakdown,
                )
            )
        lot_key: dict[int, tuple[int, int]] = {}
        lots: dict[int, list[Any]] = defaultdict(list)
        for lot in session.scalars(select(Lot).order_by(Lot.id)):
            lot_key[lot.id] = (lot.member_id, len(lots[lot.member_id]))
            lots[lot.member_id].append(
                (
                    entry_key[lot.source_entry_id],
                    lot.kind,
                    lot.expiry_rule,
                    lot.amount,
                    lot.remaining,
                    lot.earned_at,
                    lot.available_at,
                    lot.expires_at,
                    lot.funding_partner_id,
                    lot.expired_points,
                )
            )
        allocations = sorted(
            (entry_key[a.entry_id], lot_key[a.lot_id], a.points)
            for a in session.scalars(select(Allocation))
        )
        policy = partners.policies(session, world.program_id).ledger
        balances = {
            m: ledger.balance(session, member_id=m, policy=policy, as_of=AS_OF)
            for m in [*world.member_ids, world.withdrawn_id]
        }
        events = [
            (
                e.event_type,
                e.partner_id,
                e.member_id,
                e.created_at,
                {k: receipt_of.get(v) if k == "purchase_id" else v for k, v in e.payload.items()},
            )
            for e in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
            if e.event_type != "batch.completed"
        ]
        return {
            "purchases": purchases_,
            "journal": dict(journal),
            "lots": dict(lots),
            "allocations": allocations,
            "debts": dict(session.execute(select(PointAccount.member_id, PointAccount.debt)).all()),
            "balances": balances,
            "grants": sorted(
                (
                    g.campaign_id,
                    g.version_id,
                    g.member_id,
                    receipt_of.get(g.purchase_id) if g.purchase_id else None,
                    g.period_key or "",
                    g.points,
                    g.created_at,
                    g.updated_at,
                )
                for g in session.scalars(select(CampaignGrant))
            ),
            "budgets": dict(session.execute(select(Campaign.id, Campaign.budget_used)).all()),
            "usage": sorted(
                session.execute(
                    select(
                        CampaignMemberUsage.campaign_id,
                        CampaignMemberUsage.member_id,
                        CampaignMemberUsage.points,
                    )
                ).all()
            ),
            "ranks": sorted(
                session.execute(
                    select(MemberRank.member_id, MemberRank.tier_id, MemberRank.since)
                ).all()
            ),
            "rank_changes": [
                (c.member_id, c.from_tier_id, c.to_tier_id, c.changed_at, c.reason, c.metric_value)
                for c in session.scalars(select(RankChange).order_by(RankChange.id))
            ],
            "events": events,
            "violations": reconcile.check(session),
        }


def assert_same_books(batched_in: Database, one_by_one_in: Database, world: World) -> dict:
    """The two databases hold the same books, and they balance; returns the batched snapshot."""
    batched, one_by_one = snapshot(batched_in, world), snapshot(one_by_one_in, world)
    assert batched["violations"] == []
    for part in one_by_one:
        assert batched[part] == one_by_one[part], part
    return batched


@pytest.fixture(scope="module")
def twin(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A second migrated database of the same engine as `database`, for this module."""
    url = fresh_database_url(database.dialect, tmp_path_factory.mktemp("twin"))
    upgrade(url)
    twin = Database(url)
    yield twin
    twin.dispose()


def test_a_batch_posts_what_posting_its_receipts_one_by_one_posts(database, twin):
    # given the same world in two databases
    world = build_world(database)
    assert build_world(twin) == world
    content = batch_file(world)
    raws = content.decode().splitlines()
    # when one posts the file as a batch, the other its receipts one by one in the same order
    batch_id = post_as_batch(database, world, content)
    post_one_by_one(twin, world, raws, posting_order(database, raws))
    # then both hold the same books, and the books balance
    batched = assert_same_books(database, twin, world)
    with database.read() as session:
        batch = session.get(PurchaseBatch, batch_id)
        rows = session.scalars(
            select(PurchaseBatchRow)
            .where(PurchaseBatchRow.batch_id == batch_id)
            .order_by(PurchaseBatchRow.line_no)
        ).all()
    assert batch.status == "completed"
    offline = f"OFF-{world.program_id}-"
    assert batch.ok_rows == len([r for r in batched["purchases"] if r[1].startswith(offline)])
    codes = {(r.status, (r.result or {}).get("code")) for r in rows if r.status != "ok"}
    assert codes == {
        ("error", "malformed_row"),
        ("error", "store_not_found"),
        ("error", "member_not_found"),
        ("error", "member_not_active"),
        ("error", "duplicate_receipt"),
        ("error", "idempotency_conflict"),
        ("duplicate", None),
    }


def test_a_failed_chunk_leaves_nothing_and_the_batch_resumes_without_posting_twice(
    database, twin, monkeypatch
):
    # given a batch of several chunks, and a worker that dies while finishing the second
    world = build_world(database)
    assert build_world(twin) == world
    content = batch_file(world, rows=120)
    raws = content.decode().splitlines()
    batch_id = store_batch(database, world, content, chunk_rows=30)
    store_results, calls = batches._store_results, []

    def dies_on_the_second_chunk(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        store_results(*args, **kwargs)

    monkeypatch.setattr(batches, "_store_results", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        batches.process_batch(database.write, batch_id=batch_id, as_of=AS_OF, keep_days=7)
    # then the first chunk is done and posted, the second left nothing behind
    with database.read() as session:
        chunks = session.execute(
            select(PurchaseBatchChunk.status, PurchaseBatchChunk.rows).where(
                PurchaseBatchChunk.batch_id == batch_id
            )
        ).all()
        first_rows = session.scalar(
            select(func.count())
            .select_from(PurchaseBatchRow)
            .where(PurchaseBatchRow.batch_id == batch_id, PurchaseBatchRow.status != "pending")
        )
        posted = session.scalar(
            select(func.count())
            .select_from(Purchase)
            .where(Purchase.receipt_no.like(f"OFF-{world.program_id}-%"))
        )
    assert sorted(status for status, _ in chunks).count("done") == 1
    assert first_rows == next(rows for status, rows in chunks if status == "done")
    assert 0 < posted <= first_rows
    # when a worker takes the batch up again
    monkeypatch.undo()
    batches.process_batch(database.write, batch_id=batch_id, as_of=AS_OF, keep_days=7)
    post_one_by_one(twin, world, raws, posting_order(database, raws))
    # then every receipt is posted once, as one by one
    assert_same_books(database, twin, world)
    with database.read() as session:
        batch = session.get(PurchaseBatch, batch_id)
    assert batch.status == "completed"
    assert batch.ok_rows + batch.duplicate_rows + batch.error_rows == batch.total_rows


def test_uploading_a_posted_file_again_posts_nothing_and_replays_each_rows_result(database):
    # given a file posted as a batch
    world = build_world(database)
    content = batch_file(world, rows=60)
    first = post_as_batch(database, world, content, chunk_rows=25)
    before = snapshot(database, world)
    # when the same file is uploaded again
    again = post_as_batch(database, world, content, chunk_rows=25)
    # then nothing more is posted, and each row answers as it did
    after = snapshot(database, world)
    for part in before:
        assert after[part] == before[part], part
    with database.read() as session:
        results = {
            batch_id: [
                (row.status, row.result)
                for row in session.scalars(
                    select(PurchaseBatchRow)
                    .where(PurchaseBatchRow.batch_id == batch_id)
                    .order_by(PurchaseBatchRow.line_no)
                )
            ]
            for batch_id in (first, again)
        }
        second = session.get(PurchaseBatch, again)
    assert second.ok_rows == 0
    assert second.duplicate_rows == len([s for s, _ in results[first] if s in ("ok", "duplicate")])
    assert [
        ("duplicate" if status == "ok" else status, body) for status, body in results[first]
    ] == results[again]


@pytest.mark.postgres_only
def test_workers_sharing_a_batch_post_each_row_once(database):
    # given a batch of many chunks
    world = build_world(database)
    content = batch_file(world, rows=300)
    batch_id = store_batch(database, world, content, chunk_rows=20)
    # when four workers take its chunks at once
    start = threading.Barrier(4)

    def work() -> int:
        start.wait()
        return batches.process_batch(database.write, batch_id=batch_id, as_of=AS_OF, keep_days=7)

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda _: work(), range(4)))
    # then every row was processed once, every receipt posted once, and the books balance
    assert sum(done) == len(content.splitlines())
    snap = snapshot(database, world)
    assert snap["violations"] == []
    with database.read() as session:
        batch = session.get(PurchaseBatch, batch_id)
        receipts = session.scalars(
            select(Purchase.receipt_no).where(Purchase.receipt_no.like(f"OFF-{world.program_id}-%"))
        ).all()
        earns = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.external_ref.like(f"OFF-{world.program_id}-%"))
        )
    assert batch.status == "completed"
    assert batch.ok_rows == len(receipts) == len(set(receipts))
    assert earns <= len(receipts)

"""Offline batch throughput: a 100,000-row NDJSON file of purchases processed by `kizuna worker`.

The file is stored as a batch (what the upload endpoint does), then worker processes
(`kizuna worker --only batches.process`, two by default, sharing the batch through
`FOR UPDATE SKIP LOCKED`) process it; the figure is rows per second from the first row to the
batch's completion. The last line printed is one JSON object.

    kizuna bench batch [--rows 100000] [--members 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import timedelta

from bench.api import seed
from bench.pg import machine, scratch_database, server_url

from kizuna.batches import service as batches
from kizuna.batches.domain import BatchFormat
from kizuna.batches.models import PurchaseBatch
from kizuna.clients.models import ApiClient
from kizuna.clients.service import identity_of
from kizuna.core.clock import utcnow
from kizuna.db.database import Database


def make_file(rows: int, store_id: int, members: tuple[int, int]) -> bytes:
    """An NDJSON file of `rows` receipts from yesterday, one to three lines each."""
    rng = random.Random(11)
    day = (utcnow() - timedelta(days=1)).replace(microsecond=0)
    lines = []
    for n in range(rows):
        lines.append(
            json.dumps(
                {
                    "store_id": store_id,
                    "receipt_no": f"OFF-{n:07d}",
                    "member_id": rng.randint(*members),
                    "occurred_at": (day + timedelta(seconds=n % 43_200)).isoformat(),
                    "lines": [
                        {"sku": f"SKU{rng.randint(1, 500)}", "amount": rng.randint(100, 3000)}
                        for _ in range(rng.randint(1, 3))
                    ],
                }
            )
        )
    return "\n".join(lines).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=None, help="PostgreSQL server URL")
    args = parser.parse_args(argv)

    with scratch_database(server_url(args.server), "kizuna_bench_batch") as url:
        print(f"seeding {args.members} members …", flush=True)
        spec = seed(url, args.members)
        database = Database(url)
        content = make_file(args.rows, spec["store_id"], tuple(spec["members"]))
        started = time.perf_counter()
        with database.write() as session:
            client = session.query(ApiClient).one()
            batch = batches.create_batch(
                session,
                client=identity_of(session, client),
                content=content,
                fmt=BatchFormat.NDJSON,
                as_of=utcnow(),
            )
            batch_id = batch.id
        stored = time.perf_counter() - started
        print(f"batch {batch_id}: {args.rows} rows stored in {stored:.1f} s", flush=True)
        env = os.environ | {"KIZUNA_DATABASE_URL": url, "KIZUNA_LOG_JSON": "true"}
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "kizuna", "worker", "--only", "batches.process"],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.workers)
        ]
        started = time.perf_counter()
        try:
            while True:
                time.sleep(2)
                with database.read() as session:
                    batch = session.get(PurchaseBatch, batch_id)
                    assert batch is not None
                    done = batch.ok_rows + batch.duplicate_rows + batch.error_rows
                    status = batch.status
                elapsed = time.perf_counter() - started
                print(f"  {done:>7} rows  {done / elapsed:8.0f} rows/s", flush=True)
                if status == "completed":
                    break
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)
        elapsed = time.perf_counter() - started
        with database.read() as session:
            batch = session.get(PurchaseBatch, batch_id)
            assert batch is not None
            counts = {"ok": batch.ok_rows, "errors": batch.error_rows}
        facts = machine(url)
        database.dispose()
    figures = {
        "rows": args.rows,
        "rows_per_s": round(args.rows / elapsed, 1),
        "seconds": round(elapsed, 1),
        "store_seconds": round(stored, 1),
        "workers": args.workers,
        **counts,
        "machine": facts,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

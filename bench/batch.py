"""Offline batch throughput: a 100,000-row NDJSON file of purchases processed by `kizuna worker`.

Worker processes (`kizuna worker --only batches.process`, two by default, sharing the batch's
chunks through `FOR UPDATE SKIP LOCKED`) are started and warmed up first; then the file is stored
as a batch (what the upload endpoint does) and the workers post it. Printed: rows per second from
the batch's commit to its completion; CPU per row of the workers and of the PostgreSQL backends
serving them (from /proc: unlike the wall clock, it hardly depends on what else the shared machine
runs); the load average before and after; and, after the run, how many violations of the
ledger's invariants `kizuna reconcile` finds (none). The last line printed is one JSON object.

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
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from bench.api import seed
from bench.pg import machine, scratch_database, server_url
from sqlalchemy import text

from kizuna.batches import service as batches
from kizuna.batches.domain import BatchFormat
from kizuna.batches.models import PurchaseBatch
from kizuna.clients.models import ApiClient
from kizuna.clients.service import identity_of
from kizuna.core.clock import utcnow
from kizuna.db.database import Database
from kizuna.ledger import reconcile

TICK = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 6.0


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def backend_pids(database: Database) -> list[int]:
    """The server processes connected to the bench's database, this one's own excluded."""
    with database.read() as session:
        return list(
            session.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        )


def run(
    url: str, *, rows: int, members: int, workers: int, warm_up: float = WARM_UP_SECONDS
) -> dict[str, Any]:
    """Seed, start `workers` worker processes, store the batch and wait until they have posted
    it; returns the figures."""
    print(f"seeding {members} members …", flush=True)
    spec = seed(url, members)
    database = Database(url)
    content = make_file(rows, spec["store_id"], tuple(spec["members"]))
    env = os.environ | {"KIZUNA_DATABASE_URL": url, "KIZUNA_LOG_JSON": "true"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "kizuna", "worker", "--only", "batches.process"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        time.sleep(warm_up)  # imports and first rounds of the job: not part of the figure
        worker_cpu = {p.pid: cpu_seconds(p.pid) or 0.0 for p in processes}
        server_cpu = {pid: cpu_seconds(pid) or 0.0 for pid in backend_pids(database)}
        baseline = sum(worker_cpu.values()), sum(server_cpu.values())
        load_before = os.getloadavg()
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
        stored = time.perf_counter()
        print(f"batch {batch_id}: {rows} rows stored in {stored - started:.1f} s", flush=True)
        last_print = stored
        while True:
            time.sleep(0.2)
            with database.read() as session:
                polled = session.get(PurchaseBatch, batch_id)
                assert polled is not None
                done = polled.ok_rows + polled.duplicate_rows + polled.error_rows
                status = polled.status
            now = time.perf_counter()
            for pid in backend_pids(database):
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    server_cpu[pid] = max(server_cpu.get(pid, 0.0), seconds)
            for process in processes:
                seconds = cpu_seconds(process.pid)
                if seconds is not None:
                    worker_cpu[process.pid] = seconds
            if now - last_print >= 2 or status == "completed":
                print(f"  {done:>7} rows  {done / (now - stored):8.0f} rows/s", flush=True)
                last_print = now
            if status == "completed":
                ended = now  # polled every 0.2 s: the figure errs by at most that
                break
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    load_after = os.getloadavg()
    with database.read() as session:
        final = session.get(PurchaseBatch, batch_id)
        assert final is not None
        counts = {
            "ok": final.ok_rows,
            "duplicates": final.duplicate_rows,
            "errors": final.error_rows,
            # what `kizuna reconcile` checks, after the run: the books must balance
            "reconcile_violations": len(reconcile.check(session)),
        }
    database.dispose()
    worker_total = sum(worker_cpu.values()) - baseline[0]
    server_total = sum(server_cpu.values()) - baseline[1]
    return {
        "rows": rows,
        # from the batch's commit to its completion (the job picks it up within 2 s)
        "rows_per_s": round(rows / (ended - stored), 1),
        "seconds": round(ended - stored, 1),
        "store_seconds": round(stored - started, 1),
        "workers": workers,
        # CPU per row of the worker processes (start-up excluded) and of the PostgreSQL backends
        # serving them (WAL writer and checkpointer excluded; seen only when the server runs on
        # this machine): unlike the wall clock, these hardly depend on the machine's other load.
        "worker_cpu_us_per_row": round(worker_total / rows * 1e6, 1),
        "server_cpu_us_per_row": round(server_total / rows * 1e6, 1) if server_cpu else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        **counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=None, help="PostgreSQL server URL")
    parser.add_argument("--database-url", help="use this empty database instead of a scratch one")
    parser.add_argument(
        "--warm-up", type=float, default=WARM_UP_SECONDS, help="seconds for workers to start"
    )
    args = parser.parse_args(argv)
    scratch = (
        nullcontext(args.database_url)
        if args.database_url
        else scratch_database(server_url(args.server), "kizuna_bench_batch")
    )
    with scratch as url:
        figures = run(
            url, rows=args.rows, members=args.members, workers=args.workers, warm_up=args.warm_up
        )
        figures["machine"] = machine(url)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Expiry throughput: how fast the expiry job writes off a million due lots on PostgreSQL.

Setup bulk-loads members, each with the same number of lots, whose expiries are spread over the
last day (SQL, not measured). The measured part is what the worker's `ledger.expire` job runs,
`kizuna.ledger.expiry.expire_all`: batches committed one by one, each writing one `expire` entry
and one outbox event per member and marking every lot with its write-off (no allocations);
`--workers N` runs N threads side by side (default: one per core, as the job does). Afterwards
the bench checks that every due lot was written off exactly once and that the entries add up to
the lots. The last line printed is JSON.

    python -m bench.expiry [--lots 1000000] [--members 100000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

from bench.pg import machine, scratch_database, seed_points, server_url
from sqlalchemy import func, select, text

from kizuna.core.clock import utcnow
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.ledger.expiry import DEFAULT_BATCH, DEFAULT_WORKERS, expire_all
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.partners import service as partners


def _server_cpu_seconds(database: Database) -> dict[int, float]:
    """CPU seconds so far of each server process connected to the bench's database, by pid.

    Read from /proc, so only when the server runs on this machine (else empty): unlike the wall
    clock, it does not depend on what else the machine is doing.
    """
    with database.read() as session:
        pids = session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).all()
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def run_expiry(
    url: str, *, lots: int, members: int, batch_size: int, workers: int
) -> dict[str, Any]:
    """Load `lots` due lots over `members` members, expire them, and return the figures."""
    upgrade(url)
    database = Database(url)
    with database.write() as session:
        program = partners.create_program(session, code="BENCH", name="Bench")
        partner = partners.create_partner(session, program_id=program.id, code="P", name="P")
    now = utcnow()
    setup_started = time.perf_counter()
    seed_points(
        url,
        program_id=program.id,
        partner_id=partner.id,
        members=members,
        lots_per_member=lots // members,
        points=100,
        earned_at=now - timedelta(days=366),
        expires_at=now - timedelta(minutes=1),
    )
    setup_seconds = time.perf_counter() - setup_started
    cpu_before = _server_cpu_seconds(database)
    started = time.perf_counter()
    expired = expire_all(database, as_of=now, batch_size=batch_size, workers=workers)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    cpu_after = _server_cpu_seconds(database)
    server_cpu = sum(cpu - cpu_before.get(pid, 0.0) for pid, cpu in cpu_after.items())
    with database.read() as session:
        left = session.scalar(
            select(func.count()).select_from(Lot).where(Lot.remaining > 0, Lot.expires_at <= now)
        )
        marked, written_off = session.execute(
            select(func.count(), func.coalesce(func.sum(Lot.expired_points), 0)).where(
                Lot.expire_entry_id.is_not(None)
            )
        ).one()
        entries, booked = session.execute(
            select(func.count(), func.coalesce(func.sum(JournalEntry.amount), 0)).where(
                JournalEntry.entry_type == "expire"
            )
        ).one()
    database.dispose()
    if left or marked != expired or written_off != -booked:
        raise RuntimeError(
            f"expiry incomplete: {left} due lots left, {marked} of {expired} lots marked,"
            f" {written_off} points written off against {-booked} booked"
        )
    return {
        "expiry_lots": expired,
        "expire_entries": entries,
        "expiry_s": round(seconds, 2),
        "lots_per_s": round(expired / seconds),
        # CPU of the PostgreSQL backends that ran the job (WAL writer and checkpointer excluded).
        "server_cpu_s": round(server_cpu, 1) if cpu_after else None,
        "server_cpu_us_per_lot": round(server_cpu / expired * 1e6, 1) if cpu_after else None,
        "setup_s": round(setup_seconds, 1),
        "load_average_after": round(load_after, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="PostgreSQL server URL (default: local, user postgres)")
    parser.add_argument("--database-url", help="use this empty database instead of a scratch one")
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="threads claiming batches (default: what the job uses, one per core up to 4)",
    )
    args = parser.parse_args(argv)
    members = min(args.members, args.lots)
    lots = members * (args.lots // members)

    def measure(url: str) -> dict[str, Any]:
        facts = machine(url)
        print(
            f"Kizuna expiry benchmark: PostgreSQL {facts['postgresql']}, {facts['cpus']} CPUs, "
            f"load average {facts['load_average']}"
        )
        print(
            f"{lots:,} due lots: {members:,} members x {lots // members:,} lots, expiries spread"
            f" over the last day; batches of {args.batch_size:,}, {args.workers} worker(s)"
        )
        figures = run_expiry(
            url, lots=lots, members=members, batch_size=args.batch_size, workers=args.workers
        )
        return {**figures, "machine": facts}

    if args.database_url:
        figures = measure(args.database_url)
    else:
        with scratch_database(server_url(args.server), "kizuna_bench_expiry") as url:
            figures = measure(url)
    print(f"setup (bulk SQL, not measured): {figures['setup_s']} s")
    print(
        f"expiry: {figures['expiry_lots']:,} lots ({figures['expire_entries']:,} expire entries)"
        f" in {figures['expiry_s']} s = {figures['lots_per_s']:,} lots/s"
        "  (target: 1,000,000 lots in <= 20 s)"
    )
    if figures["server_cpu_s"] is not None:
        print(
            f"PostgreSQL backend CPU: {figures['server_cpu_s']} s ="
            f" {figures['server_cpu_us_per_lot']} µs per lot"
        )
    print(f"load average after the run: {figures['load_average_after']}")
    summary = {
        **figures,
        "members": members,
        "lots_per_member": lots // members,
        "batch_size": args.batch_size,
        "workers": args.workers,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

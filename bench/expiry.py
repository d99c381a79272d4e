"""Expiry throughput: how fast the nightly job writes off a million due lots on PostgreSQL.

Setup bulk-loads members whose lots all expired during the last day (SQL, not measured). The
measured part is the ledger's own job, `kizuna.ledger.expiry.expire_due`, in one transaction:
one `expire` entry and one allocation per lot, every lot emptied, one outbox event per member and
batch. Afterwards the bench checks that no due lot is left. The last line printed is JSON.

    python -m bench.expiry [--lots 1000000] [--members 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from typing import Any

from bench.pg import machine, scratch_database, seed_points, server_url
from sqlalchemy import func, select

from kizuna.core.clock import utcnow
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.ledger.expiry import DEFAULT_BATCH, expire_due
from kizuna.ledger.models import JournalEntry, Lot
from kizuna.partners import service as partners


def run_expiry(url: str, *, lots: int, members: int, batch_size: int) -> dict[str, Any]:
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
    started = time.perf_counter()
    with database.write() as session:
        expired = expire_due(session, as_of=now, batch_size=batch_size)
    seconds = time.perf_counter() - started
    with database.read() as session:
        left = session.scalar(
            select(func.count()).select_from(Lot).where(Lot.remaining > 0, Lot.expires_at <= now)
        )
        entries = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.entry_type == "expire")
        )
    database.dispose()
    if left or entries != expired:
        raise RuntimeError(f"expiry incomplete: {left} due lots left, {entries} entries")
    return {
        "expiry_lots": expired,
        "expiry_s": round(seconds, 2),
        "lots_per_s": round(expired / seconds),
        "setup_s": round(setup_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="PostgreSQL server URL (default: local, user postgres)")
    parser.add_argument("--database-url", help="use this empty database instead of a scratch one")
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args(argv)
    members = min(args.members, args.lots)

    def measure(url: str) -> dict[str, Any]:
        facts = machine(url)
        print(
            f"Kizuna expiry benchmark: PostgreSQL {facts['postgresql']}, {facts['cpus']} CPUs, "
            f"{args.lots:,} due lots over {members:,} members, batches of {args.batch_size:,}"
        )
        figures = run_expiry(url, lots=args.lots, members=members, batch_size=args.batch_size)
        return {**figures, "machine": facts}

    if args.database_url:
        figures = measure(args.database_url)
    else:
        with scratch_database(server_url(args.server), "kizuna_bench_expiry") as url:
            figures = measure(url)
    print(f"setup (bulk SQL, not measured): {figures['setup_s']} s")
    print(
        f"expiry: {figures['expiry_lots']:,} lots in {figures['expiry_s']} s = "
        f"{figures['lots_per_s']:,} lots/s  (target: 1,000,000 lots in <= 20 s)"
    )
    print(json.dumps({**figures, "batch_size": args.batch_size}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

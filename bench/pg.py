"""What every PostgreSQL benchmark needs: a scratch database, pgbench as a yardstick, machine facts.

A benchmark creates its own database on the server, drops it when done, and compares itself with
pgbench's TPC-B-like workload run on the same server with the same client count, so that the
figure means something on whatever machine it ran on.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from kizuna.db.database import normalise_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url(url: str | None = None) -> URL:
    """The PostgreSQL server to use: `url`, `KIZUNA_BENCH_SERVER`, or the local default."""
    return make_url(normalise_url(url or os.environ.get("KIZUNA_BENCH_SERVER", DEFAULT_SERVER)))


def _admin(server: URL, sql: str) -> None:
    engine = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@contextmanager
def scratch_database(server: URL, prefix: str) -> Iterator[str]:
    """A new empty database on `server` for the duration of the block; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    command: str


def _pgbench_args(url: URL) -> list[str]:
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    if url.username:
        args += ["-U", url.username]
    return args


def pgbench(server: URL, *, clients: int, threads: int, seconds: int) -> PgbenchResult:
    """Run pgbench's tpcb-like workload on a scratch database of `server`."""
    env = {**os.environ}
    if server.password:
        env["PGPASSWORD"] = server.password
    with scratch_database(server, "kizuna_pgbench") as url:
        target = make_url(url)
        base = ["pgbench", *_pgbench_args(target)]
        subprocess.run(
            [*base, "-i", "-q", target.database or ""],
            check=True,
            capture_output=True,
            env=env,
        )
        options = ["-c", str(clients), "-j", str(threads), "-T", str(seconds), "-b", "tpcb-like"]
        run = subprocess.run(
            [*base, *options, target.database or ""],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    tps = re.search(r"tps = ([\d.]+)", run.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", run.stdout)
    if tps is None:
        raise RuntimeError(f"could not read pgbench's tps from:\n{run.stdout}\n{run.stderr}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else float("nan"),
        command="pgbench " + " ".join(options),
    )


def machine(url: str) -> dict[str, object]:
    """Facts that make a figure comparable: CPUs, memory, server version and durability settings."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            version = conn.scalar(text("SHOW server_version"))
            settings = {
                name: conn.scalar(text(f"SHOW {name}"))
                for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
            }
    finally:
        engine.dispose()
    memory = (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "python": platform.python_version(),
        # Anything above the CPU count means other work competed with the benchmark.
        "load_average": round(os.getloadavg()[0], 1),
        "postgresql": version,
        **settings,
    }


_SEED = (
    """
INSERT INTO members (program_id, status, joined_at)
SELECT :program_id, 'active', :earned_at FROM generate_series(1, :members)
""",
    """
INSERT INTO point_accounts (member_id, debt, updated_at)
SELECT id, 0, :earned_at FROM members WHERE program_id = :program_id
""",
    # Each opening lot was earned on a receipt at the partner's first store (with no store, the
    # lots have no receipt). Besides being what a programme in use holds, a table of receipts
    # with rows in it (and analysed) is what the planner of every later statement should see.
    """
INSERT INTO purchases (member_id, partner_id, store_id, receipt_no, channel, occurred_at,
                       recorded_at, total_amount, lines, returned_quantities, points_used,
                       refunded_amount, points_restored, status)
SELECT m.id, s.partner_id, s.id, 'SEED-' || m.id || '-' || n, 'store', :earned_at, :earned_at,
       :points * 100, '[]'::jsonb, '[]'::jsonb, 0, 0, 0, 'completed'
FROM members m CROSS JOIN generate_series(1, :lots_per_member) n
CROSS JOIN (SELECT id, partner_id FROM stores WHERE partner_id = :partner_id
            ORDER BY id LIMIT 1) s
WHERE m.program_id = :program_id
""",
    """
INSERT INTO journal_entries (member_id, entry_type, amount, debt_change, reversed_points,
                             occurred_at, recorded_at, partner_id, store_id, purchase_id, actor,
                             reason_code)
SELECT m.id, 'earn', :points, 0, 0, :earned_at, :earned_at, :partner_id, p.store_id, p.id,
       'bench', 'bench_seed'
FROM members m CROSS JOIN generate_series(1, :lots_per_member) n
LEFT JOIN purchases p ON p.receipt_no = 'SEED-' || m.id || '-' || n
WHERE m.program_id = :program_id
ORDER BY m.id
""",
    # Expiries spread over a day before `expires_at`, as lots earned over a day would be.
    """
INSERT INTO lots (member_id, kind, expiry_rule, amount, remaining, earned_at, available_at,
                  expires_at, funding_partner_id, source_entry_id)
SELECT member_id, 'standard', 'fixed', amount, amount, occurred_at, occurred_at,
       CAST(:expires_at AS timestamptz) - make_interval(secs => (id % 86400)::int),
       partner_id, id
FROM journal_entries WHERE reason_code = 'bench_seed'
""",
)


def seed_points(
    url: str,
    *,
    program_id: int,
    partner_id: int,
    members: int,
    lots_per_member: int,
    points: int,
    earned_at: datetime,
    expires_at: datetime,
) -> None:
    """Bulk-load members, each with `lots_per_member` earned lots of `points` (setup, not measured).

    The rows are those the ledger's `earn` writes for an earn of one lot (entry, lot, account),
    so every invariant of `kizuna reconcile` holds; SQL makes a million of them in seconds.
    """
    engine = create_engine(normalise_url(url))
    params = {
        "program_id": program_id,
        "partner_id": partner_id,
        "members": members,
        "lots_per_member": lots_per_member,
        "points": points,
        "earned_at": earned_at,
        "expires_at": expires_at,
    }
    try:
        with engine.begin() as conn:
            if conn.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")):
                # The rows are consistent by construction: skip the per-row foreign-key triggers
                # while loading (a superuser's bulk-load switch; it ends with the transaction).
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in _SEED:
                conn.execute(text(statement), params)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()

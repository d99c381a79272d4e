"""Ledger throughput: a mixed till workload through the service layer, against pgbench.

Eight workers (threads spread over `--processes` forked processes: one process cannot use two
cores, eight single-threaded ones thrash them) each hold their own connection and loop, each
iteration one committed transaction through the purchases service (a purchase's COMMIT going with
its writes, `commit_purchase(commit=True)`): 70 % a purchase that earns,
25 % a purchase paid partly with points, 5 % a return of an earlier purchase. Members (10,000 by
default, bulk-loaded with 500 points each) are picked at random. Then pgbench's tpcb-like workload
runs on the same server with the same number of clients. The last line printed is JSON.

    python -m bench.ledger [--members 10000] [--workers 8] [--processes 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.pg import machine, pgbench, scratch_database, seed_points, server_url
from sqlalchemy import select

from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.members.models import Member
from kizuna.partners import service as partners
from kizuna.purchases import returns
from kizuna.purchases import service as purchases
from kizuna.purchases.domain import PurchaseRequest, ReturnLine
from kizuna.rules.domain import PurchaseLine

MIX = (("earn", 70), ("redeem", 25), ("return", 5))
# Measured on 2 cores (docs/performance.md): eight single-threaded processes spend ~35 % more CPU
# per transaction than one or two processes of threads; two still let Python use both cores.
PROCESSES = 2
OPENING_POINTS = 500  # what each member can spend during the run


@dataclass
class WorkerReport:
    index: int
    cpu_seconds: float = 0.0  # this worker's own CPU time (a load-independent cost figure)
    latencies: list[float] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def _lines(rng: random.Random) -> list[PurchaseLine]:
    return [
        PurchaseLine(
            sku=f"SKU{rng.randint(1, 500)}", amount=rng.randint(100, 3000), category="food"
        )
        for _ in range(rng.randint(1, 4))
    ]


def setup(url: str, members: int) -> int:
    """A programme, a partner, a store and `members` members holding 500 points each.

    Returns the store id. The programme comes from the services; the members and their opening
    points are bulk-loaded (setup is not what is measured).
    """
    upgrade(url)
    database = Database(url)
    with database.write() as session:
        program = partners.create_program(session, code="BENCH", name="Bench")
        partner = partners.create_partner(session, program_id=program.id, code="P", name="P")
        store = partners.create_store(session, partner_id=partner.id, code="S", name="S")
    database.dispose()
    now = utcnow()
    seed_points(
        url,
        program_id=program.id,
        partner_id=partner.id,
        members=members,
        lots_per_member=1,
        points=OPENING_POINTS,
        earned_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=365),
    )
    return store.id


class Workload:
    """One worker's loop: pick an operation by the mix, run it as one committed transaction."""

    def __init__(self, database: Database, store_id: int, index: int, seed: int) -> None:
        self.database = database
        self.store_id = store_id
        self.index = index
        self.rng = random.Random(seed)
        with database.read() as session:
            self.member_ids = list(session.scalars(select(Member.id)))
        self.receipts: list[tuple[str, int]] = []  # (receipt number, lines) this worker made
        self.serial = 0
        self.report = WorkerReport(index)

    def purchase(self, redeem: int) -> None:
        self.serial += 1
        receipt = f"W{self.index}-{self.serial}"
        lines = _lines(self.rng)
        now = utcnow()
        request = PurchaseRequest(
            member_id=self.rng.choice(self.member_ids),
            store_id=self.store_id,
            receipt_no=receipt,
            occurred_at=now,
            lines=lines,
            redeem_points=min(redeem, sum(line.amount for line in lines)),
        )
        # The receipt is the whole transaction: its COMMIT goes with its writes, as a till's
        # commit through the API does with its idempotency record (`commit_purchase(commit=…)`).
        with self.database.write() as session:
            purchases.commit_purchase(
                session, request=request, as_of=now, actor="bench", commit=True
            )
        self.receipts.append((receipt, len(lines)))

    def give_back(self) -> None:
        if not self.receipts:
            self.purchase(0)
            return
        receipt, count = self.receipts.pop(self.rng.randrange(len(self.receipts)))
        partial = count > 1 and self.rng.random() < 0.5
        lines = [ReturnLine(line_no=self.rng.randrange(count), quantity=1)] if partial else None
        with self.database.write() as session:
            returns.return_purchase(
                session,
                store_id=self.store_id,
                receipt_no=receipt,
                lines=lines,
                as_of=utcnow(),
                actor="bench",
            )

    def step(self) -> None:
        operation = self.rng.choices([name for name, _ in MIX], [w for _, w in MIX])[0]
        started = time.perf_counter()
        try:
            if operation == "earn":
                self.purchase(0)
            elif operation == "redeem":
                self.purchase(self.rng.choice((50, 100, 200)))
            else:
                self.give_back()
        except KizunaError as error:
            self.report.errors[str(error.code)] += 1
        self.report.latencies.append(time.perf_counter() - started)
        self.report.operations[operation] += 1


def run_worker(
    index: int,
    url: str,
    store_id: int,
    seconds: float,
    warm_up: int,
    barrier: Any,
    results: Any,
) -> None:
    """Connect, wait for every worker, run the mix until the deadline, report."""
    database = Database(url, pool_size=1, max_overflow=0)
    try:
        workload = Workload(database, store_id, index, seed=index)
        # A running server is warm: statements compiled, psycopg's prepared statements made.
        for _ in range(warm_up):
            workload.step()
        workload.report = WorkerReport(index)
        barrier.wait()  # start together
        deadline = time.perf_counter() + seconds
        cpu_started = time.thread_time()
        while time.perf_counter() < deadline:
            workload.step()
        workload.report.cpu_seconds = time.thread_time() - cpu_started
        results.put(workload.report)
    except BaseException as failure:
        # Nobody should wait for a worker that is gone: break the barrier and say why.
        barrier.abort()
        results.put(f"worker {index}: {failure!r}")
        raise
    finally:
        database.dispose()


def run_group(indices: list[int], *args: Any) -> None:
    """One process's share of the workers, as threads (each with its own connection)."""
    threads = [threading.Thread(target=run_worker, args=(index, *args)) for index in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def run_ledger(
    url: str, *, members: int, workers: int, processes: int, seconds: float, warm_up: int
) -> dict[str, Any]:
    """Run the mixed workload; returns the figures."""
    setup_started = time.perf_counter()
    store_id = setup(url, members)
    setup_seconds = time.perf_counter() - setup_started
    # Workers are spread over `processes` forked processes, as threads inside each.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers + 1)
    results: Any = context.Queue()
    groups = [list(range(workers))[n::processes] for n in range(processes)]
    runners = [
        context.Process(
            target=run_group,
            args=(group, url, store_id, seconds, warm_up, barrier, results),
            daemon=True,
        )
        for group in groups
    ]
    for runner in runners:
        runner.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a worker failed: {results.get(timeout=10)}") from None
    started = time.perf_counter()
    reports: list[WorkerReport] = []
    for _ in range(workers):
        report = results.get(timeout=seconds + 120)
        if isinstance(report, str):
            raise RuntimeError(f"a worker failed: {report}")
        reports.append(report)
    elapsed = time.perf_counter() - started
    for runner in runners:
        runner.join(timeout=30)
    latencies = [value for report in reports for value in report.latencies]
    operations = sum((report.operations for report in reports), Counter())
    errors = sum((report.errors for report in reports), Counter())
    return {
        "ledger_tps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "transactions": len(latencies),
        "client_cpu_ms_per_tx": round(
            1000 * sum(report.cpu_seconds for report in reports) / max(len(latencies), 1), 2
        ),
        "operations": dict(operations),
        "errors": dict(errors),
        "setup_s": round(setup_seconds, 1),
        "elapsed_s": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="PostgreSQL server URL (default: local, user postgres)")
    parser.add_argument("--database-url", help="use this empty database instead of a scratch one")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--processes", type=int, default=PROCESSES, help="processes the workers are spread over"
    )
    parser.add_argument(
        "--warm-up", type=int, default=30, help="unmeasured transactions per worker first"
    )
    parser.add_argument("--pgbench-seconds", type=int, help="default: --seconds")
    parser.add_argument("--pgbench-threads", type=int, default=2)
    args = parser.parse_args(argv)
    server = server_url(args.server)

    def measure(url: str) -> dict[str, Any]:
        facts = machine(url)
        print(
            f"Kizuna ledger benchmark: PostgreSQL {facts['postgresql']}, {facts['cpus']} CPUs, "
            f"{args.workers} workers in {args.processes} processes, {args.members:,} members, "
            f"{args.seconds:g} s"
        )
        figures = run_ledger(
            url,
            members=args.members,
            workers=args.workers,
            seconds=args.seconds,
            processes=max(1, min(args.processes, args.workers)),
            warm_up=args.warm_up,
        )
        return {"machine": facts, **figures}

    if args.database_url:
        figures = measure(args.database_url)
    else:
        with scratch_database(server, "kizuna_bench") as url:
            figures = measure(url)
    mix = ", ".join(f"{name} {count:,}" for name, count in sorted(figures["operations"].items()))
    print(f"setup: {args.members:,} members, {OPENING_POINTS} points each, {figures['setup_s']} s")
    print(
        f"ledger:  {figures['ledger_tps']:8.1f} tx/s  p50 {figures['p50_ms']:.1f} ms  "
        f"p99 {figures['p99_ms']:.1f} ms  ({figures['transactions']:,} transactions: {mix}; "
        f"errors {figures['errors'] or 'none'})"
    )
    print(
        f"client CPU per transaction: {figures['client_cpu_ms_per_tx']:.1f} ms "
        f"(load average at start {figures['machine']['load_average']})"
    )
    yardstick = pgbench(
        server,
        clients=args.workers,
        threads=args.pgbench_threads,
        seconds=args.pgbench_seconds or max(int(args.seconds), 1),
    )
    print(
        f"pgbench: {yardstick.tps:8.1f} tx/s  latency avg {yardstick.latency_ms:.1f} ms  "
        f"({yardstick.command})"
    )
    ratio = figures["ledger_tps"] / yardstick.tps if yardstick.tps else 0.0
    print(f"ratio ledger/pgbench: {ratio:.2f}  (targets: ratio >= 0.5, p99 <= 25 ms)")
    summary = {
        "ledger_tps": figures["ledger_tps"],
        "pgbench_tps": round(yardstick.tps, 1),
        "ratio": round(ratio, 3),
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "workers": args.workers,
        "processes": args.processes,
        "members": args.members,
        "seconds": args.seconds,
        "transactions": figures["transactions"],
        "client_cpu_ms_per_tx": figures["client_cpu_ms_per_tx"],
        "errors": figures["errors"],
        "machine": figures["machine"],
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""API throughput and latency: `kizuna serve --workers 2` on PostgreSQL under rising concurrency.

A load generator in another process (an asyncio HTTP/1.1 client with keep-alive connections)
posts purchase commits that redeem points and earn, for 10,000 members picked at random, each with
a fresh receipt number and Idempotency-Key. Each step runs a closed loop at one concurrency and
prints throughput and p50/p95/p99; then an open loop at half the peak throughput measures the p99
a till would see at ordinary load (latency counted from the scheduled send time, so queueing is
included). pgbench's tpcb-like workload then runs on the same server as the yardstick. The last
line printed is one JSON object.

    kizuna bench api [--members 10000] [--steps 1,2,4,8,16,32] [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from typing import Any

from bench.pg import machine, pgbench, scratch_database, seed_points, server_url
from sqlalchemy import create_engine, func, select, text

from kizuna.clients import service as clients
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.db.database import Database, normalise_url
from kizuna.db.migrate import upgrade
from kizuna.members.models import Member
from kizuna.partners import service as partners

OPENING_POINTS = 1_000_000


def seed(url: str, count: int) -> dict[str, Any]:
    """A programme, a partner with one store and an API client, and `count` members with points.

    The members and their opening points (each earned on a receipt) are bulk-loaded and the
    tables analysed, as `bench ledger` does: setup is not what is measured.
    """
    upgrade(url)
    database = Database(url)
    now = utcnow()
    with database.write() as session:
        program = partners.create_program(session, code="BENCH", name="Bench")
        partner = partners.create_partner(session, program_id=program.id, code="P", name="P")
        store = partners.create_store(session, partner_id=partner.id, code="S1", name="S1")
        _, key = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.PARTNER,
            name="bench",
            rate_per_minute=10_000_000,
            as_of=now,
        )
        ids = (program.id, partner.id, store.id)
    with database.read() as session:
        first = session.scalar(select(func.coalesce(func.max(Member.id), 0))) + 1
    database.dispose()
    seed_points(
        url,
        program_id=ids[0],
        partner_id=ids[1],
        members=count,
        lots_per_member=1,
        points=OPENING_POINTS,
        earned_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=365),
    )
    _seed_keys(url, now)
    return {"key": key, "store_id": ids[2], "members": [first, first + count - 1]}


def _seed_keys(url: str, now: datetime) -> None:
    """An `Idempotency-Key` for each seeded receipt, as if it had come through the API, and the
    table analysed: an API in use has keys, and a table of keys the planner has never seen makes
    it pick a sequential scan for every key's look-up."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO idempotency_keys (client, key, request_hash, response_status,"
                    " response_body, created_at, expires_at)"
                    " SELECT 'seed', receipt_no, '', 201, '{}'::jsonb, :now, :expires"
                    " FROM purchases"
                ),
                {"now": now, "expires": now + timedelta(days=7)},
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE idempotency_keys"))
    finally:
        engine.dispose()


# --- the load generator (runs in its own process) -------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


class Load:
    """Purchase commits with redemptions for random members."""

    def __init__(self, spec: dict[str, Any], port: int) -> None:
        self.spec, self.port = spec, port
        self.rng = random.Random(7)

    def request(self) -> tuple[bytes, dict[str, str]]:
        low, high = self.spec["members"]
        amount = self.rng.randint(500, 5000)
        body = {
            "member_id": self.rng.randint(low, high),
            "store_id": self.spec["store_id"],
            "receipt_no": uuid.uuid4().hex,
            "lines": [{"sku": f"SKU{self.rng.randint(1, 500)}", "amount": amount}],
            "redeem_points": self.rng.randint(1, 50),
        }
        headers = {
            "Authorization": f"Bearer {self.spec['key']}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        }
        return json.dumps(body).encode(), headers

    async def closed_loop(self, concurrency: int, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            nonlocal errors
            connection = await Connection.open(self.port)
            while time.perf_counter() < deadline:
                body, headers = self.request()
                started = time.perf_counter()
                status = await connection.post("/v1/purchases", body, headers)
                latencies.append(time.perf_counter() - started)
                errors += status != 201
            connection.writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return summary(latencies, errors, time.perf_counter() - started, concurrency=concurrency)

    async def open_loop(self, rate: float, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(64):
            idle.put_nowait(await Connection.open(self.port))

        async def one(scheduled: float) -> None:
            nonlocal errors
            connection = await idle.get()
            body, headers = self.request()
            status = await connection.post("/v1/purchases", body, headers)
            latencies.append(time.perf_counter() - scheduled)
            errors += status != 201
            idle.put_nowait(connection)

        tasks = []
        start = time.perf_counter()
        count = int(rate * seconds)
        for n in range(count):
            scheduled = start + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        return summary(latencies, errors, time.perf_counter() - start, rate=round(rate, 1))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def summary(latencies: list[float], errors: int, elapsed: float, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def loadgen_main(spec_json: str, port: int, steps: list[int], seconds: float) -> None:
    """The load generator process: prints one JSON line per step."""
    spec = json.loads(spec_json)
    load = Load(spec, port)

    async def run() -> None:
        await load.closed_loop(4, 2.0)  # warm-up: connections, caches, JIT of the pools
        peak = 0.0
        for concurrency in steps:
            result = await load.closed_loop(concurrency, seconds)
            peak = max(peak, result["rps"])
            print(json.dumps({"step": "closed", **result}), flush=True)
        half = await load.open_loop(peak / 2, seconds)
        print(json.dumps({"step": "half_load", **half}), flush=True)

    asyncio.run(run())


# --- the conductor --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the API server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--steps", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--server", default=None, help="PostgreSQL server URL")
    parser.add_argument("--loadgen", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")]
    if args.loadgen:
        loadgen_main(args.loadgen, args.port, steps, args.seconds)
        return 0

    server = server_url(args.server)
    with scratch_database(server, "kizuna_bench_api") as url:
        print(f"seeding {args.members} members …", flush=True)
        spec = seed(url, args.members)
        port = free_port()
        env = os.environ | {"KIZUNA_DATABASE_URL": url, "KIZUNA_LOG_JSON": "true"}
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kizuna",
                "serve",
                "--workers",
                str(args.workers),
                "--port",
                str(port),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port)
            print(f"kizuna serve --workers {args.workers} on :{port}", flush=True)
            columns = ("concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors")
            print(" ".join(f"{name:>11}" for name in columns))
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.api",
                    "--loadgen",
                    json.dumps(spec),
                    "--port",
                    str(port),
                    "--steps",
                    args.steps,
                    "--seconds",
                    str(args.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            results = []
            assert load.stdout is not None
            for line in load.stdout:
                result = json.loads(line)
                results.append(result)
                label = result.get("concurrency", f"{result.get('rate')}/s")
                cells = (
                    label,
                    *(result[k] for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")),
                )
                print(" ".join(f"{cell!s:>11}" for cell in cells), flush=True)
            load.wait()
        finally:
            api.terminate()
            api.wait(30)
        facts = machine(url)
    closed = [r for r in results if r["step"] == "closed"]
    peak = max(closed, key=lambda r: r["rps"])
    half = next(r for r in results if r["step"] == "half_load")
    print(f"pgbench tpcb-like, {peak['concurrency']} clients …", flush=True)
    yardstick = pgbench(
        server, clients=peak["concurrency"], threads=2, seconds=args.pgbench_seconds
    )
    print(f"pgbench: {yardstick.tps:.0f} tps ({yardstick.command})")
    figures = {
        "api_rps": peak["rps"],
        "api_peak_concurrency": peak["concurrency"],
        "api_p99_ms_at_peak": peak["p99_ms"],
        "pgbench_tps": round(yardstick.tps, 1),
        "ratio": round(peak["rps"] / yardstick.tps, 3),
        "p99_ms_at_half_load": half["p99_ms"],
        "half_load_rps": half["rps"],
        "workers": args.workers,
        "members": args.members,
        "steps": closed,
        "machine": facts,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

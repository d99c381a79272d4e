"""A client's rate limit holds across the API's worker processes (one host), both engines for
the end-to-end part: `kizuna serve --workers 2` shares one table of buckets between them."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from kizuna.clients import buckets
from kizuna.clients import service as clients
from kizuna.clients.buckets import SharedTokenBuckets
from kizuna.clients.domain import ClientKind
from kizuna.core.clock import utcnow
from kizuna.partners import service as partners

NOW = 1_000.0  # one instant for every process: no token comes back during the test


def _take(path: str, client_id: int, tries: int, allowed: multiprocessing.Queue) -> None:
    shared = SharedTokenBuckets(path)
    allowed.put(sum(shared.retry_after(client_id, 60, NOW) == 0 for _ in range(tries)))
    shared.close()


def test_two_processes_share_one_bucket_per_client(tmp_path):
    path = str(tmp_path / "buckets")
    buckets.create(path)
    context = multiprocessing.get_context("fork")
    allowed: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_take, args=(path, 7, 50, allowed)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)

    assert allowed.get(timeout=5) + allowed.get(timeout=5) == 60  # not 2 × 50
    shared = SharedTokenBuckets(path)
    assert shared.retry_after(7, 60, NOW) > 0  # client 7 has used its minute
    assert shared.retry_after(8, 60, NOW) == 0  # client 8 has a bucket of its own
    assert shared.retry_after(7, 60, NOW + 1.0) == 0  # a token a second comes back
    shared.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)
    except OSError:  # not listening yet
        return 0


def test_kizuna_serve_with_two_workers_holds_a_clients_limit(fresh_database):
    with fresh_database.write() as session:
        program = partners.create_program(session, code="RL", name="RL")
        partner = partners.create_partner(session, program_id=program.id, code="RL", name="RL")
        _, key = clients.create_client(
            session,
            partner_id=partner.id,
            kind=ClientKind.PARTNER,
            name="limited",
            rate_per_minute=20,
            as_of=utcnow(),
        )
    port = _free_port()
    env = os.environ | {"KIZUNA_DATABASE_URL": fresh_database.url}
    env.pop("KIZUNA_RATE_LIMIT_FILE", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "kizuna", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _status(f"{base}/health", key) != 200:
            assert time.monotonic() < deadline, "kizuna serve did not start"
            time.sleep(0.2)
        # A new connection per request: the two workers take turns accepting them.
        started = time.monotonic()
        statuses = [_status(f"{base}/v1/members/999999", key) for _ in range(60)]
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(30)

    allowed = sum(status != 429 for status in statuses)
    # 20 a minute for the client on this host, plus the tokens that came back meanwhile
    assert 20 <= allowed <= 20 + int(elapsed / 3) + 1

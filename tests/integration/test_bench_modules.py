"""The benchmarks still run (tiny parameters; figures are never asserted — they are not tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture
def pg_url(tmp_path):
    """An empty PostgreSQL database (the benchmarks measure PostgreSQL only)."""
    return fresh_database_url("postgresql", tmp_path)


def test_ledger_bench_runs_and_reports_its_figures_on_postgresql(pg_url):
    figures = run_bench(
        "bench.ledger",
        "--database-url",
        pg_url,
        "--members",
        "1000",
        "--workers",
        "2",
        "--seconds",
        "1",
        "--pgbench-seconds",
        "1",
        "--warm-up",
        "3",
    )
    assert {"ledger_tps", "pgbench_tps", "ratio", "p99_ms"} <= figures.keys()
    assert figures["transactions"] > 0
    # a member picked for several large redemptions may run out: the one refusal that is no fault
    assert set(figures["errors"]) <= {"insufficient_points"}


def test_expiry_bench_expires_every_due_lot_on_postgresql(pg_url):
    figures = run_bench(
        "bench.expiry", "--database-url", pg_url, "--lots", "500", "--members", "50"
    )
    assert figures["expiry_lots"] == 500
    assert {"expiry_s", "lots_per_s"} <= figures.keys()

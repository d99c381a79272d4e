"""`kizuna bench batch` still runs (tiny parameters; its figures are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import fresh_database_url

ROOT = Path(__file__).resolve().parents[2]


def test_batch_bench_posts_every_row_and_reports_its_figures_on_postgresql(tmp_path):
    url = fresh_database_url("postgresql", tmp_path)
    args = ["--database-url", url, "--rows", "300", "--members", "50", "--warm-up", "2"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.batch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["ok"] == 300
    assert figures["errors"] == 0
    assert {"rows_per_s", "worker_cpu_us_per_row", "load_average_before"} <= figures.keys()

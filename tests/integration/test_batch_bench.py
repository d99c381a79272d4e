"""`kizuna bench batch` still runs (tiny parameters; its figures are never asserted)."""

from tests.conftest import fresh_database_url
from tests.integration.test_bench_modules import run_bench


def test_batch_bench_posts_every_row_and_reports_its_figures_on_postgresql(tmp_path):
    url = fresh_database_url("postgresql", tmp_path)
    figures = run_bench(
        "bench.batch", "--database-url", url, "--rows", "300", "--members", "50", "--warm-up", "2"
    )
    assert figures["ok"] == 300
    assert figures["errors"] == 0
    assert figures["reconcile_violations"] == 0
    assert {"rows_per_s", "worker_cpu_us_per_row", "load_average_before"} <= figures.keys()

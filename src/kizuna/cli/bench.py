"""`kizuna bench …`: measured figures, not timed tests. Each area adds its own command here.

The benchmarks live in the repository's `bench/` directory (they drive real servers and are not
part of the installed package); these commands run them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Benchmarks (figures for docs/performance.md).", no_args_is_help=True)

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"


def _run(module: str, args: list[str]) -> None:
    if not (BENCH_DIR / f"{module}.py").exists():
        raise typer.BadParameter(f"{BENCH_DIR} not found: run from a Kizuna source checkout")
    # The benchmarks import each other as the `bench` package, from the checkout's root.
    sys.path.insert(0, str(BENCH_DIR.parent))
    sys.argv = [f"bench.{module}", *args]
    runpy.run_module(f"bench.{module}", run_name="__main__", alter_sys=True)


@app.command("api", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def api(context: typer.Context) -> None:
    """API throughput and latency against pgbench on the same PostgreSQL (see bench/api.py)."""
    _run("api", list(context.args))


@app.command("batch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def batch(context: typer.Context) -> None:
    """Rows per second of a 100,000-row offline POS batch (see bench/batch.py)."""
    _run("batch", list(context.args))


@app.command(
    "identity", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def identity(context: typer.Context) -> None:
    """Matching quality, card import rows/s, lookup p50/p99, candidates (see bench/identity.py)."""
    _run("identity", list(context.args))


@app.command("rules", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def rules(context: typer.Context) -> None:
    """Earn evaluation purchases/s with 50 campaigns; 1M-member rank evaluation (bench/rules.py)."""
    _run("rules", list(context.args))


@app.command("ledger", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ledger(context: typer.Context) -> None:
    """Ledger tx/s, p50/p99 of 8 workers (earn/redeem/return) vs pgbench (see bench/ledger.py)."""
    _run("ledger", list(context.args))


@app.command("expiry", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def expiry(context: typer.Context) -> None:
    """Lots/s of the expiry job over 1,000,000 due lots on PostgreSQL (see bench/expiry.py)."""
    _run("expiry", list(context.args))

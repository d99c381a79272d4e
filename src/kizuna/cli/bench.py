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


def _run(script: str, args: list[str]) -> None:
    path = BENCH_DIR / script
    if not path.exists():
        raise typer.BadParameter(f"{path} not found: run from a Kizuna source checkout")
    sys.argv = [str(path), *args]
    runpy.run_path(str(path), run_name="__main__")


@app.command("api", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def api(context: typer.Context) -> None:
    """API throughput and latency against pgbench on the same PostgreSQL (see bench/api.py)."""
    _run("api.py", list(context.args))


@app.command("batch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def batch(context: typer.Context) -> None:
    """Rows per second of a 100,000-row offline POS batch (see bench/batch.py)."""
    _run("batch.py", list(context.args))
